/**
 * Verification of a client's request signature over the canonical request bytes
 * (canonical.ts). Two schemes, named by the key that signs:
 *
 * - `ecdsa-p256`: ECDSA over P-256 with SHA-256 of the message, the signature DER-encoded
 *   (X9.62 Ecdsa-Sig-Value, what OpenSSL, Python `cryptography` and Node's crypto.sign emit).
 *   High s is accepted: those libraries do not normalise it, and the signature is not a
 *   transaction id anyone could malleate into a second valid request (the request id is).
 * - `ed25519`: RFC 8032 Ed25519 over the message itself, 64 bytes, strict (non-ZIP-215) encodings.
 *
 * The verifier is @noble/curves; nothing here is hand-rolled.
 */
import { ed25519 } from '@noble/curves/ed25519.js';
import { p256 } from '@noble/curves/nist.js';

export type RequestKeyAlgorithm = 'ecdsa-p256' | 'ed25519';

/** A public key a client may sign its requests with. */
export interface RequestKey {
  /** `spki-sha256:<hex>` of the key's SubjectPublicKeyInfo DER (the form of config pins). */
  fingerprint: string;
  algorithm: RequestKeyAlgorithm;
  /** Uncompressed SEC1 point (65 bytes) for P-256, 32 bytes for Ed25519. */
  publicKey: Uint8Array;
  /** Where the key comes from, for logs and audit readers: the client certificate or registration. */
  source: 'certificate' | 'registered';
}

/**
 * The request-signing keys registered for a client (besides its certificate's key). Behind an
 * interface because today they come from the config and later from the store under an admin
 * quorum.
 */
export interface RequestKeySource {
  keysFor(client: string): readonly RequestKey[];
}

/** Whether `signature` is `key`'s signature over `message`; false for any malformed input. */
export function verifyRequestSignature(key: RequestKey, message: Uint8Array, signature: Uint8Array): boolean {
  try {
    if (key.algorithm === 'ed25519') return ed25519.verify(signature, message, key.publicKey, { zip215: false });
    if (key.algorithm === 'ecdsa-p256')
      return p256.verify(signature, message, key.publicKey, { prehash: true, lowS: false, format: 'der' });
    return false;
  } catch {
    return false;
  }
}
