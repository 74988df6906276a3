import type { AuditEntry } from '../../core/audit/chain.js';
import type { AuditDraft } from '../../core/audit/draft.js';

/**
 * The audit log's storage contract. Entries are appended in the same transaction as the change
 * they describe (replay records, key and policy changes: see Store and ReplayStore), so no
 * signature and no change is ever durable without its entry; the store assigns `seq` (gapless)
 * and links each entry to the previous one's hash (audit-chain.ts, one function for every
 * dialect).
 */

export interface StoredCheckpoint {
  seq: number;
  headHash: string;
  at: string;
  auditKey: { keyId: string; version: number };
  signature: string;
}

export interface AuditStore {
  /**
   * Appends entries that describe no stored change (service start and stop, refusals decided
   * before any record was read). All or nothing.
   */
  appendAudit(drafts: AuditDraft[]): Promise<void>;
  /** The newest entry's seq and hash; undefined for an empty log. */
  auditHead(): Promise<{ seq: number; hash: string } | undefined>;
  /** Entries with seq in [fromSeq, toSeq], in seq order, read in pages (constant memory). */
  readAudit(fromSeq: number, toSeq: number): AsyncIterable<AuditEntry>;
  /** The seq range of entries whose time falls in [from, to); undefined when none. */
  auditRange(from: Date | null, to: Date | null): Promise<{ first: number; last: number } | undefined>;
  /** Records a checkpoint; a second one for the same seq (another replica) is ignored. */
  putCheckpoint(c: StoredCheckpoint): Promise<void>;
  /** Checkpoints with seq in [fromSeq, toSeq], in seq order. */
  checkpoints(fromSeq: number, toSeq: number): Promise<StoredCheckpoint[]>;
}
