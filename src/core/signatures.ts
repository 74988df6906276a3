import { ed25519 } from '@noble/curves/ed25519.js';
import { p256 } from '@noble/curves/nist.js';

/**
 * THE verifier of signatures made by people and programs outside the HSM, with @noble/curves:
 * admins approving a proposal (core/admin) and clients signing their requests
 * (core/request-signing, and the signer's edge through its OpenSSL twin for P-256). Both use the
 * same two kinds of key, the private key of a client certificate (ECDSA P-256) or a registered
 * Ed25519 key. What differs between them is which encodings count, so each caller names its
 * rules explicitly ({@link APPROVAL_RULES}, {@link REQUEST_RULES}).
 */
export type SignatureAlgorithm = 'ecdsa-p256' | 'ed25519';

export interface PublicKey {
  algorithm: SignatureAlgorithm;
  /** P-256: SEC1 point (33 or 65 bytes); Ed25519: the 32-byte key. */
  publicKey: Uint8Array;
}

/** Which encodings verify. ECDSA is always over SHA-256 of the message, high s accepted. */
export interface VerifyRules {
  /** `der`: X9.62 DER only; `der-or-compact`: a 64-byte signature is r||s, any other length DER. */
  p256: 'der' | 'der-or-compact';
  /**
   * `strict`: RFC 8032 decoding (noble's zip215: false), one valid encoding per signature and key;
   * `zip215`: ZIP-215's permissive decoding (non-canonical point encodings verify too).
   */
  ed25519: 'strict' | 'zip215';
}

/**
 * Admins' approvals: what OpenSSL, WebCrypto (r||s), Node's crypto.sign('sha256') and Python's
 * cryptography produce. High s and a second encoding are harmless: approvals count once per admin.
 */
export const APPROVAL_RULES: VerifyRules = { p256: 'der-or-compact', ed25519: 'zip215' };

/**
 * Clients' request signatures (kept in audit entries for an auditor's offline check): DER only,
 * strict Ed25519. High s is accepted: clients' libraries do not normalise it, and the signature is
 * not a transaction id anyone could malleate into a second valid request (the request id is).
 */
export const REQUEST_RULES: VerifyRules = { p256: 'der', ed25519: 'strict' };

/**
 * Whether `signature` is `key`'s over `message` under `rules`: ECDSA P-256 with SHA-256 of the
 * message, or RFC 8032 Ed25519 over the message itself. Malformed keys or signatures, and an
 * unknown algorithm, verify as false; never throws.
 */
export function verifySignature(
  key: PublicKey,
  message: Uint8Array,
  signature: Uint8Array,
  rules: VerifyRules,
): boolean {
  try {
    if (key.algorithm === 'ed25519')
      return ed25519.verify(signature, message, key.publicKey, { zip215: rules.ed25519 === 'zip215' });
    if (key.algorithm !== 'ecdsa-p256') return false;
    const format = rules.p256 === 'der-or-compact' && signature.length === 64 ? 'compact' : 'der';
    return p256.verify(signature, message, key.publicKey, { prehash: true, lowS: false, format });
  } catch {
    return false;
  }
}
