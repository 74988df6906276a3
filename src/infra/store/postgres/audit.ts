/**
 * Appending to the audit chain in PostgreSQL: the one append path, shared by every transaction
 * that writes entries (reservations, completions, key and policy changes, appendAudit).
 *
 * The lock is the LAST lock any transaction takes: a transaction that holds it only reads the
 * head, inserts rows nobody else can insert (the lock serialises inserters) and commits, so it
 * never waits for anything and no lock cycle can include it. The head is read by a statement of
 * its own AFTER the lock statement: READ COMMITTED takes a new snapshot per statement, so it sees
 * the previous holder's commit (a transaction is visible before its locks are released). In one
 * statement with the lock its snapshot could predate the lock, and two replicas would chain onto
 * the same head: a fork.
 */
import type { QueryConfig, QueryResult } from 'pg';
import type { AuditDraft } from '../../../core/audit/draft.js';
import { AUDIT_COLUMNS, chainDrafts } from '../audit-chain.js';
import { AUDIT_LOCK, q } from './sql.js';

/** The audit lock and the head read under it: the last statements before auditInsert and COMMIT. */
export const auditLockAndHead = (): QueryConfig[] => [q('auditLock', [...AUDIT_LOCK]), q('auditHead', [])];

/** The head as auditLockAndHead's last statement answered it (BIGINT seq comes back as text). */
export function headOf(result: QueryResult): { seq: number; hash: string } | undefined {
  const r = result.rows[0] as { seq: string; hash: string } | undefined;
  return r ? { seq: Number(r.seq), hash: r.hash } : undefined;
}

/** `drafts` numbered and chained after `head` (chainDrafts), as one insert of column arrays. */
export function auditInsert(drafts: AuditDraft[], head: { seq: number; hash: string } | undefined): QueryConfig {
  const cols: unknown[][] = AUDIT_COLUMNS.map(() => []);
  for (const row of chainDrafts(drafts, head).rows) row.forEach((v, i) => cols[i]!.push(v));
  return q('insertAudit', cols);
}
