import type { Algorithm } from '../config/schema.js';

export type KeyState = 'active' | 'verify-only' | 'disabled' | 'destroyed';

/** One version of a key: where it lives in the token and what it verifies with. */
export interface KeyRecord {
  keyId: string;
  version: number;
  algorithm: Algorithm;
  /** CKA_ID of the token objects. */
  ckaId: Uint8Array;
  publicKey: Uint8Array;
  state: KeyState;
  createdAt: Date;
}

/**
 * Durable state shared by all replicas. Implementations enforce uniqueness in the database
 * (constraints, transactions), never with in-process locks.
 */
export interface Store {
  /** Inserts a key version; fails with `KeyExistsError` if (keyId, version) exists. */
  insertKey(k: KeyRecord): Promise<void>;
  listKeys(): Promise<KeyRecord[]>;
  close(): Promise<void>;
}

export class KeyExistsError extends Error {
  override name = 'KeyExistsError';
}
