import type pg from 'pg';
import type { Approval } from '../../core/admin/approvals.js';
import type { AuditEntry } from '../../core/audit/chain.js';
import type { AuditDraft } from '../../core/audit/draft.js';
import type { NodeId } from '../../core/audit/merkle.js';
import type {
  CompleteResult,
  Completion,
  ReplayStore,
  ReservePlan,
  ReserveRequest,
  ReserveView,
} from '../../core/replay/records.js';
import { velocityBucket } from '../../core/replay/velocity.js';
import type { AuditStore, StoredCheckpoint } from './audit.js';
import type { AuditTreeStore, StoredNote } from './audit-tree.js';
import {
  BATCH_ITEMS_SQL,
  type BatchItemRow,
  type BatchPage,
  type BatchResultStore,
  batchItemIds,
  batchPage,
} from './batch-results.js';
import { Batcher, type Settled } from './batcher.js';
import {
  type AuditRow,
  auditEntry,
  type CeremonyRow,
  type CheckpointRow,
  ceremonyRecord,
  ceremonyValues,
  checkpointRecord,
  checkpointValues,
  type KeyRow,
  keyRecord,
  keyValues,
  type PolicyRow,
  policyRecord,
} from './codecs.js';
import { migratePostgres } from './migrations/postgres.js';
import { type AppendPoint, appendAfter, PostgresAuditTree } from './postgres/audit-tree.js';
import { checkDrafts, checkRequest, checkText, seqBound } from './postgres/checks.js';
import { openPool, withSessionLock } from './postgres/pool.js';
import { PostgresProposals } from './postgres/proposals.js';
import { MAX_GROUP_SIZE, type ReserveOp, reserveOp, runGroup } from './postgres/reserve-group.js';
import { q } from './postgres/sql.js';
import {
  type AuditOf,
  headMoved,
  inTransaction,
  inTransactionAt,
  isUniqueViolation,
  withRetries,
} from './postgres/transaction.js';
import {
  type AccessRecord,
  type CeremonyRecord,
  type FreezeRecord,
  KeyExistsError,
  type KeyRecord,
  type KeyState,
  type PolicyRecord,
  type ProposalEffects,
  type ProposalRecord,
  type Store,
  type ThresholdInfo,
} from './store.js';

/** Audit entries per readAudit query. */
const AUDIT_PAGE = 1000;

/**
 * The shared store for replicas. A reservation runs in a READ COMMITTED transaction that first
 * takes transaction-scoped advisory locks on the subjects whose reads no row lock can protect
 * (see lockSubjects), then reads the view (row-locking the request and nonce rows it finds),
 * decides and writes. Two reservations that depend on the same data therefore run one after
 * the other, whichever replica or process they come from; primary keys refuse the rest (the
 * loser retries and sees the winner). Nothing is locked in-process: the in-process queue only
 * gathers reservations into group transactions (see runGroup).
 *
 * Statements are pipelined (sent together, answered in order). READ COMMITTED takes a new
 * snapshot per statement, so reads sent right behind the lock statement see everything
 * committed before the locks were granted.
 *
 * The audit log is one hash chain for all replicas. Its entries are appended in the
 * transaction of the change they describe (reservation, completion, key or policy change), or
 * in one of their own (appendAudit), under one advisory lock taken last, right before the head
 * is read, the entries inserted and the transaction committed (postgres/audit.ts). Lock order in
 * every transaction:
 *
 *   reservation subjects (advisory, hash order) -> request rows -> nonce rows (key order)
 *   -> [writes] -> audit lock -> COMMIT
 *
 * complete() and abandon() take request then nonce rows, then the audit lock; key changes their
 * one row, policy and access versions their version lock (advisory), then the audit lock. The holder of the audit lock waits for nothing,
 * so it is never part of a cycle; appends of all replicas commit one after the other, each
 * after the head the previous one committed: seq 1..N without gaps (a rolled-back transaction
 * numbered nothing that anyone saw) or forks.
 */
export class PostgresStore implements Store, ReplayStore, AuditStore, AuditTreeStore, BatchResultStore {
  /** Reservations gathered into group transactions (postgres/reserve-group.ts). */
  private readonly reservations: Batcher<ReserveOp, unknown>;
  /** Completions of one turn: one transaction, one commit, one turn of the audit lock. */
  private readonly completions: Batcher<{ done: Completion[]; audit: AuditDraft[] }, CompleteResult>;
  // One append transaction at a time: they queue for the audit lock anyway, and calls made
  // meanwhile go together into the next one, in call order.
  private readonly appends: Batcher<AuditDraft[], void>;
  private readonly tree: PostgresAuditTree;
  private readonly proposals: PostgresProposals;
  /**
   * Where the log will be once the last append this process sent commits: completions are
   * appended there in one round trip (completeNow). Only a guess: the database checks it.
   */
  private tail: AppendPoint | undefined;

