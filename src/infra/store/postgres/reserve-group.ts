import type pg from 'pg';
import type { PoolClient, QueryConfig, QueryResult } from 'pg';
import type { AuditDraft } from '../../../core/audit/draft.js';
import type { ReservePlan } from '../../../core/replay/records.js';
import type { Settled } from '../batcher.js';
import { auditInsert, auditLockAndHead, headOf } from './audit.js';
import { checkDrafts } from './checks.js';
import { groupReads } from './group-reads.js';
import { type Decided, groupWrites } from './group-writes.js';
import { GroupOverlay } from './overlay.js';
import { writeQueries } from './reservation.js';
import type { ReserveOp } from './reserve-op.js';
import { q } from './sql.js';
import { backoff, isRetryable, MAX_ATTEMPTS } from './transaction.js';

/** Reservations per group transaction: bounds how long one group holds its locks. */
export const MAX_GROUP_SIZE = 64;

export { type ReserveOp, reserveOp } from './reserve-op.js';

/**
 * Runs reservations in one transaction, like SQLite's group commit, in two round trips:
 *
 *   [BEGIN, lock(all subjects), reads of 1..n together (row-locking)] -> decide 1..n in turn, each on its view
 *   brought up to date with the writes of the plans before it (overlay.ts) -> [writes 1..n, COMMIT]
 *   (runs of insert-only plans share their statements: group-writes.ts)
 *
 * or, when plans carry audit drafts, with the audit lock last and held for one round trip:
 *
 *   -> [writes 1..n, audit lock, audit head] -> chain the drafts of plans 1..n -> [insert, COMMIT]
 *
 * n reservations cost two (or three) round trips and one commit, instead of 2n round trips and
 * n commits, each holding the locks (a hot client's reservations all share its lock), or n + 1
 * round trips one after the other (each one an event-loop turn of a busy signer, all of them with
 * the locks held). Each reservation decides on what the previous ones wrote, as with one
 * transaction each. Outcomes are
 * delivered only after COMMIT. A statement that fails aborts the transaction: the
 * reservation it belongs to is rejected, or retried if the error is a resolved race, and the
 * group starts over (every `decide` runs again; the contract allows that), its audit drafts
 * with it: they are decided again and appended only by the try that commits.
 */
export async function runGroup(pool: pg.Pool, ops: ReserveOp[]): Promise<Array<Settled<unknown>>> {
  let client: PoolClient;
  try {
    client = await pool.connect();
  } catch (error) {
    return ops.map(() => ({ error }));
  }
  let broken: Error | undefined;
  let groupAttempts = 0;
  let merge = true;
  const fail = (list: ReserveOp[], error: unknown) => list.forEach((o) => (o.result ??= { error }));
  try {
    for (;;) {
      const live = ops.filter((op) => !op.result);
      if (live.length === 0) break;
      const failure = await groupOnce(client, live, merge);
      if (!failure) break;
      const { error, op, merged } = failure;
      try {
        await client.query('ROLLBACK');
      } catch (rollbackError) {
        broken = rollbackError as Error;
        fail(live, error);
        break;
      }
      if (merged) {
        // A statement shared by several reservations failed: run again with each one's own
        // statements, which name the reservation that fails.
        merge = false;
      } else if (op) {
        op.attempts++;
        if (!isRetryable(error) || op.attempts >= MAX_ATTEMPTS) fail([op], error);
        else await backoff(op.attempts);
      } else {
        groupAttempts++;
        if (!isRetryable(error) || groupAttempts >= MAX_ATTEMPTS) {
          fail(live, error);
          break;
        }
        await backoff(groupAttempts);
      }
    }
  } finally {
    client.release(broken);
  }
  return ops.map((op) => op.result ?? { error: new Error('reservation was not run') });
}

type Pending = { query: QueryConfig | string; op?: ReserveOp; merged?: true };
/** Why a try of a group failed: the error, whose statement it was (none: the group's), a merged one. */
type Failure = { error: unknown; op?: ReserveOp; merged?: true };

