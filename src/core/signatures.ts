import { ed25519 } from '@noble/curves/ed25519.js';
import { p256 } from '@noble/curves/nist.js';

/**
 * Signatures made by people and programs outside the HSM (admins approving a proposal, clients
 * signing requests), verified with @noble/curves. Shared: an admin's key and a client's
 * request-signing key are the same two kinds, the private key of a client certificate (ECDSA
 * P-256) or a registered Ed25519 key.
 */
export type PublicKeyAlgorithm = 'p256' | 'ed25519';

export interface PublicKey {
  algorithm: PublicKeyAlgorithm;
  /** P-256: SEC1 point (33 or 65 bytes); Ed25519: the 32-byte key. */
  bytes: Uint8Array;
}

/**
 * Whether `signature` signs `message` under `key`.
 * - p256: ECDSA with SHA-256 over the message (what OpenSSL, WebCrypto, Node's crypto.sign('sha256')
 *   and Python's cryptography produce), as 64-byte r||s or DER. High s is accepted: these keys
 *   sign with ordinary libraries that do not normalise s, and a second encoding of the same
 *   approval gains nothing (approvals count once per admin).
 * - ed25519: RFC 8032 over the message itself.
 * Malformed keys or signatures verify as false, never throw.
 */
export function verifySignature(key: PublicKey, message: Uint8Array, signature: Uint8Array): boolean {
  try {
    if (key.algorithm === 'ed25519') return ed25519.verify(signature, message, key.bytes);
    const format = signature.length === 64 ? 'compact' : 'der';
    return p256.verify(signature, message, key.bytes, { prehash: true, lowS: false, format });
  } catch {
    return false;
  }
}
