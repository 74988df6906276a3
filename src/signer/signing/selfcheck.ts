import { createPublicKey, type KeyObject, verify as opensslVerify } from 'node:crypto';
import { p256 } from '@noble/curves/nist.js';
import { secp256k1 } from '@noble/curves/secp256k1.js';
import { SignerError } from '../../core/errors.js';
import type { Algorithm } from '../../infra/config/schema.js';
import { loadNativeSecp256k1 } from './secp256k1-native.js';

/**
 * libsecp256k1 through its native addon, loaded when this module loads, so a signer without the
 * addon fails at start instead of verifying with the package's JavaScript fallback.
 */
const native = loadNativeSecp256k1();
const libsecp256k1 = native.lib;
/** The `.node` file verifying secp256k1 signatures in this process (logged and tested). */
export const secp256k1Addon = native.addon;

/** A signature as the API returns it. */
export interface Signature {
  /** r||s (ECDSA, low-s) or R||S (Ed25519), 64 bytes. */
  bytes: Uint8Array;
  /** secp256k1 only: the recovery id (0 or 1) that recovers the key from (r, s, digest). */
  recoveryId?: 0 | 1;
}

/** Checks one key's HSM output; built once per key so per-key state (parsed keys) is reused. */
export type SignatureCheck = (signed: Uint8Array, hsmOutput: Uint8Array) => Promise<Signature>;

/** Verification by the token's public key object, for curves without a fast in-process verifier. */
export type TokenVerify = (signed: Uint8Array, signature: Uint8Array) => Promise<boolean>;

const selfCheckFailed = () =>
  new SignerError(
    'SIGNATURE_SELF_CHECK_FAILED',
    'the HSM returned a signature that does not verify; nothing was returned',
  );

// SPKI prefix for a raw Ed25519 public key (RFC 8410).
const ED25519_SPKI = Buffer.from('302a300506032b6570032100', 'hex');

/**
 * Turns the HSM's raw output into the signature the API returns, after verifying it against the
 * key's public key: a faulty HSM must never leak an invalid (or key-revealing) signature. ECDSA
 * results are normalised to low-s, since SoftHSM and many HSMs return either half.
 *
 * Verifiers are native where the hot path needs them (libsecp256k1, OpenSSL's Ed25519): the
 * pure-JS verifiers cost 1.4 to 1.9 ms a signature here, several times the HSM's own signing
 * time, on the event loop. P-256 over a raw digest has no native verifier in Node, so the
 * token verifies it with the public key object, off the event loop: a second, independent
 * operation that a faulty signing computation cannot pass.
 */
export function signatureCheck(algorithm: Algorithm, publicKey: Uint8Array, tokenVerify: TokenVerify): SignatureCheck {
  if (algorithm === 'ed25519') {
    const key: KeyObject = createPublicKey({
      key: Buffer.concat([ED25519_SPKI, publicKey]),
      format: 'der',
      type: 'spki',
    });
    return async (signed, out) => {
      if (out.length !== 64 || !opensslVerify(null, signed, key, out)) throw selfCheckFailed();
      return { bytes: out };
    };
  }
  if (algorithm === 'ecdsa-secp256k1') {
    return async (digest, out) => {
      const bytes = lowS(secp256k1, out);
      // A key recovered from (r, s, digest) that equals ours proves the ECDSA equation holds,
      // so recovery doubles as verification.
      for (const recoveryId of [0, 1] as const) {
        let recovered: Uint8Array;
        try {
          recovered = libsecp256k1.ecdsaRecover(bytes, recoveryId, digest, false);
        } catch {
          continue; // no point for this recovery id
        }
        if (equal(recovered, publicKey)) return { bytes, recoveryId };
      }
      throw selfCheckFailed();
    };
  }
  return async (digest, out) => {
    const bytes = lowS(p256, out);
    if (!(await tokenVerify(digest, bytes))) throw selfCheckFailed();
    return { bytes };
  };
}

function lowS(curve: typeof secp256k1 | typeof p256, out: Uint8Array): Uint8Array {
  if (out.length !== 64) throw selfCheckFailed();
  let sig: ReturnType<typeof curve.Signature.fromBytes>;
  try {
    sig = curve.Signature.fromBytes(out, 'compact');
  } catch {
    throw selfCheckFailed();
  }
  if (sig.hasHighS()) sig = new curve.Signature(sig.r, curve.Point.Fn.ORDER - sig.s);
  return sig.toBytes('compact');
}

function equal(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}
