/**
 * The audit log's Merkle tree (RFC 9162 section 2.1, the RFC 6962 tree): hashing, tree heads,
 * and inclusion and consistency proofs generated from stored subtree hashes. Verification is in
 * merkle-verify.ts, an in-memory node store in merkle-memory.ts.
 *
 * Contract
 * - Hashing is RFC 9162's with SHA-256: leaf = SHA-256(0x00 || entry bytes), node =
 *   SHA-256(0x01 || left || right), the empty tree's head = SHA-256(""). The 0x00/0x01 prefixes
 *   keep a leaf from passing for a node. The caller MUST hash each entry's canonical bytes
 *   (the ones every verifier recomputes), never a re-serialisation.
 * - Storage model: a store keeps, for every PERFECT subtree of the log, its hash addressed by
 *   (level, index): the subtree of 2^level leaves starting at leaf index * 2^level. Appending n
 *   leaves adds fewer than 2n nodes ({@link appendLeaves} yields them). Any hash the RFC needs
 *   (a head, an inclusion path, a consistency proof) is a right fold of O(log n) such nodes, so
 *   {@link treeHead}, {@link inclusionProof} and {@link consistencyProof} make ONE batched
 *   {@link NodeReader.readNodes} call of at most about 2 log2(n) nodes, at any size.
 * - Validated here: sizes and indices are safe non-negative integers, in range (index < size,
 *   0 < size1 <= size2); each hash the reader returns is 32 bytes and one per node asked for.
 *   Out-of-range arguments (they come from RPC callers) are refused with REQUEST_INVALID.
 * - The caller MUST guarantee that the reader's nodes are those of ONE append-only log of at least
 *   the size asked for: this module cannot tell a node stored by an honest append from one
 *   written by a database writer. That is what signed checkpoints and consistency checks against
 *   the last signed one (recomputing leaves from entry content) are for.
 * - Sizes are JavaScript numbers: up to 2^53 - 1 leaves. No bitwise operators are used on them
 *   (those truncate to 32 bits), only arithmetic.
 */
import { SignerError } from '../errors.js';
import { sha256 } from './sha256.js';

export const HASH_SIZE = 32;

/** The head of the empty tree: SHA-256 of the empty string (RFC 9162 section 2.1.1). */
export const EMPTY_ROOT: Uint8Array = sha256(new Uint8Array(0));

const LEAF_PREFIX = Uint8Array.of(0x00);
const NODE_PREFIX = Uint8Array.of(0x01);

/** The leaf hash of one entry's canonical bytes: SHA-256(0x00 || entry). */
export function leafHash(entry: Uint8Array): Uint8Array {
  return sha256(LEAF_PREFIX, entry);
}

/** The hash of an interior node: SHA-256(0x01 || left || right). */
export function nodeHash(left: Uint8Array, right: Uint8Array): Uint8Array {
  return sha256(NODE_PREFIX, left, right);
}

/** A perfect subtree: the 2^level leaves from index * 2^level on. Level 0 is a leaf. */
export interface NodeId {
  readonly level: number;
  readonly index: number;
}

/** A perfect subtree with its hash, as a store keeps it. */
export interface MerkleNode extends NodeId {
  readonly hash: Uint8Array;
}

/**
 * What proof generation needs from a store. `readNodes` returns the hashes of the given perfect
 * subtrees in the order asked; it MUST reject (not return a placeholder) when it lacks one,
 * since a missing node means the store and the log disagree.
 */
export interface NodeReader {
  readNodes(ids: readonly NodeId[]): Promise<readonly Uint8Array[]>;
}

/** A range of leaves [start, end) whose Merkle tree hash a proof or a head needs. */
export interface LeafRange {
  readonly start: number;
  readonly end: number;
}

