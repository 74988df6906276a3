import { createHash } from 'node:crypto';
import type { ReserveItem } from '../src/core/replay/records.js';

/** A payload hash for store tests: SHA-256 of a label. */
export const hashOf = (s: string): Buffer => createHash('sha256').update(s).digest();

/** One item of a store reservation for tests: client "engine", key "k1", value 1, payload hashed from its id. */
export const reserveItem = (requestId: string): ReserveItem => ({
  client: 'engine',
  requestId,
  keyId: 'k1',
  payloadHash: hashOf(requestId),
  value: 1n,
});
