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

/** One version of a named policy; every version is kept, so changes are on record. */
export interface PolicyRecord {
  name: string;
  version: number;
  /** The policy as JSON, exactly as it was set. */
  document: string;
  updatedAt: Date;
  /** Client CN of the admin who set it, or "config". */
  updatedBy: string;
}

/**
 * Durable state shared by all replicas. Implementations enforce uniqueness in the database
 * (constraints, transactions), never with in-process locks.
 */
export interface Store {
  /** Inserts a key version; fails with `KeyExistsError` if (keyId, version) exists. */
  insertKey(k: KeyRecord): Promise<void>;
  listKeys(): Promise<KeyRecord[]>;
  /** Appends the next version of a policy (version = latest + 1, decided in the database). */
  putPolicy(name: string, document: string, updatedBy: string, at: Date): Promise<PolicyRecord>;
  /** The latest version of every policy. */
  listPolicies(): Promise<PolicyRecord[]>;
  /** Every version of one policy, oldest first. */
  policyHistory(name: string): Promise<PolicyRecord[]>;
  close(): Promise<void>;
}

export class KeyExistsError extends Error {
  override name = 'KeyExistsError';
}
