import { SignerError } from '../errors.js';

/** Upper bound on an Ed25519 message: Ed25519 hashes the whole message, so it travels in full. */
export const MAX_MESSAGE_BYTES = 65536;

/**
 * Accepts a message for an Ed25519 key (signed whole, no pre-hashing by the service).
 *
 * Guarantees: the result is a fresh copy of 1..MAX_MESSAGE_BYTES bytes, detached from the
 * request buffer. Throws INVALID_ARGUMENT / PAYLOAD_INVALID otherwise.
 */
export function parseMessage(bytes: Uint8Array): Uint8Array {
  if (bytes.length === 0) {
    throw new SignerError('PAYLOAD_INVALID', `message must be 1..${MAX_MESSAGE_BYTES} bytes, got 0`);
  }
  if (bytes.length > MAX_MESSAGE_BYTES) {
    throw new SignerError('PAYLOAD_INVALID', `message must be 1..${MAX_MESSAGE_BYTES} bytes, got ${bytes.length}`);
  }
  return new Uint8Array(bytes);
}
