import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import type { Approval } from '../../core/admin/approvals.js';
import type { AuditEntry } from '../../core/audit/chain.js';
import type { AuditDraft } from '../../core/audit/draft.js';
import type { NodeId } from '../../core/audit/merkle.js';
import type {
  CompleteResult,
  Completion,
  ItemView,
  ReplayStore,
  ReservePlan,
  ReserveRequest,
  ReserveView,
} from '../../core/replay/records.js';
import { velocityBucket } from '../../core/replay/velocity.js';
import type { AuditStore, StoredCheckpoint } from './audit.js';
import { type AuditHead, chainDrafts } from './audit-chain.js';
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
  type NonceRow,
  nonceRecord,
  type PolicyRow,
  policyRecord,
  type RequestRow,
  requestRecord,
} from './codecs.js';
import { migrateSqlite } from './migrations/sqlite.js';
import { protectDatabaseFiles, protectWalFiles } from './sqlite/files.js';
import { SqliteProposals } from './sqlite/proposals.js';
import { prepareStatements, type Statements } from './sqlite/statements.js';
import { addTokenVelocity, BucketSums, tokenUsage } from './sqlite/token-velocity.js';
import { WalSync } from './sqlite/wal-sync.js';
import { SqliteAuditTree } from './sqlite-audit-tree.js';
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

const isConstraint = (e: unknown) => (e as { code?: string }).code?.startsWith('SQLITE_CONSTRAINT') === true;

/**
 * The embedded store. WAL, with every write on stable storage before its caller sees the
 * outcome, which is what "durable before the signature leaves" requires: commits run with
 * synchronous=NORMAL and the WAL is synced off the event loop (`WalSync`) before they settle.
 * SQLite has one writer at a time, so a reservation's read-decide-write cannot interleave with
 * another's, nor an audit append with another (the write lock makes each transaction the
 * chain's only appender).
 *
 * Every write goes through the group commit: the writes submitted in one event-loop turn run in
 * one IMMEDIATE transaction, each in its own savepoint, and settle only after the commit and its
 * WAL sync. The next group's transaction may commit while the previous group's sync runs. A
 * failing write (its audit entry included) rolls back only its savepoint.
 *
 * One exception settles at commit: a reservation that only claims (it writes records and no
 * audit entry, i.e. the request goes on to the HSM). Nothing leaves on it: its signature leaves
 * only after `complete` (or its failure after `abandon`), whose sync covers the claim too (the WAL
 * is replayed in commit order). An OS crash before that sync loses the claim together with a
 * signature that never left the process. This takes one sync off every request's latency, and
 * a group of such writes alone starts no sync at all (one fdatasync per request, not two).
 *
 * Reads return only durable state: what they read is handed over after the sync covering the
 * commits it saw (a tree head, a batch result, a key must not leave before it is on disk).
 */
export class SqliteStore implements Store, ReplayStore, AuditStore, AuditTreeStore, BatchResultStore {
  private readonly db: Database.Database;
  private readonly group: Batcher<() => unknown, unknown>;
  private readonly wal: WalSync;
  /**
   * A group's transaction and a write's savepoint, built once: `db.transaction()` builds four
   * wrapper functions per call, which the group commit paid once per write.
   */
  private readonly groupTx: Database.Transaction<(ops: Array<() => unknown>, out: Array<Settled<unknown>>) => void>;
  private readonly savepoint: Database.Transaction<(op: () => unknown) => unknown>;
  private readonly q: Statements;
  private readonly tree: SqliteAuditTree;
  private readonly proposals: SqliteProposals;

