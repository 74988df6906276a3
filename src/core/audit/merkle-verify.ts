/**
 * Verification of RFC 9162 inclusion and consistency proofs (sections 2.1.3.2 and 2.1.4.2), for
 * auditors, witnesses and the signer's own check before it signs a checkpoint.
 *
 * Contract: each function returns true only for a proof that verifies, and false for anything
 * else (malformed sizes, hashes that are not 32 bytes, a proof of the wrong length); it never
 * throws, so a caller cannot mistake an exception path for success. A true result says only
 * that the proof links the given hashes: the caller MUST have the roots from a source it trusts
 * (a checkpoint whose signature it verified), and the leaf hash from the entry it recomputed.
 *
 * Edge cases follow transparency-dev/merkle (whose vectors test/vectors/rfc6962 holds): a
 * consistency proof from size 0 is refused (every tree extends the empty tree: the caller
 * handles that case itself, knowing what it trusts); between equal sizes the proof must be empty
 * and the roots byte-equal.
 */
import { HASH_SIZE, nodeHash } from './merkle.js';

/**
 * The root that an inclusion proof for `leaf` at `index` in a tree of `size` leaves implies, or
 * null when the proof cannot be one (bad index, wrong length, a hash that is not 32 bytes).
 */
export function rootFromInclusionProof(
  index: number,
  size: number,
  leaf: Uint8Array,
  proof: readonly Uint8Array[],
): Uint8Array | null {
  if (!isSize(index) || !isSize(size) || index >= size || !isHash(leaf) || !proof.every(isHash)) return null;
  let fn = index;
  let sn = size - 1;
  let r = leaf;
  for (const p of proof) {
    if (sn === 0) return null; // more proof than the path has levels
    if (fn % 2 === 1 || fn === sn) {
      r = nodeHash(p, r);
      // A right-edge node with no sibling at these levels: climb to where it has one.
      while (fn % 2 === 0 && fn !== 0) {
        fn /= 2;
        sn = Math.floor(sn / 2);
      }
    } else {
      r = nodeHash(r, p);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  return sn === 0 ? r : null; // sn > 0: the proof is too short
}

/** True if `proof` shows `leaf` (a leaf hash) at `index` in the tree of `size` leaves with head `root`. */
export function verifyInclusion(
  index: number,
  size: number,
  leaf: Uint8Array,
  proof: readonly Uint8Array[],
  root: Uint8Array,
): boolean {
  const r = rootFromInclusionProof(index, size, leaf, proof);
  return r !== null && isHash(root) && equal(r, root);
}

/**
 * True if `proof` shows that the tree of `size2` leaves with head `root2` extends (appends to) the
 * tree of `size1` leaves with head `root1`.
 */
export function verifyConsistency(
  size1: number,
  size2: number,
  proof: readonly Uint8Array[],
  root1: Uint8Array,
  root2: Uint8Array,
): boolean {
  if (!isSize(size1) || !isSize(size2) || size1 === 0 || size1 > size2) return false;
  if (size1 === size2) return proof.length === 0 && equal(root1, root2);
  if (proof.length === 0 || !isHash(root1) || !isHash(root2) || !proof.every(isHash)) return false;
  // The old tree's head is the proof's implicit first element when it is a perfect subtree.
  const path = isPowerOfTwo(size1) ? [root1, ...proof] : [...proof];
  let fn = size1 - 1;
  let sn = size2 - 1;
  while (fn % 2 === 1) {
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  let fr = path[0]!;
  let sr = path[0]!;
  for (const c of path.slice(1)) {
    if (sn === 0) return false;
    if (fn % 2 === 1 || fn === sn) {
      fr = nodeHash(c, fr);
      sr = nodeHash(c, sr);
      while (fn % 2 === 0 && fn !== 0) {
        fn /= 2;
        sn = Math.floor(sn / 2);
      }
    } else {
      sr = nodeHash(sr, c);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  return sn === 0 && equal(fr, root1) && equal(sr, root2);
}

function isSize(n: number): boolean {
  return Number.isSafeInteger(n) && n >= 0;
}

function isHash(h: Uint8Array): boolean {
  return h instanceof Uint8Array && h.length === HASH_SIZE;
}

function isPowerOfTwo(n: number): boolean {
  while (n > 1 && n % 2 === 0) n /= 2;
  return n === 1;
}

function equal(a: Uint8Array, b: Uint8Array): boolean {
  if (!(a instanceof Uint8Array) || !(b instanceof Uint8Array) || a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