  private constructor(
    private readonly pool: pg.Pool,
    poolSize: number,
  ) {
    this.tree = new PostgresAuditTree(pool);
    this.proposals = new PostgresProposals(pool);
    // Group transactions in flight at once: one holding its locks, one queued behind it. More
    // would mostly wait for the same locks and take connections from complete() and others.
    const maxGroups = Math.max(1, Math.min(2, poolSize - 1));
    const groups = (ops: ReserveOp[]) => runGroup(this.pool, ops);
    this.reservations = new Batcher(groups, { maxInFlight: maxGroups, maxSize: MAX_GROUP_SIZE });
    const completions = async (calls: Array<{ done: Completion[]; audit: AuditDraft[] }>) => {
      const applied = await this.completeNow(calls);
      return calls.map(
        (c): Settled<CompleteResult> => ({
          value: {
            dropped: c.done.filter((d) => !applied.has(d)).map((d) => ({ client: d.client, requestId: d.requestId })),
          },
        }),
      );
    };
    this.completions = new Batcher(completions, { maxInFlight: 2, maxSize: 1000 });
    this.appends = new Batcher(async (calls: AuditDraft[][]) => {
      await this.appendNow(calls.flat());
      return calls.map(committed);
    });
  }

  /**
   * Connects and brings the schema to the latest version (migrations/postgres.ts). `url` is a
   * libpq-style connection URI (`postgres://user:pass@host:port/db?sslmode=...`).
   */
  static async open(url: string, opts: { poolSize?: number } = {}): Promise<PostgresStore> {
    const poolSize = opts.poolSize ?? 10;
    const pool = openPool(url, poolSize);
    try {
      await withRetries(pool, async (c) => {
        await c.query('BEGIN');
        await migratePostgres(c);
        await c.query('COMMIT');
      });
    } catch (e) {
      await pool.end().catch(() => {});
      throw e;
    }
    return new PostgresStore(pool, poolSize);
  }

  async insertKey(k: KeyRecord, audit: AuditDraft[], ceremony?: string): Promise<void> {
    const [end, check] = endCeremony(ceremony);
    await this.keyChange(k, [q('insertKey', keyValues(k)), ...end], (r) => {
      check(r.slice(1));
      return audit;
    });
  }

  async rotateKey(
    next: KeyRecord,
    previousVersion: number,
    retireAt: Date,
    audit: AuditDraft[],
    ceremony?: string,
  ): Promise<void> {
    const values = [...keyValues(next), next.createdAt.getTime(), retireAt.getTime(), previousVersion];
    const [end, check] = endCeremony(ceremony);
    await this.keyChange(next, [q('rotateKey', values), ...end], ([r, ...rest]) => {
      if (r!.rowCount !== 1) throw new KeyExistsError(`key ${next.keyId} v${previousVersion} is no longer active`);
      check(rest);
      return audit;
    });
  }

  async updateThreshold(
    keyId: string,
    version: number,
    info: ThresholdInfo,
    audit: AuditDraft[],
    ceremony?: string,
  ): Promise<void> {
    checkDrafts(audit);
    const [end, check] = endCeremony(ceremony);
    await withRetries(this.pool, (c) =>
      inTransaction(c, [q('updateThreshold', [JSON.stringify(info), keyId, version]), ...end], ([r, ...rest]) => {
        if (r!.rowCount !== 1) throw new Error(`key ${keyId} v${version} is not stored`);
        check(rest);
        return audit;
      }),
    );
  }

  async putCeremony(c: CeremonyRecord, audit: AuditDraft[]): Promise<void> {
    checkDrafts(audit);
    try {
      await withRetries(this.pool, (cl) => inTransaction(cl, [q('putCeremony', [...ceremonyValues(c)])], audit), {
        retryUnique: false,
      });
    } catch (e) {
      if (isUniqueViolation(e)) throw new KeyExistsError(`a ceremony of key ${c.keyId} v${c.version} is in progress`);
      throw e;
    }
  }

