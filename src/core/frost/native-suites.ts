/**
 * What the native FROST path needs of each suite besides the group: noble's scalar field, the
 * suite's hashes H1..H5 exactly as @noble/curves `createFROST` builds them (same prefixes, same
 * hash-to-scalar), and the BIP340 challenge of the Taproot suite. Nothing here is new crypto:
 * every hash is @noble/hashes (or noble's hash-to-field over it), every scalar op noble's `Fn`.
 */
import type { IField } from '@noble/curves/abstract/modular.js';
import { ed25519_FROST } from '@noble/curves/ed25519.js';
import { schnorr, secp256k1_hasher } from '@noble/curves/secp256k1.js';
import { bytesToNumberBE, bytesToNumberLE, concatBytes } from '@noble/curves/utils.js';
import { sha256, sha512 } from '@noble/hashes/sha2.js';
import { utf8ToBytes } from '@noble/hashes/utils.js';
import { ED25519, type NativeGroup, SECP256K1 } from './native-group.js';
import type { SuiteName } from './suites.js';

export interface NativeSuite {
  group: NativeGroup;
  Fn: IField<bigint>;
  /** Binding factor (RFC 9591 H1, "rho"). */
  H1(m: Uint8Array): bigint;
  /** Nonce derivation (H3, "nonce"). */
  H3(m: Uint8Array): bigint;
  /** Message and commitment-list digests (H4 "msg", H5 "com"). */
  H4(m: Uint8Array): Uint8Array;
  H5(m: Uint8Array): Uint8Array;
  /** The signature challenge of R, the group key and the message (H2, or BIP340's). */
  challenge(R: Uint8Array, groupKey: Uint8Array, msg: Uint8Array): bigint;
  /** BIP340 Taproot rules: even-y group key and group commitment, x-only signatures. */
  taproot: boolean;
}

type HashToScalar = (msg: Uint8Array, DST: Uint8Array) => bigint;

function suite(
  name: string,
  group: NativeGroup,
  Fn: IField<bigint>,
  hash: (m: Uint8Array) => Uint8Array,
  toScalar: HashToScalar,
  h2Prefix: string = `${name}chal`,
): Omit<NativeSuite, 'taproot'> {
  const prefix = (tag: string) => utf8ToBytes(name + tag);
  const [rho, nonce, msg, com, chal] = [
    prefix('rho'),
    prefix('nonce'),
    prefix('msg'),
    prefix('com'),
    utf8ToBytes(h2Prefix),
  ];
  return {
    group,
    Fn,
    H1: (m) => toScalar(m, rho),
    H3: (m) => toScalar(m, nonce),
    H4: (m) => hash(concatBytes(msg, m)),
    H5: (m) => hash(concatBytes(com, m)),
    challenge: (R, key, m) => toScalar(concatBytes(R, key, m), chal),
  };
}

const edFn = ed25519_FROST.utils.Fn;
// createFROST's default hash-to-scalar (the Ed25519 suite sets none): H(DST || m) read in the
// field's byte order and reduced mod L, the RFC 9591 Section 6.1 definition.
const edToScalar: HashToScalar = (m, DST) => edFn.create(bytesToNumberLE(sha512(concatBytes(DST, m))));
// The secp256k1 suites use noble's hash_to_field (RFC 9380 expand_message_xmd, SHA-256).
const k1ToScalar: HashToScalar = (m, DST) => secp256k1_hasher.hashToScalar(m, { DST });
const k1Fn = schnorr.Point.Fn;

const plainSecp = suite('FROST-secp256k1-SHA256-v1', SECP256K1, k1Fn, sha256, k1ToScalar);
const taproot = suite('FROST-secp256k1-SHA256-TR-v1', SECP256K1, k1Fn, sha256, k1ToScalar);

export const NATIVE_SUITES: Record<SuiteName, NativeSuite> = {
  // RFC 9591 leaves Ed25519's H2 undecorated, so that signatures verify under RFC 8032.
  'frost-ed25519': { ...suite('FROST-ED25519-SHA512-v1', ED25519, edFn, sha512, edToScalar, ''), taproot: false },
  'frost-secp256k1': { ...plainSecp, taproot: false },
  'frost-secp256k1-tr': {
    ...taproot,
    // BIP340: tagged hash of x(R) || x(P) || m, as noble's schnorr_FROST hook computes it.
    challenge: (R, key, m) =>
      k1Fn.create(bytesToNumberBE(schnorr.utils.taggedHash('BIP0340/challenge', R.subarray(1), key.subarray(1), m))),
    taproot: true,
  },
};
