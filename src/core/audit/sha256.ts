/**
 * SHA-256 for the audit log's hot path (entry hashes, leaf and node hashes), on Node's OpenSSL
 * instead of @noble/hashes.
 *
 * Why: every signature appends an entry, hashed twice over its ~1.3 KB of canonical JSON (the
 * chain hash and the Merkle leaf) plus a node hash per completed subtree, all on the event loop.
 * Measured here, one-shot `crypto.hash` takes a third of noble's time on such an entry and about
 * half on a 65-byte node. SHA-256 is the same function either way: test/audit-sha256.test.ts
 * holds this one to @noble/hashes byte for byte on the audit's own inputs (entries with and
 * without a signed request, refusals, unicode, the empty string, node and leaf preimages).
 */
import { hash } from 'node:crypto';

/** SHA-256 of the concatenation of `parts`. */
export function sha256(...parts: Uint8Array[]): Uint8Array {
  const data = parts.length === 1 ? parts[0]! : Buffer.concat(parts);
  // A plain Uint8Array, as noble returned: callers compare and store these bytes.
  return new Uint8Array(hash('sha256', data, 'buffer'));
}