  async listCeremonies(): Promise<CeremonyRecord[]> {
    return (await this.pool.query<CeremonyRow>(q('listCeremonies', []))).rows.map(ceremonyRecord);
  }

  async dropCeremony(sessionId: string, audit: AuditDraft[]): Promise<boolean> {
    checkDrafts(audit);
    const [r] = await withRetries(this.pool, (c) =>
      inTransaction(c, [q('dropCeremony', [sessionId])], ([gone]) => (gone!.rowCount === 1 ? audit : [])),
    );
    return r!.rowCount === 1;
  }

  async setKeyState(
    keyId: string,
    version: number,
    from: KeyState[],
    to: KeyState,
    at: Date,
    audit: AuditDraft[],
  ): Promise<boolean> {
    checkDrafts(audit);
    const update = q('setKeyState', [to, at.getTime(), keyId, version, from]);
    const [r] = await withRetries(this.pool, (c) =>
      inTransaction(c, [update], ([moved]) => (moved!.rowCount === 1 ? audit : [])),
    );
    return r!.rowCount === 1;
  }

  async listKeys(): Promise<KeyRecord[]> {
    return (await this.pool.query<KeyRow>(q('listKeys', []))).rows.map(keyRecord);
  }

  async putPolicy(
    name: string,
    document: string,
    updatedBy: string,
    at: Date,
    audit: (version: number) => AuditDraft[],
  ): Promise<PolicyRecord> {
    // Writers of one policy queue on its version lock; the primary key (and a retry) stays the backstop.
    const lock = q('versionLock', [`policy:${name}`]);
    const [, r] = await withRetries(this.pool, (c) =>
      inTransaction(c, [lock, q('putPolicy', [name, document, at.getTime(), updatedBy])], ([, put]) =>
        audit((put!.rows[0] as { version: number }).version),
      ),
    );
    return { name, version: (r!.rows[0] as { version: number }).version, document, updatedAt: at, updatedBy };
  }

  async listPolicies(): Promise<PolicyRecord[]> {
    return (await this.pool.query<PolicyRow>(q('listPolicies', []))).rows.map(policyRecord);
  }

  async policyHistory(name: string): Promise<PolicyRecord[]> {
    return (await this.pool.query<PolicyRow>(q('policyHistory', [name]))).rows.map(policyRecord);
  }

  insertProposal(p: Parameters<Store['insertProposal']>[0], audit: AuditDraft[]): Promise<void> {
    return this.proposals.insert(p, audit);
  }

  addApproval(proposalId: string, approval: Approval, audit: AuditDraft[]): Promise<boolean> {
    return this.proposals.approve(proposalId, approval, audit);
  }

  closeProposal(
    id: string,
    close: Parameters<Store['closeProposal']>[1],
    effects: ProposalEffects,
    audit: (policyVersion: number | null) => AuditDraft[],
  ): Promise<{ policy: PolicyRecord | null } | null> {
    return this.proposals.close(id, close, effects, audit);
  }

  listProposals(): Promise<ProposalRecord[]> {
    return this.proposals.list();
  }

  putAccess(
    document: string,
    updatedBy: string,
    at: Date,
    audit: (version: number) => AuditDraft[],
  ): Promise<AccessRecord> {
    return this.proposals.putAccess(document, updatedBy, at, audit);
  }

  accessHistory(): Promise<AccessRecord[]> {
    return this.proposals.accessHistory();
  }

  freeze(f: FreezeRecord, audit: AuditDraft[]): Promise<boolean> {
    return this.proposals.freeze(f, audit);
  }

  listFreezes(): Promise<FreezeRecord[]> {
    return this.proposals.freezes();
  }

  reserve<T>(req: ReserveRequest, decide: (view: ReserveView) => ReservePlan<T>): Promise<T> {
    try {
      checkRequest(req);
    } catch (e) {
      return Promise.reject(e);
    }
    return this.reservations.submit(reserveOp(req, decide)) as Promise<T>;
  }

  async complete(done: Completion[], audit: AuditDraft[]): Promise<CompleteResult> {
    for (const d of done) {
      checkText('client', d.client);
      checkText('request id', d.requestId);
      if (d.attempt !== undefined) checkText('attempt', d.attempt);
    }
    checkDrafts(audit);
    if (done.length === 0 && audit.length === 0) return { dropped: [] };
    return this.completions.submit({ done, audit: [...audit] }, done.length + audit.length);
  }

