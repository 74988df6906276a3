/**
 * The audit log's storage contract. Entries are appended in the same transaction as the replay
 * records they describe, so a signature can never be returned without its entry on disk; the
 * store assigns `seq` (gapless) and links each entry to the previous one's hash.
 */

/** An audit entry before the store numbers and chains it. MUST NOT carry secrets. */
export interface AuditDraft {
  kind: string;
  at: Date;
  client: string | null;
  keyId: string | null;
  keyVersion: number | null;
  /** Request id, or batch id for batch entries. */
  requestId: string | null;
  payloadHash: Uint8Array | null;
  /** Decoded intent: chain, nonce, recipient, value... as decimal or hex strings. */
  intent: Record<string, string> | null;
  decision: 'allowed' | 'refused' | 'done';
  reason: string | null;
  /** sha256 of the signature bytes returned, for signed entries. */
  signatureHash: Uint8Array | null;
}

export interface StoredCheckpoint {
  seq: number;
  headHash: string;
  at: string;
  auditKey: { keyId: string; version: number };
  signature: string;
}

export interface AuditStore {
  /** Appends entries on their own (events with no replay record: refusals, key changes...). */
  appendAudit(drafts: AuditDraft[]): Promise<void>;
  /** The newest entry's seq and hash; undefined for an empty log. */
  auditHead(): Promise<{ seq: number; hash: string } | undefined>;
  /** Entries with seq in [fromSeq, toSeq], in seq order, read in pages (constant memory). */
  readAudit(fromSeq: number, toSeq: number): AsyncIterable<import('../audit/chain.js').AuditEntry>;
  /** The seq range of entries whose time falls in [from, to); undefined when none. */
  auditRange(from: Date | null, to: Date | null): Promise<{ first: number; last: number } | undefined>;
  /** Records a checkpoint; a second one for the same seq (another replica) is ignored. */
  putCheckpoint(c: StoredCheckpoint): Promise<void>;
  /** Checkpoints with seq in [fromSeq, toSeq], in seq order. */
  checkpoints(fromSeq: number, toSeq: number): Promise<StoredCheckpoint[]>;
}
