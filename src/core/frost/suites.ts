import { createPublicKey, type KeyObject, verify as opensslVerify } from 'node:crypto';
import type { FROST, FrostPublic, Identifier } from '@noble/curves/abstract/frost.js';
import { ed25519, ed25519_FROST } from '@noble/curves/ed25519.js';
import { schnorr, schnorr_FROST, secp256k1, secp256k1_FROST } from '@noble/curves/secp256k1.js';
import { bytesToHex, equalBytes, hexToBytes } from '@noble/curves/utils.js';

/** Threshold key algorithms a key can be created with. */
export type ThresholdAlgorithm = 'frost-ed25519' | 'frost-secp256k1-tr';

/**
 * Every suite the threshold code runs. `frost-secp256k1` is plain RFC 9591 FROST(secp256k1,
 * SHA-256): no chain verifies its signatures, it exists so the RFC vectors exercise our code path.
 */
export type SuiteName = ThresholdAlgorithm | 'frost-secp256k1';

/** A point of a suite's prime-order group, as far as our share arithmetic needs it. */
export interface GroupPoint {
  add(other: GroupPoint): GroupPoint;
  /** Constant time: for secret scalars. */
  multiply(scalar: bigint): GroupPoint;
  /** Variable time: public scalars only (identifiers, their powers). */
  multiplyUnsafe(scalar: bigint): GroupPoint;
  equals(other: GroupPoint): boolean;
  toBytes(): Uint8Array;
  is0(): boolean;
  isTorsionFree(): boolean;
  assertValidity(): void;
}

/** The group of a suite: noble's `Point` class. */
export interface Group {
  readonly BASE: GroupPoint;
  readonly ZERO: GroupPoint;
  fromBytes(bytes: Uint8Array): GroupPoint;
}

export interface Suite {
  name: SuiteName;
  frost: FROST;
  /** noble's point class of the suite's group; scalars live in `frost.utils.Fn`. */
  Point: Group;
  /** The key as the chain sees it: 32-byte Ed25519 key, or 32-byte x-only BIP340 key. */
  chainPublicKey(pub: FrostPublic): Uint8Array;
  /**
   * Verification with an independent verifier (noble ed25519.verify / schnorr.verify), not the
   * FROST code. Never throws: malformed input is simply not a valid signature.
   */
  verify(signature: Uint8Array, message: Uint8Array, chainPublicKey: Uint8Array): boolean;
  /**
   * The independent check on the native signing path: as `verify`, but native where a native
   * verifier exists (OpenSSL's Ed25519, as the single-key self-check uses), since noble's costs
   * more than the whole native signature. BIP340 has none in Node or libsecp256k1's binding:
   * noble's.
   */
  hotVerify(signature: Uint8Array, message: Uint8Array, chainPublicKey: Uint8Array): boolean;
}

const groupKey = (pub: FrostPublic): Uint8Array => {
  const key = pub.commitments[0];
  if (!key) throw new Error('public package has no group key');
  return key;
};

const failClosed =
  (verify: (signature: Uint8Array, message: Uint8Array, key: Uint8Array) => boolean) =>
  (signature: Uint8Array, message: Uint8Array, key: Uint8Array): boolean => {
    try {
      return verify(signature, message, key);
    } catch {
      return false;
    }
  };

// SPKI prefix of a raw Ed25519 public key (RFC 8410).
const ED25519_SPKI = Uint8Array.from([0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00]);
/** Parsed group keys: a threshold key signs many times with one key object. */
const edKeys = new Map<string, KeyObject>();

function opensslEd25519(signature: Uint8Array, message: Uint8Array, key: Uint8Array): boolean {
  if (signature.length !== 64 || key.length !== 32) return false;
  const hex = bytesToHex(key);
  let object = edKeys.get(hex);
  if (!object) {
    object = createPublicKey({ key: Buffer.concat([ED25519_SPKI, key]), format: 'der', type: 'spki' });
    if (edKeys.size >= 1024) edKeys.clear();
    edKeys.set(hex, object);
  }
  return opensslVerify(null, message, object, signature);
}