  /**
   * The completions of one run: results, then the calls' audit entries in call order, then
   * COMMIT. Returns the completions that applied; a record done already or owned by another
   * attempt is not touched (as with SQLite, the first completion of a request wins).
   */
  private async completeNow(calls: Array<{ done: Completion[]; audit: AuditDraft[] }>): Promise<Set<Completion>> {
    const first = new Map<string, Completion>();
    for (const d of calls.flatMap((c) => c.done)) {
      const k = JSON.stringify([d.client, d.requestId]);
      if (!first.has(k)) first.set(k, d);
    }
    const rows = [...first.values()];
    const values = [rows.map((d) => d.client), rows.map((d) => d.requestId), rows.map((d) => Buffer.from(d.result))];
    const queries =
      rows.length > 0
        ? [q('completeRequests', [...values, rows.map((d) => d.attempt ?? null)]), q('completeNonces', values)]
        : [];
    const audit = calls.flatMap((c) => c.audit);
    const results = await withRetries(this.pool, async (c) => {
      const at = this.tail;
      if (at && audit.length > 0) {
        // One round trip on the point the previous append of this process left (the next
        // completion group can be sent right behind this one, on the point this one leaves).
        // The database refuses it if the log moved meanwhile; then the head is read as usual.
        const append = appendAfter(audit, at);
        this.tail = append.after;
        try {
          return await inTransactionAt(c, queries, append);
        } catch (e) {
          this.tail = undefined;
          if (!headMoved(e)) throw e;
          await c.query('ROLLBACK');
        }
      }
      return inTransaction(c, queries, audit, (after) => (this.tail ??= after));
    });
    const applied = (results[0]?.rows ?? []) as Array<{ client: string; request_id: string }>;
    return new Set(applied.map((r) => first.get(JSON.stringify([r.client, r.request_id]))!));
  }

  async appendAudit(drafts: AuditDraft[]): Promise<void> {
    checkDrafts(drafts);
    if (drafts.length > 0) await this.appends.submit([...drafts], drafts.length);
  }

  private async appendNow(drafts: AuditDraft[]): Promise<void> {
    await withRetries(this.pool, (c) => inTransaction(c, [], drafts));
  }

  readNodes(ids: readonly NodeId[]): Promise<readonly Uint8Array[]> {
    return this.tree.readNodes(ids);
  }

  async treeHead(size: number): Promise<Uint8Array> {
    await this.tree.checkSize(size);
    return this.tree.reads.treeHead(size);
  }

  async inclusionProof(seq: number, size: number): Promise<Uint8Array[]> {
    await this.tree.checkSize(size);
    return this.tree.reads.inclusionProof(seq, size);
  }

  async consistencyProof(fromSize: number, toSize: number): Promise<Uint8Array[]> {
    await this.tree.checkSize(toSize);
    return this.tree.reads.consistencyProof(fromSize, toSize);
  }

  putCheckpointNote(c: StoredNote): Promise<void> {
    return this.tree.putNote(c);
  }

  latestCheckpointNote(): Promise<StoredNote | undefined> {
    return this.tree.latestNote();
  }

  checkpointNote(size: number, atLeast = false): Promise<StoredNote | undefined> {
    return this.tree.noteAt(size, atLeast);
  }

  replaceCheckpointNote(size: number, note: string): Promise<void> {
    return this.tree.replaceNote(size, note);
  }

  async auditHead(): Promise<{ seq: number; hash: string } | undefined> {
    const { rows } = await this.pool.query<{ seq: string; hash: string }>(q('auditHead', []));
    const r = rows[0];
    return r ? { seq: Number(r.seq), hash: r.hash } : undefined;
  }

  async *readAudit(fromSeq: number, toSeq: number): AsyncIterable<AuditEntry> {
    // Pages of 1000 by seq, each its own query: memory stays constant however long the range.
    // Every snapshot sees a prefix of the chain (appends commit in seq order, see above).
    const last = seqBound(toSeq, 'floor');
    for (let next = seqBound(fromSeq, 'ceil'); next <= last; ) {
      const { rows } = await this.pool.query<AuditRow>(q('readAudit', [next, last, AUDIT_PAGE]));
      if (rows.length === 0) return;
      for (const r of rows) yield auditEntry(r);
      if (rows.length < AUDIT_PAGE) return;
      next = Number(rows[rows.length - 1]!.seq) + 1;
    }
  }