  constructor(path: string) {
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    // Owner-only before the first byte is written; refuses a world-writable directory.
    protectDatabaseFiles(path);
    this.db = new Database(path);
    this.db.pragma('journal_mode = WAL');
    protectWalFiles(path);
    // Durability comes from WalSync before anything settles (see above), not from SQLite's fsync.
    this.db.pragma('synchronous = NORMAL');
    this.db.pragma('busy_timeout = 5000');
    migrateSqlite(this.db);
    this.wal = new WalSync(`${path}-wal`);
    // Called inside the group's transaction, a transaction function runs as a savepoint.
    this.savepoint = this.db.transaction((op: () => unknown) => op());
    this.groupTx = this.db.transaction((ops: Array<() => unknown>, out: Array<Settled<unknown>>) => {
      for (const op of ops) {
        try {
          out.push({ value: this.savepoint(op) });
        } catch (error) {
          out.push({ error });
        }
      }
    });
    this.q = prepareStatements(this.db);
    this.tree = new SqliteAuditTree(this.db);
    this.proposals = new SqliteProposals(this.db);
    this.group = new Batcher((ops) => this.commitGroup(ops));
  }

  insertKey(k: KeyRecord, audit: AuditDraft[], ceremony?: string): Promise<void> {
    return this.write(() => {
      this.insertKeyRow(k);
      this.endCeremony(ceremony);
      this.append(audit);
    });
  }

  rotateKey(
    next: KeyRecord,
    previousVersion: number,
    retireAt: Date,
    audit: AuditDraft[],
    ceremony?: string,
  ): Promise<void> {
    return this.write(() => {
      const moved = this.q.retireActive.run(next.createdAt.getTime(), retireAt.getTime(), next.keyId, previousVersion);
      if (moved.changes !== 1) throw new KeyExistsError(`key ${next.keyId} v${previousVersion} is no longer active`);
      this.insertKeyRow(next);
      this.endCeremony(ceremony);
      this.append(audit);
    });
  }

  updateThreshold(
    keyId: string,
    version: number,
    info: ThresholdInfo,
    audit: AuditDraft[],
    ceremony?: string,
  ): Promise<void> {
    return this.write(() => {
      if (this.q.updateThreshold.run(JSON.stringify(info), keyId, version).changes !== 1) {
        throw new Error(`key ${keyId} v${version} is not stored`);
      }
      this.endCeremony(ceremony);
      this.append(audit);
    });
  }

  putCeremony(c: CeremonyRecord, audit: AuditDraft[]): Promise<void> {
    return this.write(() => {
      try {
        this.q.putCeremony.run(...ceremonyValues(c));
      } catch (e) {
        if (isConstraint(e)) throw new KeyExistsError(`a ceremony of key ${c.keyId} v${c.version} is in progress`);
        throw e;
      }
      this.append(audit);
    });
  }

  listCeremonies(): Promise<CeremonyRecord[]> {
    return this.durable((this.q.listCeremonies.all() as CeremonyRow[]).map(ceremonyRecord));
  }

  dropCeremony(sessionId: string, audit: AuditDraft[]): Promise<boolean> {
    return this.write(() => {
      if (this.q.dropCeremony.run(sessionId).changes !== 1) return false;
      this.append(audit);
      return true;
    });
  }

  /** Removes the ceremony a key change completes; throws (rolling the change back) if it is gone. */
  private endCeremony(sessionId: string | undefined): void {
    if (sessionId !== undefined && this.q.dropCeremony.run(sessionId).changes !== 1) {
      throw new Error(`ceremony ${sessionId} is no longer stored: finished or rolled back elsewhere`);
    }
  }

  setKeyState(
    keyId: string,
    version: number,
    from: KeyState[],
    to: KeyState,
    at: Date,
    audit: AuditDraft[],
  ): Promise<boolean> {
    return this.write(() => {
      const r = this.db
        .prepare(
          `UPDATE keys SET state = ?, state_changed_at = ?, retire_at = NULL
           WHERE key_id = ? AND version = ? AND state IN (${from.map(() => '?').join(', ')})`,
        )
        .run(to, at.getTime(), keyId, version, ...from);
      if (r.changes !== 1) return false;
      this.append(audit);
      return true;
    });
  }

  listKeys(): Promise<KeyRecord[]> {
    return this.durable((this.q.listKeys.all() as KeyRow[]).map(keyRecord));
  }