/** The largest power of two strictly below n (n >= 2): RFC 9162's k. */
export function splitPoint(n: number): number {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

/**
 * The perfect subtrees that [start, end) splits into, left to right, largest first. Their right
 * fold is the range's Merkle tree hash when the range is one the RFC's recursion produces
 * (start a multiple of a power of two >= end - start), which is every range this module asks for.
 */
export function rangeNodes(range: LeafRange): NodeId[] {
  const ids: NodeId[] = [];
  let pos = range.start;
  let left = range.end - range.start;
  while (left > 0) {
    let size = 1;
    let level = 0;
    while (size * 2 <= left) {
      size *= 2;
      level++;
    }
    ids.push({ level, index: pos / size });
    pos += size;
    left -= size;
  }
  return ids;
}

/**
 * The perfect subtrees a tree of `size` leaves splits into (its compact range): the only nodes
 * needed to compute its head and to append to it.
 */
export function frontierNodes(size: number): NodeId[] {
  checkSize(size, 'size');
  return rangeNodes({ start: 0, end: size });
}

/** The hash of a range from the hashes of its {@link rangeNodes}: the right fold. */
export function foldRange(hashes: readonly Uint8Array[]): Uint8Array {
  if (hashes.length === 0) return EMPTY_ROOT;
  let h = hashes[hashes.length - 1]!;
  for (let i = hashes.length - 2; i >= 0; i--) h = nodeHash(hashes[i]!, h);
  return h;
}

/**
 * The tree as a store appends to it: its size and the hashes of {@link frontierNodes}(size),
 * left to right. Enough to compute the head and every node a new leaf completes.
 */
export interface Frontier {
  readonly size: number;
  readonly hashes: readonly Uint8Array[];
}

export const EMPTY_FRONTIER: Frontier = { size: 0, hashes: [] };

/** The tree head of a frontier, without reading anything. */
export function frontierRoot(frontier: Frontier): Uint8Array {
  checkFrontier(frontier);
  return foldRange(frontier.hashes);
}

/**
 * Appends leaves (their {@link leafHash}es, in log order) to a tree: returns every perfect
 * subtree they complete (each leaf, and each parent whose right child is complete), which the
 * store MUST write with the entries in one transaction, and the new frontier. Pure.
 */
export function appendLeaves(
  frontier: Frontier,
  leaves: readonly Uint8Array[],
): { nodes: MerkleNode[]; frontier: Frontier } {
  checkFrontier(frontier);
  const levels = frontierNodes(frontier.size).map((id) => id.level);
  const stack = frontier.hashes.map((hash, i) => ({ level: levels[i]!, hash }));
  const nodes: MerkleNode[] = [];
  let size = frontier.size;
  for (const leaf of leaves) {
    checkHash(leaf, 'leaf hash');
    if (size >= Number.MAX_SAFE_INTEGER) throw new RangeError('merkle: the tree is full');
    let top = { level: 0, hash: leaf };
    nodes.push({ level: 0, index: size, hash: leaf });
    size++;
    // Merge while the last two subtrees are the same size: each merge completes a parent.
    for (let below = stack.at(-1); below && below.level === top.level; below = stack.at(-1)) {
      stack.pop();
      top = { level: top.level + 1, hash: nodeHash(below.hash, top.hash) };
      nodes.push({ level: top.level, index: size / 2 ** top.level - 1, hash: top.hash });
    }
    stack.push(top);
  }
  return { nodes, frontier: { size, hashes: stack.map((s) => s.hash) } };
}

/** The leaf ranges of RFC 9162 PATH(index, D[size]), deepest first, as the proof lists them. */
export function inclusionRanges(index: number, size: number): LeafRange[] {
  checkSize(size, 'tree size');
  checkSize(index, 'leaf index');
  if (index >= size) throw invalid(`leaf index ${index} is not below tree size ${size}`, { index, size });
  const path: LeafRange[] = [];
  let start = 0;
  let end = size;
  while (end - start > 1) {
    const k = splitPoint(end - start);
    if (index < start + k) {
      path.push({ start: start + k, end });
      end = start + k;
    } else {
      path.push({ start, end: start + k });
      start += k;
    }
  }
  return path.reverse();
}

/** The leaf ranges of RFC 9162 PROOF(size1, D[size2]), in proof order. */
export function consistencyRanges(size1: number, size2: number): LeafRange[] {
  checkSize(size1, 'size1');
  checkSize(size2, 'size2');
  if (size1 === 0 || size1 > size2) {
    const message = `no consistency proof from size ${size1} to size ${size2}: need 0 < size1 <= size2`;
    throw invalid(message, { size1, size2 });
  }
  // SUBPROOF(m, D[start:end], b), unrolled: the hashes it appends after recursing are collected
  // on the way down and emitted in reverse, as the recursion would return them.
  const after: LeafRange[] = [];
  let m = size1;
  let start = 0;
  let end = size2;
  let whole = true; // b: is this subtree's left edge the old tree's whole extent?
  for (;;) {
    const n = end - start;
    if (m === n) {
      if (!whole) after.push({ start, end });
      break;
    }
    const k = splitPoint(n);
    if (m <= k) {
      after.push({ start: start + k, end });
      end = start + k;
    } else {
      after.push({ start, end: start + k });
      start += k;
      m -= k;
      whole = false;
    }
  }
  return after.reverse();
}

/** The tree head of the first `size` leaves of the stored log. */
export async function treeHead(reader: NodeReader, size: number): Promise<Uint8Array> {
  checkSize(size, 'tree size');
  if (size === 0) return EMPTY_ROOT;
  const [root] = await hashRanges(reader, [{ start: 0, end: size }]);
  return root!;
}

/** The inclusion proof (audit path) of leaf `index` in the tree of the first `size` leaves. */
export async function inclusionProof(reader: NodeReader, index: number, size: number): Promise<Uint8Array[]> {
  return hashRanges(reader, inclusionRanges(index, size));
}

/** The consistency proof from the tree of `size1` leaves to the tree of `size2` leaves. */
export async function consistencyProof(reader: NodeReader, size1: number, size2: number): Promise<Uint8Array[]> {
  return hashRanges(reader, consistencyRanges(size1, size2));
}

/**
 * The Merkle tree hashes of RFC-shaped leaf ranges, from one batched read of their perfect
 * subtrees (each asked for once).
 */
export async function hashRanges(reader: NodeReader, ranges: readonly LeafRange[]): Promise<Uint8Array[]> {
  const parts = ranges.map(rangeNodes);
  const wanted = new Map<string, NodeId>();
  for (const id of parts.flat()) wanted.set(nodeKey(id), id);
  const ids = [...wanted.values()];
  if (ids.length === 0) return parts.map(() => EMPTY_ROOT);
  const hashes = await reader.readNodes(ids);
  if (hashes.length !== ids.length) {
    throw new Error(`merkle: the store returned ${hashes.length} nodes for ${ids.length}`);
  }
  const byKey = new Map<string, Uint8Array>();
  ids.forEach((id, i) => byKey.set(nodeKey(id), checkHash(hashes[i]!, `node ${nodeKey(id)}`)));
  return parts.map((p) => foldRange(p.map((id) => byKey.get(nodeKey(id))!)));
}

/** `level/index`: a node's key in maps and log lines. */
export function nodeKey(id: NodeId): string {
  return `${id.level}/${id.index}`;
}

function checkSize(n: number, what: string): void {
  if (!Number.isSafeInteger(n) || n < 0) {
    throw invalid(`${what} must be a non-negative integer below 2^53`, { [what]: String(n) });
  }
}

function checkHash(h: Uint8Array, what: string): Uint8Array {
  if (!(h instanceof Uint8Array) || h.length !== HASH_SIZE) throw new Error(`merkle: ${what} is not a 32-byte hash`);
  return h;
}

function checkFrontier(f: Frontier): void {
  if (!Number.isSafeInteger(f.size) || f.size < 0) {
    throw new RangeError('merkle: frontier size must be a non-negative integer');
  }
  if (f.hashes.length !== frontierNodes(f.size).length) {
    const want = frontierNodes(f.size).length;
    throw new RangeError(`merkle: a frontier of size ${f.size} has ${want} hashes, not ${f.hashes.length}`);
  }
  f.hashes.forEach((h) => checkHash(h, 'frontier hash'));
}

function invalid(message: string, metadata: Record<string, string | number>): SignerError {
  const meta = Object.fromEntries(Object.entries(metadata).map(([k, v]) => [k, String(v)]));
  return new SignerError('REQUEST_INVALID', message, meta);
}