  async auditRange(from: Date | null, to: Date | null): Promise<{ first: number; last: number } | undefined> {
    const bounds = [from?.getTime() ?? 0, to?.getTime() ?? Number.MAX_SAFE_INTEGER];
    const { rows } = await this.pool.query<{ first: string | null; last: string | null }>(q('auditRange', bounds));
    const r = rows[0]!;
    return r.first === null || r.last === null ? undefined : { first: Number(r.first), last: Number(r.last) };
  }

  async putCheckpoint(c: StoredCheckpoint): Promise<void> {
    const texts = { 'head hash': c.headHash, time: c.at, 'key id': c.auditKey.keyId, signature: c.signature };
    for (const [what, v] of Object.entries(texts)) checkText(`checkpoint ${what}`, v);
    await withRetries(this.pool, (client) => client.query(q('putCheckpoint', checkpointValues(c))));
  }

  async checkpoints(fromSeq: number, toSeq: number): Promise<StoredCheckpoint[]> {
    const bounds = [seqBound(fromSeq, 'ceil'), seqBound(toSeq, 'floor')];
    return (await this.pool.query<CheckpointRow>(q('checkpoints', bounds))).rows.map(checkpointRecord);
  }

  async abandon(
    items: Array<{ client: string; requestId: string; attempt?: string }>,
    audit: AuditDraft[],
  ): Promise<void> {
    for (const it of items) {
      checkText('client', it.client);
      checkText('request id', it.requestId);
      if (it.attempt !== undefined) checkText('attempt', it.attempt);
    }
    checkDrafts(audit);
    if (items.length === 0 && audit.length === 0) return;
    // Only the attempt that owns a record gives its lease up.
    const values = [items.map((d) => d.client), items.map((d) => d.requestId), items.map((d) => d.attempt ?? null)];
    const queries = items.length > 0 ? [q('abandonRequests', values), q('abandonNonces', values)] : [];
    await withRetries(this.pool, (c) => inTransaction(c, queries, audit));
  }

  async prune(before: { requests: Date; velocity: Date }): Promise<number> {
    const t = before.requests.getTime();
    const results = await withRetries(this.pool, (c) =>
      inTransaction(c, [
        q('pruneVelocity', [velocityBucket(before.velocity.getTime()) - 1]),
        q('pruneTokenVelocity', [velocityBucket(before.velocity.getTime()) - 1]),
        q('pruneBatches', [t]),
        q('pruneRequests', [t]),
      ]),
    );
    return results[3]!.rowCount ?? 0;
  }

  async batchResults(
    client: string,
    batchId: string,
    from: number,
    count: number,
    now: Date,
  ): Promise<BatchPage | undefined> {
    const values = [client, batchId, batchItemIds(batchId, from, count)];
    const { rows } = await this.pool.query<BatchItemRow>({
      name: 'signer_batchItems',
      text: BATCH_ITEMS_SQL.postgres,
      values,
    });
    return batchPage(rows, batchId, from, count, now);
  }

  withJobLock<T>(name: string, fn: () => Promise<T>): Promise<T | undefined> {
    return withSessionLock(this.pool, name, fn);
  }

  async close(): Promise<void> {
    await this.pool.end();
  }

  /** A key row change with its entries; a row that exists already (version or CKA_ID) is KeyExistsError. */
  private async keyChange(k: KeyRecord, queries: pg.QueryConfig[], audit: AuditOf): Promise<void> {
    if (Array.isArray(audit)) checkDrafts(audit);
    try {
      await withRetries(this.pool, (c) => inTransaction(c, queries, audit), { retryUnique: false });
    } catch (e) {
      if (isUniqueViolation(e)) throw new KeyExistsError(`key ${k.keyId} v${k.version} exists`);
      throw e;
    }
  }
}

/**
 * The statement removing the ceremony a key change completes, and the check that it removed
 * one: a ceremony finished or rolled back elsewhere fails (and rolls back) the key change.
 */
function endCeremony(sessionId: string | undefined): [pg.QueryConfig[], (r: pg.QueryResult[]) => void] {
  if (sessionId === undefined) return [[], () => undefined];
  return [
    [q('dropCeremony', [sessionId])],
    ([r]) => {
      if (r!.rowCount !== 1)
        throw new Error(`ceremony ${sessionId} is no longer stored: finished or rolled back elsewhere`);
    },
  ];
}

/** The outcome of each call of a run that commits as a whole (a failed run fails them all). */
const committed = (): Settled<void> => ({ value: undefined });