/** One try of a group; undefined when committed, else the error and whose statement failed. */
async function groupOnce(client: PoolClient, live: ReserveOp[], merge: boolean): Promise<Failure | undefined> {
  const locks = [...new Set(live.flatMap((op) => op.locks))];
  // No separate row locks: the group's reads below are one statement per table over all its
  // items, and each locks the rows it finds in key order (requests, then nonces), the global
  // order complete() uses too, so two groups, or a group and complete(), never wait in a cycle.
  let pending: Pending[] = [{ query: 'BEGIN' }, { query: q('lock', [locks]) }];
  const decided: Array<{ op: ReserveOp; result: Settled<unknown> }> = [];
  // The audit drafts of the plans decided so far, in group order: appended after the last
  // reservation's writes, under the audit lock, in this transaction (and tried again with it).
  const audit: AuditDraft[] = [];
  const send = async (batch: Pending[]): Promise<Failure | { results: QueryResult[] }> => {
    const settled = await Promise.allSettled(batch.map((b) => client.query(b.query)));
    const failed = settled.findIndex((r) => r.status === 'rejected');
    if (failed >= 0) {
      const { op, merged } = batch[failed]!;
      const error = (settled[failed] as PromiseRejectedResult).reason;
      return { error, ...(op ? { op } : {}), ...(merged ? { merged } : {}) };
    }
    return { results: settled.map((r) => (r as PromiseFulfilledResult<QueryResult>).value) };
  };
  // Every view in one round trip, read under all the group's locks by one set of statements
  // (group-reads.ts); each is then brought up to date with what the plans before it in the group
  // write (overlay.ts) and decided in turn.
  const reads = groupReads(live);
  const read = await send([...pending, ...reads.queries.map((query) => ({ query }))]);
  if ('error' in read) return read;
  const views = reads.views(read.results.slice(pending.length));
  pending = [];
  const overlay = new GroupOverlay();
  const plans: Decided[] = [];
  for (const [o, op] of live.entries()) {
    let plan: ReservePlan<unknown>;
    try {
      plan = op.decide(overlay.apply(op.req, views[o]!));
      // Refuses a plan naming items that do not exist, before anything of the group is sent.
      writeQueries(op.req, plan, op.now, op.now + op.req.leaseMs);
      if (plan.audit) checkDrafts(plan.audit);
    } catch (error) {
      // decide (or a plan naming items that do not exist, or an audit draft the columns
      // cannot hold) failed: nothing of it is written.
      decided.push({ op, result: { error } });
      continue;
    }
    plans.push({ op, plan });
    overlay.record(op.req, plan);
    if (plan.audit) audit.push(...plan.audit);
    decided.push({ op, result: { value: plan.outcome } });
  }
  pending = groupWrites(plans, merge);
  // [writes 1..n, (audit lock, head) | COMMIT] -> [insert audit, COMMIT]
  const tail = audit.length > 0 ? auditLockAndHead() : ['COMMIT'];
  const sent = await send([...pending, ...tail.map((query) => ({ query }))]);
  if ('error' in sent) return sent;
  let last = sent.results.at(-1)!;
  if (audit.length > 0) {
    let insert: QueryConfig;
    try {
      insert = auditInsert(audit, headOf(last));
    } catch (error) {
      return { error }; // drafts are checked when decided; belt and braces
    }
    const commit = await send([{ query: insert }, { query: 'COMMIT' }]);
    if ('error' in commit) return { error: commit.error };
    last = commit.results.at(-1)!;
  }
  // COMMIT of a failed transaction answers ROLLBACK; a failed statement would have thrown
  // above, so this is belt and braces.
  if (last.command !== 'COMMIT') return { error: new Error('reservation transaction was rolled back') };
  for (const d of decided) d.op.result = d.result;
  return undefined;
}
