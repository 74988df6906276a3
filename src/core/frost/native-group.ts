/**
 * The prime-order groups of the FROST suites on native code: libsodium (`sodium-native`) for
 * Ed25519, libsecp256k1 (the `secp256k1` package's native binding) for secp256k1. Only group
 * operations live here; scalars stay bigints in noble's `Fn`, hashes stay @noble/hashes.
 * Points are their canonical encodings (32-byte Ed25519, 33-byte compressed secp256k1); the
 * identity, which only a sum or a zero scalar can produce, is `null`.
 */
import { createRequire } from 'node:module';
import { equalBytes } from '@noble/curves/utils.js';
import type Secp256k1 from 'secp256k1';

/** A group element as its canonical encoding; `null` is the identity. */
export type Pt = Uint8Array | null;

export interface NativeGroup {
  /** RFC 9591 DeserializeElement: canonical, on the curve, in the prime-order subgroup, not the identity. */
  parse(bytes: Uint8Array): Uint8Array;
  /** k*G for a canonical scalar (constant time in the libraries). */
  base(k: Uint8Array): Pt;
  /** k*P for a canonical scalar. */
  mul(p: Pt, k: Uint8Array): Pt;
  add(a: Pt, b: Pt): Pt;
  neg(p: Pt): Pt;
  eq(a: Pt, b: Pt): boolean;
  /** SerializeElement; throws for the identity, as noble's secp256k1 does. */
  bytes(p: Pt): Uint8Array;
}

/** The parts of sodium-native this file calls (the package ships no types). */
interface Sodium {
  crypto_core_ed25519_is_valid_point(p: Uint8Array): boolean;
  crypto_core_ed25519_add(r: Uint8Array, p: Uint8Array, q: Uint8Array): void;
  crypto_core_ed25519_sub(r: Uint8Array, p: Uint8Array, q: Uint8Array): void;
  crypto_scalarmult_ed25519_noclamp(q: Uint8Array, n: Uint8Array, p: Uint8Array): void;
  crypto_scalarmult_ed25519_base_noclamp(q: Uint8Array, n: Uint8Array): void;
  crypto_sign_verify_detached(sig: Uint8Array, m: Uint8Array, pk: Uint8Array): boolean;
}

const require = createRequire(import.meta.url);
let sodiumLib: Sodium | undefined;
let secpLib: typeof Secp256k1 | undefined;
/** Loaded on first use, so that a process on the noble backend never needs the addons. */
export const sodium = (): Sodium => (sodiumLib ??= require('sodium-native') as Sodium);
// `secp256k1`'s index silently falls back to elliptic (pure JS) when the addon is missing: load
// the binding itself so that a missing addon fails loudly instead of signing slowly.
const secp = (): typeof Secp256k1 => (secpLib ??= require('secp256k1/bindings') as typeof Secp256k1);

const isZero = (k: Uint8Array) => k.every((b) => b === 0);
const invalid = () => new Error('invalid group element');

export const ED25519: NativeGroup = {
  parse(bytes) {
    // is_valid_point: canonical encoding, on the curve, not of small order (so not the identity),
    // in the prime-order subgroup.
    if (bytes.length !== 32 || !sodium().crypto_core_ed25519_is_valid_point(bytes)) throw invalid();
    return bytes;
  },
  base(k) {
    if (isZero(k)) return null;
    const q = new Uint8Array(32);
    sodium().crypto_scalarmult_ed25519_base_noclamp(q, k);
    return q;
  },
  mul(p, k) {
    // Every non-identity point here was parsed into the prime-order subgroup, and k < L: the
    // product is the identity only for k = 0, which libsodium refuses (so it is handled here).
    if (p === null || isZero(k)) return null;
    const q = new Uint8Array(32);
    sodium().crypto_scalarmult_ed25519_noclamp(q, k, p);
    return q;
  },
  add(a, b) {
    if (a === null) return b;
    if (b === null) return a;
    const r = new Uint8Array(32);
    sodium().crypto_core_ed25519_add(r, a, b);
    return equalBytes(r, ED_IDENTITY) ? null : r;
  },
  neg(p) {
    if (p === null) return null;
    const r = new Uint8Array(32);
    sodium().crypto_core_ed25519_sub(r, ED_IDENTITY, p);
    return r;
  },
  eq: (a, b) => (a === null || b === null ? a === b : equalBytes(a, b)),
  bytes: (p) => (p === null ? ED_IDENTITY.slice() : p),
};
/** (0, 1): the encoding of the Ed25519 identity (noble's `Point.ZERO.toBytes()`). */
const ED_IDENTITY = Uint8Array.of(1, ...new Uint8Array(31));

export const SECP256K1: NativeGroup = {
  parse(bytes) {
    // Compressed form only (SerializeElement's); libsecp256k1 checks x < p and that x is on the
    // curve (cofactor 1: every curve point is in the group; the identity has no encoding).
    if (bytes.length !== 33 || (bytes[0] !== 2 && bytes[0] !== 3) || !secp().publicKeyVerify(bytes)) throw invalid();
    return bytes;
  },
  base: (k) => (isZero(k) ? null : secp().publicKeyCreate(k, true)),
  mul: (p, k) => (p === null || isZero(k) ? null : secp().publicKeyTweakMul(p, k, true)),
  add(a, b) {
    if (a === null) return b;
    if (b === null) return a;
    // libsecp256k1 cannot return the point at infinity: a + (-a) is the one sum that throws.
    if (a[0] !== b[0] && equalBytes(a.subarray(1), b.subarray(1))) return null;
    return secp().publicKeyCombine([a, b], true);
  },
  neg: (p) => (p === null ? null : secp().publicKeyNegate(p, true)),
  eq: (a, b) => (a === null || b === null ? a === b : equalBytes(a, b)),
  bytes(p) {
    if (p === null) throw new Error('the identity has no encoding');
    return p;
  },
};

/** secp256k1: whether a (non-identity) point's y is even, as BIP340 wants it. */
export const hasEvenY = (p: Pt): boolean => p !== null && p[0] === 2;