  putPolicy(
    name: string,
    document: string,
    updatedBy: string,
    at: Date,
    audit: (version: number) => AuditDraft[],
  ): Promise<PolicyRecord> {
    return this.write(() => {
      const { v } = this.q.nextPolicyVersion.get(name) as { v: number };
      this.q.insertPolicy.run(name, v, document, at.getTime(), updatedBy);
      this.append(audit(v));
      return { name, version: v, document, updatedAt: at, updatedBy };
    });
  }

  listPolicies(): Promise<PolicyRecord[]> {
    return this.durable((this.q.listPolicies.all() as PolicyRow[]).map(policyRecord));
  }

  policyHistory(name: string): Promise<PolicyRecord[]> {
    return this.durable((this.q.policyHistory.all(name) as PolicyRow[]).map(policyRecord));
  }

  insertProposal(p: Parameters<Store['insertProposal']>[0], audit: AuditDraft[]): Promise<void> {
    return this.write(() => {
      this.proposals.insert(p);
      this.append(audit);
    });
  }

  addApproval(proposalId: string, approval: Approval, audit: AuditDraft[]): Promise<boolean> {
    return this.write(() => {
      if (!this.proposals.approve(proposalId, approval)) return false;
      this.append(audit);
      return true;
    });
  }

  closeProposal(
    id: string,
    close: Parameters<Store['closeProposal']>[1],
    effects: ProposalEffects,
    audit: (policyVersion: number | null) => AuditDraft[],
  ): Promise<{ policy: PolicyRecord | null } | null> {
    return this.write(() => {
      const r = this.proposals.close(id, close, effects);
      if (r) this.append(audit(r.policy?.version ?? null));
      return r;
    });
  }

  listProposals(): Promise<ProposalRecord[]> {
    return this.durable(this.proposals.list());
  }

  putAccess(
    document: string,
    updatedBy: string,
    at: Date,
    audit: (version: number) => AuditDraft[],
  ): Promise<AccessRecord> {
    return this.write(() => {
      const r = this.proposals.putAccess(document, updatedBy, at);
      this.append(audit(r.version));
      return r;
    });
  }

  async accessHistory(): Promise<AccessRecord[]> {
    return this.proposals.accessHistory();
  }

  freeze(f: FreezeRecord, audit: AuditDraft[]): Promise<boolean> {
    return this.write(() => {
      if (!this.proposals.freeze(f)) return false;
      this.append(audit);
      return true;
    });
  }

  listFreezes(): Promise<FreezeRecord[]> {
    return this.durable(this.proposals.freezes());
  }

  reserve<T>(req: ReserveRequest, decide: (view: ReserveView) => ReservePlan<T>): Promise<T> {
    return this.write(() => {
      const now = req.now.getTime();
      const plan = decide(this.view(req, now));
      const lease = now + req.leaseMs;
      const usage = new BucketSums();
      for (const w of plan.writes) {
        const it = req.items[w.index]!;
        if (w.action === 'resume') {
          this.q.resumeRequest.run(lease, req.attempt ?? null, it.client, it.requestId);
          this.q.renewNonce.run(lease, it.client, it.requestId);
          continue;
        }
        const attempt = req.attempt ?? null;
        this.q.insertRequest.run(it.client, it.requestId, it.keyId, Buffer.from(it.payloadHash), lease, now, attempt);
        if (it.nonce) {
          const n = it.nonce;
          const claim = [
            Buffer.from(it.payloadHash),
            Buffer.from(n.intentHash),
            n.maxFeePerGas.toString(),
            n.maxPriorityFeePerGas.toString(),
          ];
          if (w.action === 'replaceNonce') {
            this.q.archiveNonce.run(now, n.account, n.chainId, n.nonce);
            const holder = [n.account, n.chainId, n.nonce];
            const replaced = this.q.replaceNonce.run(...claim, it.client, it.requestId, lease, ...holder);
            if (replaced.changes !== 1) throw new Error('replaceNonce: the nonce has no holder to replace');
          } else {
            this.q.insertNonce.run(n.account, n.chainId, n.nonce, ...claim, it.client, it.requestId, lease);
          }
        }
        usage.add('key', it.keyId, it.value, it.token);
        usage.add('client', it.client, it.value, it.token);
      }
      // A batch's items share their buckets: each bucket is written once, with their sums.
      for (const u of usage.buckets()) {
        if (u.token === undefined) this.addVelocity(u.scope, u.subject, now, u.amount, u.count);
        else addTokenVelocity(this.q, u.scope, u.subject, u.token, now, u.amount, u.count);
      }
      if (plan.audit) this.append(plan.audit);
      if (plan.batch && req.batch) {
        this.q.insertBatch.run(req.batch.client, req.batch.batchId, Buffer.from(plan.batch.itemsHash), now);
      }
      // Only claims: its caller asks the HSM next, and complete/abandon make it durable (above).
      const claimOnly = plan.writes.length > 0 && !plan.audit?.length && !(plan.batch && req.batch);
      return claimOnly ? new AtCommit(plan.outcome) : plan.outcome;
    });
  }

