import { SignerError } from '../errors.js';

/** Length of a pre-hashed ECDSA digest (SHA-256 / Keccak-256 output). */
export const DIGEST_BYTES = 32;

/**
 * Accepts a caller-computed digest for an ECDSA key. The service signs it as is (no hashing),
 * so the caller is responsible for having hashed exactly what it means to sign.
 *
 * Guarantees: the result is a fresh 32-byte copy that is not all zeros. A gRPC Buffer may share
 * memory with the request, and we must not sign bytes that change after validation.
 * Throws INVALID_ARGUMENT / PAYLOAD_INVALID otherwise.
 */
export function parseDigest(bytes: Uint8Array): Uint8Array {
  if (bytes.length !== DIGEST_BYTES) {
    throw new SignerError('PAYLOAD_INVALID', `digest must be ${DIGEST_BYTES} bytes, got ${bytes.length}`);
  }
  // An all-zero "digest" is almost always an uninitialised buffer, not the output of a hash.
  if (bytes.every((b) => b === 0)) {
    throw new SignerError('PAYLOAD_INVALID', 'digest is all zeros; refusing to sign an empty buffer');
  }
  return new Uint8Array(bytes);
}
