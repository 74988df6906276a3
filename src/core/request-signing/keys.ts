/**
 * The keys a client signs its requests with (over the canonical request bytes, canonical.ts).
 * Two schemes, named by the key that signs, verified by core/signatures.ts under REQUEST_RULES:
 *
 * - `ecdsa-p256`: ECDSA over P-256 with SHA-256 of the message, the signature DER-encoded
 *   (X9.62 Ecdsa-Sig-Value, what OpenSSL, Python `cryptography` and Node's crypto.sign emit).
 * - `ed25519`: RFC 8032 Ed25519 over the message itself, 64 bytes, strict (non-ZIP-215) encodings.
 */
import type { PublicKey, SignatureAlgorithm } from '../signatures.js';

export type RequestKeyAlgorithm = SignatureAlgorithm;

/** A public key a client may sign its requests with. */
export interface RequestKey extends PublicKey {
  /** `spki-sha256:<hex>` of the key's SubjectPublicKeyInfo DER (the form of config pins). */
  fingerprint: string;
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