export const SUITES: Record<SuiteName, Suite> = {
  'frost-ed25519': {
    name: 'frost-ed25519',
    frost: ed25519_FROST,
    Point: ed25519.Point,
    chainPublicKey: (pub) => groupKey(pub).slice(),
    // Strict RFC 8032 rules rather than noble's ZIP-215 default: a signature we release must be
    // accepted by the strictest verifier a chain may run, and FROST output is always canonical.
    verify: failClosed((sig, msg, key) => ed25519.verify(sig, msg, key, { zip215: false })),
    hotVerify: failClosed(opensslEd25519),
  },
  'frost-secp256k1-tr': {
    name: 'frost-secp256k1-tr',
    frost: schnorr_FROST,
    Point: secp256k1.Point,
    // schnorr_FROST keeps 33-byte compressed points, and the group key may have an odd y: its
    // signShare negates the shares at signing time so that the signature verifies under the even
    // point with the same x, which is exactly what the BIP340 x-only key means.
    chainPublicKey: (pub) => {
      const key = groupKey(pub);
      if (key.length !== 33) throw new Error('expected a compressed secp256k1 group key');
      return key.slice(1);
    },
    verify: failClosed((sig, msg, key) => schnorr.verify(sig, msg, key)),
    hotVerify: failClosed((sig, msg, key) => schnorr.verify(sig, msg, key)),
  },
  'frost-secp256k1': {
    name: 'frost-secp256k1',
    frost: secp256k1_FROST,
    Point: secp256k1.Point,
    chainPublicKey: (pub) => groupKey(pub).slice(),
    // No chain format and so no independent verifier exists: the suite's own verify is the
    // reference here (its signatures are R (33 bytes compressed) || z).
    verify: failClosed((sig, msg, key) => secp256k1_FROST.verify(sig, msg, key)),
    hotVerify: failClosed((sig, msg, key) => secp256k1_FROST.verify(sig, msg, key)),
  },
};

export function isThresholdAlgorithm(a: string): a is ThresholdAlgorithm {
  return a === 'frost-ed25519' || a === 'frost-secp256k1-tr';
}

/**
 * The scalar behind an identifier. Accepts only noble's canonical form (hex of a non-zero scalar)
 * so that one participant cannot appear under two map keys.
 */
export function identifierScalar(suite: Suite, id: Identifier): bigint {
  const { Fn } = suite.frost.utils;
  const n = Fn.fromBytes(hexToBytes(id));
  if (Fn.is0(n) || bytesToHex(Fn.toBytes(n)) !== id) throw new Error('invalid identifier');
  return n;
}

/**
 * Decodes a public group element received from someone else. Like RFC 9591 DeserializeElement:
 * rejects off-curve points, the identity, points outside the prime-order subgroup and any
 * non-canonical encoding.
 */
export function parseElement(suite: Suite, bytes: Uint8Array): GroupPoint {
  const p = suite.Point.fromBytes(bytes);
  p.assertValidity();
  if (p.is0() || !p.isTorsionFree() || !equalBytes(p.toBytes(), bytes)) throw new Error('invalid group element');
  return p;
}

/** Decodes a scalar received from someone else; rejects non-canonical (>= group order) bytes. */
export function parseScalar(suite: Suite, bytes: Uint8Array): bigint {
  const { Fn } = suite.frost.utils;
  if (bytes.length !== Fn.BYTES) throw new Error('invalid scalar length');
  return Fn.fromBytes(bytes);
}

/**
 * sum_k commitment[k] * x^k: the public image of a shared polynomial at x (RFC 9591 Appendix C.2
 * vss_verify). Commitments and identifiers are public, so variable time is fine.
 */
export function evaluateCommitment(suite: Suite, commitment: GroupPoint[], x: bigint): GroupPoint {
  const { Fn } = suite.frost.utils;
  let sum = suite.Point.ZERO;
  let power = Fn.ONE;
  for (const c of commitment) {
    sum = sum.add(c.multiplyUnsafe(power));
    power = Fn.mul(power, x);
  }
  return sum;
}