  complete(done: Completion[], audit: AuditDraft[]): Promise<CompleteResult> {
    return this.write(() => {
      const dropped: CompleteResult['dropped'] = [];
      for (const d of done) {
        const result = Buffer.from(d.result);
        const attempt = d.attempt ?? null;
        // A record done already, or taken over by a later attempt, keeps what it has: a replay
        // must return the signature its client was given.
        if (this.q.completeRequest.run(result, d.client, d.requestId, attempt, attempt).changes !== 1) {
          dropped.push({ client: d.client, requestId: d.requestId });
          continue;
        }
        this.q.completeNonce.run(result, d.client, d.requestId);
      }
      this.append(audit);
      return { dropped };
    });
  }

  abandon(items: Array<{ client: string; requestId: string; attempt?: string }>, audit: AuditDraft[]): Promise<void> {
    return this.write(() => {
      for (const it of items) {
        const attempt = it.attempt ?? null;
        if (this.q.abandonRequest.run(it.client, it.requestId, attempt, attempt).changes !== 1) continue;
        this.q.renewNonce.run(0, it.client, it.requestId);
      }
      this.append(audit);
    });
  }

  appendAudit(drafts: AuditDraft[]): Promise<void> {
    return this.write(() => this.append(drafts));
  }

  auditHead(): Promise<AuditHead | undefined> {
    return this.durable(this.q.auditHead.get() as AuditHead | undefined);
  }

  async *readAudit(fromSeq: number, toSeq: number): AsyncIterable<AuditEntry> {
    for (let next = fromSeq; next <= toSeq; ) {
      const rows = this.q.readAudit.all(next, toSeq, 1000) as Array<AuditRow & { seq: number }>;
      if (rows.length === 0) return;
      await this.durable(undefined);
      for (const r of rows) yield auditEntry(r);
      next = rows[rows.length - 1]!.seq + 1;
    }
  }

  auditRange(from: Date | null, to: Date | null): Promise<{ first: number; last: number } | undefined> {
    const r = this.q.auditRange.get(from?.getTime() ?? 0, to?.getTime() ?? Number.MAX_SAFE_INTEGER) as {
      first: number | null;
      last: number | null;
    };
    return this.durable(r.first === null || r.last === null ? undefined : { first: r.first, last: r.last });
  }

  putCheckpoint(c: StoredCheckpoint): Promise<void> {
    return this.write(() => {
      this.q.putCheckpoint.run(...checkpointValues(c));
    });
  }

  checkpoints(fromSeq: number, toSeq: number): Promise<StoredCheckpoint[]> {
    return this.durable((this.q.checkpoints.all(fromSeq, toSeq) as CheckpointRow[]).map(checkpointRecord));
  }

