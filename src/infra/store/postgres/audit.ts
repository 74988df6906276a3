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
import { type AppendPoint, appendPointOf, HEAD_AND_TREE, insertWithTree } from './audit-tree.js';
import { AUDIT_LOCK, q } from './sql.js';

/**
 * The audit lock and the head read under it, with the Merkle tree's frontier (audit-tree.ts):
 * the last statements before auditInsert and COMMIT.
 */
export const auditLockAndHead = (): QueryConfig[] => [
  q('auditLock', [...AUDIT_LOCK]),
  { name: 'signer_auditHeadAndTree', text: HEAD_AND_TREE, values: [] },
];

/** Where to append, as auditLockAndHead's last statement answered it (BIGINT comes back as text). */
export function headOf(result: QueryResult): AppendPoint {
  return appendPointOf(result);
}

/**
 * `drafts` numbered and chained after the head (chainDrafts), inserted with their Merkle nodes
 * and the new frontier in one statement.
 */
export function auditInsert(drafts: AuditDraft[], at: AppendPoint): QueryConfig {
  return insertWithTree(drafts, at);
}
