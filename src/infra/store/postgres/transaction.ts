import pg, { type PoolClient, type QueryConfig, type QueryResult } from 'pg';
import type { AuditDraft } from '../../../core/audit/draft.js';
import { auditLockAndHead, headOf } from './audit.js';
import { type AppendPoint, appendAfter, TREE_MOVED } from './audit-tree.js';
import { checkDrafts } from './checks.js';
import { AUDIT_LOCK, q } from './sql.js';

const { DatabaseError } = pg;

/** Serialisation failure and deadlock: the database resolved a race; the loser tries again. */
const RACE_CODES = new Set(['40001', '40P01']);
/** Unique violation: for inserts that may race (the loser sees the winner on its next try). */
const UNIQUE_VIOLATION = '23505';
export const MAX_ATTEMPTS = 10;

/** Errors after which a whole transaction is tried again. */
export function isRetryable(e: unknown, retryUnique = true): boolean {
  if (!(e instanceof DatabaseError) || e.code === undefined) return false;
  return RACE_CODES.has(e.code) || (retryUnique && e.code === UNIQUE_VIOLATION);
}

export const isUniqueViolation = (e: unknown) => e instanceof DatabaseError && e.code === UNIQUE_VIOLATION;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** Small jittered exponential backoff: 1-4 ms, 2-8 ms, ... capped at 50 ms. */
export const backoff = (attempt: number) => sleep(Math.min(50, 2 ** attempt) * (0.5 + Math.random() * 1.5));

/**
 * Runs `f` (one statement, or one whole transaction) on a pooled connection, again when the
 * database resolved a race; with `retryUnique: false` a unique violation is final (an insert
 * whose row exists for good). A failed transaction is rolled back; a connection that cannot
 * roll back is dropped from the pool.
 */
export async function withRetries<R>(
  pool: pg.Pool,
  f: (c: PoolClient) => Promise<R>,
  opts: { retryUnique?: boolean } = {},
): Promise<R> {
  const client = await pool.connect();
  let broken: Error | undefined;
  try {
    for (let attempt = 1; ; attempt++) {
      try {
        return await f(client);
      } catch (e) {
        try {
          await client.query('ROLLBACK');
        } catch (rollbackError) {
          broken = rollbackError as Error;
          throw e;
        }
        if (attempt < MAX_ATTEMPTS && isRetryable(e, opts.retryUnique ?? true)) {
          await backoff(attempt);
          continue;
        }
        throw e;
      }
    }
  } finally {
    client.release(broken);
  }
}

/**
 * Sends all statements at once and waits for all answers. Throws the first failure in
 * statement order: the cause, not the "current transaction is aborted" errors that follow it.
 */
export async function pipeline(client: PoolClient, queries: Array<QueryConfig | string>): Promise<QueryResult[]> {
  const settled = await Promise.allSettled(queries.map((x) => client.query(x)));
  const failed = settled.find((s) => s.status === 'rejected');
  if (failed) throw failed.reason;
  return settled.map((s) => (s as PromiseFulfilledResult<QueryResult>).value);
}

/**
 * The audit entries a transaction commits with: given, or derived from the results of its
 * statements (a policy's version, whether a key row moved). A deriving function may throw to
 * roll the whole transaction back (the change did not apply as asked).
 */
export type AuditOf = AuditDraft[] | ((results: QueryResult[]) => AuditDraft[]);

/**
 * One transaction; resolves to the results of `queries` once committed. Without audit entries
 * one round trip; with them two, the audit lock held for the second only:
 * [BEGIN, queries, audit lock, head] -> chain -> [insert, COMMIT].
 */
export async function inTransaction(
  client: PoolClient,
  queries: QueryConfig[],
  audit: AuditOf = [],
  appended?: (after: AppendPoint) => void,
): Promise<QueryResult[]> {
  if (Array.isArray(audit) && audit.length === 0) {
    const results = await pipeline(client, ['BEGIN', ...queries, 'COMMIT']);
    // A COMMIT of a failed transaction is answered with ROLLBACK, not an error; the failed
    // statement has thrown already, this is belt and braces.
    if (results.at(-1)!.command !== 'COMMIT') throw new Error('transaction was rolled back');
    return results.slice(1, -1);
  }
  const results = await pipeline(client, ['BEGIN', ...queries, ...auditLockAndHead()]);
  const own = results.slice(1, 1 + queries.length);
  let drafts = audit as AuditDraft[];
  if (typeof audit === 'function') {
    drafts = audit(own);
    checkDrafts(drafts);
  }
  const append = drafts.length > 0 ? appendAfter(drafts, headOf(results.at(-1)!)) : undefined;
  const tail = await pipeline(client, [...(append ? [append.query] : []), 'COMMIT']);
  if (tail.at(-1)!.command !== 'COMMIT') throw new Error('transaction was rolled back');
  if (append) appended?.(append.after);
  return own;
}

/**
 * inTransaction with an append built (appendAfter) on a point remembered rather than read: ONE
 * round trip, [BEGIN, queries, audit lock, insert, COMMIT]. The insert itself checks, under the
 * lock, that the tree is still where the append was built (INSERT_WITH_TREE); when it is not (another replica or
 * another transaction of this process appended meanwhile, or the database went back) the
 * transaction fails with TREE_MOVED, or a unique violation on the entries' seq, and nothing of
 * it is committed: see headMoved.
 */
export async function inTransactionAt(
  client: PoolClient,
  queries: QueryConfig[],
  append: { query: QueryConfig; after: AppendPoint },
): Promise<QueryResult[]> {
  const results = await pipeline(client, [
    'BEGIN',
    ...queries,
    q('auditLock', [...AUDIT_LOCK]),
    append.query,
    'COMMIT',
  ]);
  if (results.at(-1)!.command !== 'COMMIT') throw new Error('transaction was rolled back');
  return results.slice(1, 1 + queries.length);
}

/** The append of inTransactionAt was refused because the log is no longer where it was built. */
export const headMoved = (e: unknown) =>
  e instanceof DatabaseError && (e.code === TREE_MOVED || e.code === UNIQUE_VIOLATION);