  prune(before: { requests: Date; velocity: Date }): Promise<number> {
    return this.write(() => {
      const t = before.requests.getTime();
      this.q.pruneVelocity.run(velocityBucket(before.velocity.getTime()) - 1);
      this.q.pruneTokenVelocity.run(velocityBucket(before.velocity.getTime()) - 1);
      this.q.pruneBatches.run(t);
      return this.q.pruneRequests.run(t).changes;
    });
  }

  /** A read outside the write group: WAL readers see the last commit, and complete() commits before returning. */
  batchResults(
    client: string,
    batchId: string,
    from: number,
    count: number,
    now: Date,
  ): Promise<BatchPage | undefined> {
    this.batchItems ??= this.db.prepare(BATCH_ITEMS_SQL.sqlite);
    const ids = JSON.stringify(batchItemIds(batchId, from, count));
    return this.durable(
      batchPage(this.batchItems.all(ids, client, batchId) as BatchItemRow[], batchId, from, count, now),
    );
  }

  private batchItems: Database.Statement | undefined;

  /** One process owns the database file, so no other replica can be running the job. */
  withJobLock<T>(_name: string, fn: () => Promise<T>): Promise<T | undefined> {
    return fn();
  }

  async close(): Promise<void> {
    await this.wal.close();
    this.db.close();
  }

  private write<T>(run: () => T | AtCommit<T>): Promise<T> {
    return this.group.submit(run) as Promise<T>;
  }

  /** `value`, once the commits made so far (those a read just saw included) are durable. */
  private durable<T>(value: T): Promise<T> {
    return this.wal.durable().then(() => value);
  }

  /**
   * One turn's writes: one IMMEDIATE transaction, a savepoint each (better-sqlite3 nests them
   * so). Each outcome, a failure too, settles after the WAL sync that covers the commit (a
   * promise the batcher's caller adopts), except a write's `AtCommit` value.
   */
  private commitGroup(ops: Array<() => unknown>): Array<Settled<unknown>> {
    if (this.wal.error) throw this.wal.error;
    const results: Array<Settled<unknown>> = [];
    this.groupTx.immediate(ops, results);
    this.wal.committed();
    // A group of claims only starts no sync: the completion's sync covers it (the WAL is synced
    // in commit order). Starting one anyway cost a second fdatasync per request (about 0.5 ms of
    // CPU here) and, at c=1, made the completion's sync queue behind it.
    const atCommit = (r: Settled<unknown>) => ('value' in r && r.value instanceof AtCommit ? r.value : undefined);
    if (results.every(atCommit)) return results.map((r) => ({ value: atCommit(r)!.value }));
    const synced = this.wal.durable();
    return results.map((r) => {
      if ('error' in r) return { value: synced.then(() => Promise.reject(r.error)) };
      const claim = atCommit(r);
      if (claim) return { value: claim.value };
      return { value: synced.then(() => r.value) };
    });
  }

  /**
   * The audit append path: numbers and chains the drafts after the head (chainDrafts) and
   * inserts them. Runs inside the caller's write, whose transaction holds the write lock.
   */
  private append(drafts: AuditDraft[]): void {
    if (drafts.length === 0) return;
    const { rows, entries, leaves } = chainDrafts(drafts, this.q.auditHead.get() as AuditHead | undefined);
    for (const row of rows) this.q.insertAudit.run(...row);
    // The entries' Merkle nodes, in the same transaction: no entry without its leaf.
    this.tree.append(entries, leaves);
  }

  readNodes(ids: readonly NodeId[]): Promise<readonly Uint8Array[]> {
    return this.tree.readNodes(ids).then((nodes) => this.durable(nodes));
  }

  async treeHead(size: number): Promise<Uint8Array> {
    return this.durable(await this.tree.treeHead(size));
  }

  async inclusionProof(seq: number, size: number): Promise<Uint8Array[]> {
    this.tree.checkSize(size);
    return this.durable(await this.tree.reads.inclusionProof(seq, size));
  }

  async consistencyProof(fromSize: number, toSize: number): Promise<Uint8Array[]> {
    this.tree.checkSize(toSize);
    return this.durable(await this.tree.reads.consistencyProof(fromSize, toSize));
  }

  putCheckpointNote(c: StoredNote): Promise<void> {
    return this.write(() => this.tree.putNote(c));
  }

  latestCheckpointNote(): Promise<StoredNote | undefined> {
    return this.durable(this.tree.latestNote());
  }

  checkpointNote(size: number, atLeast = false): Promise<StoredNote | undefined> {
    return this.durable(this.tree.noteAt(size, atLeast));
  }

  replaceCheckpointNote(size: number, note: string): Promise<void> {
    return this.write(() => this.tree.replaceNote(size, note));
  }

  private insertKeyRow(k: KeyRecord): void {
    try {
      this.q.insertKey.run(...keyValues(k));
    } catch (e) {
      if (isConstraint(e)) throw new KeyExistsError(`key ${k.keyId} v${k.version} exists`);
      throw e;
    }
  }

  private view(req: ReserveRequest, now: number): ReserveView {
    // The next nonce of an account as committed: the same for every item of a batch.
    const next = new Map<string, bigint | null>();
    const items: ItemView[] = req.items.map((it) => {
      const view: ItemView = {};
      const r = this.q.request.get(it.client, it.requestId) as RequestRow | undefined;
      if (r) view.request = requestRecord(r, now);
      if (it.nonce) {
        const n = this.q.nonce.get(it.nonce.account, it.nonce.chainId, it.nonce.nonce) as NonceRow | undefined;
        if (n) view.nonce = nonceRecord(n, now);
        const account = `${it.nonce.account}\0${it.nonce.chainId}`;
        let max = next.get(account);
        if (max === undefined) {
          max = (this.q.maxNonce.get(it.nonce.account, it.nonce.chainId) as { n: bigint | null }).n;
          next.set(account, max);
        }
        if (max !== null) view.nextNonce = max + 1n;
      }
      return view;
    });
    const velocity = req.velocity.map((v) => {
      const since = velocityBucket(now - v.windowSeconds * 1000);
      const rows = this.q.velocity.all(v.scope, v.subject, since) as Array<{ count: number; value: string }>;
      const sum = (a: { count: number; value: bigint }, r: { count: number; value: string }) => ({
        count: a.count + r.count,
        value: a.value + BigInt(r.value),
      });
      const usage: ReserveView['velocity'][number] = rows.reduce(sum, { count: 0, value: 0n });
      if (v.tokens?.length) usage.tokens = new Map(v.tokens.map((t) => [t, tokenUsage(this.q, v, t, since)]));
      return usage;
    });
    const view: ReserveView = { items, velocity };
    if (req.check) {
      const k = this.q.keyState.get(req.check.keyId, req.check.version) as { state: string } | undefined;
      view.keyState = k?.state ?? null;
      if (req.check.policies) view.policyEpoch = (this.q.policyEpoch.get() as { n: number }).n;
    }
    if (req.batch) {
      const b = this.q.batch.get(req.batch.client, req.batch.batchId) as { items_hash: Buffer } | undefined;
      if (b) view.batch = { itemsHash: b.items_hash };
    }
    return view;
  }

  private addVelocity(scope: 'key' | 'client', subject: string, now: number, value: bigint, count = 1): void {
    const bucket = velocityBucket(now);
    this.q.countBucket.run(scope, subject, bucket, count);
    // Values exceed SQLite's 64-bit integers (wei), so they are summed as decimal text here.
    if (value === 0n) return;
    const cur = this.q.bucket.get(scope, subject, bucket) as { value: string };
    this.q.addBucketValue.run((BigInt(cur.value) + value).toString(), scope, subject, bucket);
  }
}

/** A write's value its caller may have at commit, before the WAL sync (a claim-only reservation). */
class AtCommit<T> {
  constructor(readonly value: T) {}
}
