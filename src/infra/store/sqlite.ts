import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import type { Algorithm } from '../config/schema.js';
import { GroupCommit } from './group-commit.js';
import type {
  Completion,
  ItemView,
  NonceRecord,
  ReplayStore,
  RequestRecord,
  ReservePlan,
  ReserveRequest,
  ReserveView,
} from '../../core/replay/records.js';
import { KeyExistsError, type KeyRecord, type KeyState, type PolicyRecord, type Store, type ThresholdInfo } from './store.js';
import { velocityBucket } from '../../core/replay/velocity.js';
import { GENESIS, entryHash, type AuditEntry } from '../../core/audit/chain.js';
import type { AuditDraft } from '../../core/audit/draft.js';
import type { AuditStore, StoredCheckpoint } from './audit.js';
import { draftToEntry } from '../../core/audit/draft.js';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS keys (
  key_id     TEXT    NOT NULL,
  version    INTEGER NOT NULL,
  algorithm  TEXT    NOT NULL,
  cka_id     BLOB    NOT NULL UNIQUE,
  public_key BLOB    NOT NULL,
  state      TEXT    NOT NULL,
  created_at INTEGER NOT NULL,
  state_changed_at INTEGER,
  retire_at  INTEGER,
  threshold  TEXT,
  PRIMARY KEY (key_id, version)
);
CREATE TABLE IF NOT EXISTS requests (
  client       TEXT    NOT NULL,
  request_id   TEXT    NOT NULL,
  key_id       TEXT    NOT NULL,
  payload_hash BLOB    NOT NULL,
  state        TEXT    NOT NULL,
  result       BLOB,
  lease_until  INTEGER NOT NULL,
  created_at   INTEGER NOT NULL,
  PRIMARY KEY (client, request_id)
);
CREATE INDEX IF NOT EXISTS requests_created ON requests (created_at);
-- key_id holds the nonce's account: "<key id>@v<version>" (each key version is an address).
CREATE TABLE IF NOT EXISTS nonces (
  key_id           TEXT    NOT NULL,
  chain_id         INTEGER NOT NULL,
  nonce            INTEGER NOT NULL,
  payload_hash     BLOB    NOT NULL,
  intent_hash      BLOB    NOT NULL,
  max_fee          TEXT    NOT NULL,
  max_priority_fee TEXT    NOT NULL,
  client           TEXT    NOT NULL,
  request_id       TEXT    NOT NULL,
  state            TEXT    NOT NULL,
  result           BLOB,
  lease_until      INTEGER NOT NULL,
  PRIMARY KEY (key_id, chain_id, nonce)
);
CREATE INDEX IF NOT EXISTS nonces_holder ON nonces (client, request_id);
CREATE TABLE IF NOT EXISTS nonce_replacements (
  key_id       TEXT    NOT NULL,
  chain_id     INTEGER NOT NULL,
  nonce        INTEGER NOT NULL,
  payload_hash BLOB    NOT NULL,
  result       BLOB,
  replaced_at  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS velocity (
  scope   TEXT    NOT NULL,
  subject TEXT    NOT NULL,
  bucket  INTEGER NOT NULL,
  count   INTEGER NOT NULL,
  value   TEXT    NOT NULL,
  PRIMARY KEY (scope, subject, bucket)
);
CREATE TABLE IF NOT EXISTS policies (
  name       TEXT    NOT NULL,
  version    INTEGER NOT NULL,
  document   TEXT    NOT NULL,
  updated_at INTEGER NOT NULL,
  updated_by TEXT    NOT NULL,
  PRIMARY KEY (name, version)
);
CREATE TABLE IF NOT EXISTS audit (
  seq            INTEGER PRIMARY KEY,
  at             TEXT    NOT NULL,
  at_ms          INTEGER NOT NULL,
  kind           TEXT    NOT NULL,
  client         TEXT,
  key_id         TEXT,
  key_version    INTEGER,
  request_id     TEXT,
  payload_hash   TEXT,
  intent         TEXT,
  decision       TEXT    NOT NULL,
  reason         TEXT,
  signature_hash TEXT,
  prev_hash      TEXT    NOT NULL,
  hash           TEXT    NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_at ON audit (at_ms);
CREATE TABLE IF NOT EXISTS audit_checkpoints (
  seq         INTEGER PRIMARY KEY,
  head_hash   TEXT    NOT NULL,
  at          TEXT    NOT NULL,
  key_id      TEXT    NOT NULL,
  key_version INTEGER NOT NULL,
  signature   TEXT    NOT NULL
);
CREATE TABLE IF NOT EXISTS batches (
  client     TEXT    NOT NULL,
  batch_id   TEXT    NOT NULL,
  items_hash BLOB    NOT NULL,
  created_at INTEGER NOT NULL,
  PRIMARY KEY (client, batch_id)
);`;

interface KeyRow {
  key_id: string;
  version: number;
  algorithm: string;
  cka_id: Buffer;
  public_key: Buffer;
  state: string;
  created_at: number;
  state_changed_at: number | null;
  retire_at: number | null;
  threshold: string | null;
}

/** Columns added after the first release, for databases created before them. */
function migrate(db: Database.Database): void {
  const cols = new Set((db.prepare('PRAGMA table_info(keys)').all() as Array<{ name: string }>).map((c) => c.name));
  if (!cols.has('state_changed_at')) db.exec('ALTER TABLE keys ADD COLUMN state_changed_at INTEGER');
  if (!cols.has('retire_at')) db.exec('ALTER TABLE keys ADD COLUMN retire_at INTEGER');
  if (!cols.has('threshold')) db.exec('ALTER TABLE keys ADD COLUMN threshold TEXT');
}

/**
 * The embedded store. WAL with synchronous=FULL: a transaction is on stable storage when
 * commit returns, which is what "durable before the signature leaves" requires. SQLite has one
 * writer at a time, so a reservation's read-decide-write cannot interleave with another's.
 */
export class SqliteStore implements Store, ReplayStore, AuditStore {
  private readonly db: Database.Database;
  private readonly group: GroupCommit;
  private readonly q;

  constructor(path: string) {
    mkdirSync(dirname(path), { recursive: true });
    this.db = new Database(path);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = FULL');
    this.db.pragma('busy_timeout = 5000');
    this.db.exec(SCHEMA);
    migrate(this.db);
    this.group = new GroupCommit(this.db);
    const db = this.db;
    this.q = {
      request: db.prepare('SELECT payload_hash, state, result, lease_until FROM requests WHERE client = ? AND request_id = ?'),
      nonce: db
        .prepare(
          'SELECT payload_hash, intent_hash, max_fee, max_priority_fee, state, result, client, request_id, lease_until FROM nonces WHERE key_id = ? AND chain_id = ? AND nonce = ?',
        )
        .safeIntegers(true),
      maxNonce: db.prepare('SELECT max(nonce) AS n FROM nonces WHERE key_id = ? AND chain_id = ?').safeIntegers(true),
      velocity: db.prepare('SELECT count, value FROM velocity WHERE scope = ? AND subject = ? AND bucket >= ?'),
      batch: db.prepare('SELECT items_hash FROM batches WHERE client = ? AND batch_id = ?'),
      insertRequest: db.prepare(
        "INSERT INTO requests (client, request_id, key_id, payload_hash, state, lease_until, created_at) VALUES (?, ?, ?, ?, 'pending', ?, ?)",
      ),
      insertNonce: db.prepare(
        "INSERT INTO nonces (key_id, chain_id, nonce, payload_hash, intent_hash, max_fee, max_priority_fee, client, request_id, state, lease_until) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?)",
      ),
      archiveNonce: db.prepare(
        'INSERT INTO nonce_replacements (key_id, chain_id, nonce, payload_hash, result, replaced_at) SELECT key_id, chain_id, nonce, payload_hash, result, ? FROM nonces WHERE key_id = ? AND chain_id = ? AND nonce = ?',
      ),
      replaceNonce: db.prepare(
        "UPDATE nonces SET payload_hash = ?, intent_hash = ?, max_fee = ?, max_priority_fee = ?, client = ?, request_id = ?, state = 'pending', result = NULL, lease_until = ? WHERE key_id = ? AND chain_id = ? AND nonce = ?",
      ),
      bucket: db.prepare('SELECT value FROM velocity WHERE scope = ? AND subject = ? AND bucket = ?'),
      countBucket: db.prepare(
        "INSERT INTO velocity (scope, subject, bucket, count, value) VALUES (?, ?, ?, 1, '0') ON CONFLICT (scope, subject, bucket) DO UPDATE SET count = count + 1",
      ),
      addBucketValue: db.prepare('UPDATE velocity SET value = ? WHERE scope = ? AND subject = ? AND bucket = ?'),
      renewRequest: db.prepare("UPDATE requests SET lease_until = ? WHERE client = ? AND request_id = ? AND state = 'pending'"),
      renewNonce: db.prepare("UPDATE nonces SET lease_until = ? WHERE client = ? AND request_id = ? AND state = 'pending'"),
      insertBatch: db.prepare('INSERT INTO batches (client, batch_id, items_hash, created_at) VALUES (?, ?, ?, ?)'),
      completeRequest: db.prepare("UPDATE requests SET state = 'done', result = ? WHERE client = ? AND request_id = ?"),
      completeNonce: db.prepare("UPDATE nonces SET state = 'done', result = ? WHERE client = ? AND request_id = ?"),
      auditHead: db.prepare('SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1'),
      insertAudit: db.prepare(
        'INSERT INTO audit (seq, at, at_ms, kind, client, key_id, key_version, request_id, payload_hash, intent, decision, reason, signature_hash, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
      ),
      readAudit: db.prepare('SELECT * FROM audit WHERE seq >= ? AND seq <= ? ORDER BY seq LIMIT ?'),
    };
  }

  async insertKey(k: KeyRecord): Promise<void> {
    try {
      this.insertKeyRow(k);
    } catch (e) {
      if ((e as { code?: string }).code?.startsWith('SQLITE_CONSTRAINT')) throw new KeyExistsError(`key ${k.keyId} v${k.version} exists`);
      throw e;
    }
  }

  private insertKeyRow(k: KeyRecord): void {
    this.db
      .prepare('INSERT INTO keys (key_id, version, algorithm, cka_id, public_key, state, created_at, state_changed_at, retire_at, threshold) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)')
      .run(k.keyId, k.version, k.algorithm, Buffer.from(k.ckaId), Buffer.from(k.publicKey), k.state, k.createdAt.getTime(), k.stateChangedAt.getTime(), k.retireAt?.getTime() ?? null, k.threshold ? JSON.stringify(k.threshold) : null);
  }

  rotateKey(next: KeyRecord, previousVersion: number, retireAt: Date): Promise<void> {
    return this.group.submit(() => {
      const moved = this.db
        .prepare("UPDATE keys SET state = 'verify-only', state_changed_at = ?, retire_at = ? WHERE key_id = ? AND version = ? AND state = 'active'")
        .run(next.createdAt.getTime(), retireAt.getTime(), next.keyId, previousVersion);
      if (moved.changes !== 1) throw new KeyExistsError(`key ${next.keyId} v${previousVersion} is no longer active`);
      try {
        this.insertKeyRow(next);
      } catch (e) {
        if ((e as { code?: string }).code?.startsWith('SQLITE_CONSTRAINT')) throw new KeyExistsError(`key ${next.keyId} v${next.version} exists`);
        throw e;
      }
    });
  }

  updateThreshold(keyId: string, version: number, info: ThresholdInfo): Promise<void> {
    return this.group.submit(() => {
      this.db.prepare('UPDATE keys SET threshold = ? WHERE key_id = ? AND version = ?').run(JSON.stringify(info), keyId, version);
    });
  }

  setKeyState(keyId: string, version: number, from: KeyState[], to: KeyState, at: Date): Promise<boolean> {
    return this.group.submit(() => {
      const r = this.db
        .prepare(`UPDATE keys SET state = ?, state_changed_at = ?, retire_at = NULL WHERE key_id = ? AND version = ? AND state IN (${from.map(() => '?').join(', ')})`)
        .run(to, at.getTime(), keyId, version, ...from);
      return r.changes === 1;
    });
  }

  async listKeys(): Promise<KeyRecord[]> {
    const rows = this.db.prepare('SELECT * FROM keys ORDER BY key_id, version').all() as KeyRow[];
    return rows.map((r) => ({
      keyId: r.key_id,
      version: r.version,
      algorithm: r.algorithm as Algorithm,
      ckaId: r.cka_id,
      publicKey: r.public_key,
      state: r.state as KeyState,
      createdAt: new Date(r.created_at),
      stateChangedAt: new Date(r.state_changed_at ?? r.created_at),
      retireAt: r.retire_at === null ? null : new Date(r.retire_at),
      threshold: r.threshold === null ? null : (JSON.parse(r.threshold) as ThresholdInfo),
    }));
  }

  putPolicy(name: string, document: string, updatedBy: string, at: Date): Promise<PolicyRecord> {
    return this.group.submit(() => {
      const { v } = this.db.prepare('SELECT coalesce(max(version), 0) + 1 AS v FROM policies WHERE name = ?').get(name) as { v: number };
      this.db.prepare('INSERT INTO policies (name, version, document, updated_at, updated_by) VALUES (?, ?, ?, ?, ?)').run(name, v, document, at.getTime(), updatedBy);
      return { name, version: v, document, updatedAt: at, updatedBy };
    });
  }

  async listPolicies(): Promise<PolicyRecord[]> {
    const rows = this.db
      .prepare('SELECT p.* FROM policies p JOIN (SELECT name, max(version) AS v FROM policies GROUP BY name) m ON p.name = m.name AND p.version = m.v ORDER BY p.name')
      .all() as PolicyRow[];
    return rows.map(policyRecord);
  }

  async policyHistory(name: string): Promise<PolicyRecord[]> {
    return (this.db.prepare('SELECT * FROM policies WHERE name = ? ORDER BY version').all(name) as PolicyRow[]).map(policyRecord);
  }

  reserve<T>(req: ReserveRequest, decide: (view: ReserveView) => ReservePlan<T>): Promise<T> {
    return this.group.submit(() => {
      const now = req.now.getTime();
      const plan = decide(this.view(req, now));
      const lease = now + req.leaseMs;
      for (const w of plan.writes) {
        const it = req.items[w.index]!;
        if (w.action === 'resume') {
          this.q.renewRequest.run(lease, it.client, it.requestId);
          this.q.renewNonce.run(lease, it.client, it.requestId);
          continue;
        }
        this.q.insertRequest.run(it.client, it.requestId, it.keyId, Buffer.from(it.payloadHash), lease, now);
        if (it.nonce) {
          const n = it.nonce;
          const claim = [Buffer.from(it.payloadHash), Buffer.from(n.intentHash), n.maxFeePerGas.toString(), n.maxPriorityFeePerGas.toString()];
          if (w.action === 'replaceNonce') {
            this.q.archiveNonce.run(now, n.account, n.chainId, n.nonce);
            const replaced = this.q.replaceNonce.run(...claim, it.client, it.requestId, lease, n.account, n.chainId, n.nonce);
            if (replaced.changes !== 1) throw new Error('replaceNonce: the nonce has no holder to replace');
          } else {
            this.q.insertNonce.run(n.account, n.chainId, n.nonce, ...claim, it.client, it.requestId, lease);
          }
        }
        this.addVelocity('key', it.keyId, now, it.value);
        this.addVelocity('client', it.client, now, it.value);
      }
      if (plan.audit) this.appendInTransaction(plan.audit);
      if (plan.batch && req.batch) {
        this.q.insertBatch.run(req.batch.client, req.batch.batchId, Buffer.from(plan.batch.itemsHash), now);
      }
      return plan.outcome;
    });
  }

  complete(done: Completion[], audit: AuditDraft[]): Promise<void> {
    return this.group.submit(() => {
      for (const d of done) {
        const result = Buffer.from(d.result);
        this.q.completeRequest.run(result, d.client, d.requestId);
        this.q.completeNonce.run(result, d.client, d.requestId);
      }
      this.appendInTransaction(audit);
    });
  }

  appendAudit(drafts: AuditDraft[]): Promise<void> {
    return this.group.submit(() => this.appendInTransaction(drafts));
  }

  async auditHead(): Promise<{ seq: number; hash: string } | undefined> {
    return this.q.auditHead.get() as { seq: number; hash: string } | undefined;
  }

  async *readAudit(fromSeq: number, toSeq: number): AsyncIterable<AuditEntry> {
    for (let next = fromSeq; next <= toSeq; ) {
      const rows = this.q.readAudit.all(next, toSeq, 1000) as AuditRow[];
      if (rows.length === 0) return;
      for (const r of rows) yield auditEntry(r);
      next = rows[rows.length - 1]!.seq + 1;
    }
  }

  async auditRange(from: Date | null, to: Date | null): Promise<{ first: number; last: number } | undefined> {
    const r = this.db
      .prepare('SELECT min(seq) AS first, max(seq) AS last FROM audit WHERE at_ms >= ? AND at_ms < ?')
      .get(from?.getTime() ?? 0, to?.getTime() ?? Number.MAX_SAFE_INTEGER) as { first: number | null; last: number | null };
    return r.first === null || r.last === null ? undefined : { first: r.first, last: r.last };
  }

  putCheckpoint(c: StoredCheckpoint): Promise<void> {
    return this.group.submit(() => {
      this.db
        .prepare('INSERT INTO audit_checkpoints (seq, head_hash, at, key_id, key_version, signature) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (seq) DO NOTHING')
        .run(c.seq, c.headHash, c.at, c.auditKey.keyId, c.auditKey.version, c.signature);
    });
  }

  async checkpoints(fromSeq: number, toSeq: number): Promise<StoredCheckpoint[]> {
    const rows = this.db.prepare('SELECT * FROM audit_checkpoints WHERE seq >= ? AND seq <= ? ORDER BY seq').all(fromSeq, toSeq) as Array<{
      seq: number;
      head_hash: string;
      at: string;
      key_id: string;
      key_version: number;
      signature: string;
    }>;
    return rows.map((r) => ({ seq: r.seq, headHash: r.head_hash, at: r.at, auditKey: { keyId: r.key_id, version: r.key_version }, signature: r.signature }));
  }

  /** Numbers and chains entries after the current head; runs inside the caller's transaction. */
  private appendInTransaction(drafts: AuditDraft[]): void {
    if (drafts.length === 0) return;
    const head = this.q.auditHead.get() as { seq: number; hash: string } | undefined;
    let seq = head?.seq ?? 0;
    let prevHash = head?.hash ?? GENESIS;
    for (const d of drafts) {
      seq++;
      const entry = draftToEntry(d, seq, prevHash);
      const hash = entryHash(entry);
      this.q.insertAudit.run(
        seq,
        entry.at,
        d.at.getTime(),
        entry.kind,
        entry.client,
        entry.keyId,
        entry.keyVersion,
        entry.requestId,
        entry.payloadHash,
        entry.intent === null ? null : JSON.stringify(entry.intent),
        entry.decision,
        entry.reason,
        entry.signatureHash,
        prevHash,
        hash,
      );
      prevHash = hash;
    }
  }

  abandon(items: Array<{ client: string; requestId: string }>): Promise<void> {
    return this.group.submit(() => {
      for (const it of items) {
        this.q.renewRequest.run(0, it.client, it.requestId);
        this.q.renewNonce.run(0, it.client, it.requestId);
      }
    });
  }

  prune(before: { requests: Date; velocity: Date }): Promise<number> {
    return this.group.submit(() => {
      const t = before.requests.getTime();
      this.db.prepare('DELETE FROM velocity WHERE bucket < ?').run(velocityBucket(before.velocity.getTime()) - 1);
      this.db.prepare('DELETE FROM batches WHERE created_at < ?').run(t);
      return this.db.prepare('DELETE FROM requests WHERE created_at < ?').run(t).changes;
    });
  }

  /** One process owns the database file, so no other replica can be running the job. */
  withJobLock<T>(_name: string, fn: () => Promise<T>): Promise<T | undefined> {
    return fn();
  }

  async close(): Promise<void> {
    this.db.close();
  }

  private view(req: ReserveRequest, now: number): ReserveView {
    const items: ItemView[] = req.items.map((it) => {
      const view: ItemView = {};
      const r = this.q.request.get(it.client, it.requestId) as
        | { payload_hash: Buffer; state: 'pending' | 'done'; result: Buffer | null; lease_until: number }
        | undefined;
      if (r) view.request = requestRecord(r, now);
      if (it.nonce) {
        const n = this.q.nonce.get(it.nonce.account, it.nonce.chainId, it.nonce.nonce) as NonceRow | undefined;
        if (n) view.nonce = nonceRecord(n, now);
        const max = (this.q.maxNonce.get(it.nonce.account, it.nonce.chainId) as { n: bigint | null }).n;
        if (max !== null) view.nextNonce = max + 1n;
      }
      return view;
    });
    const velocity = req.velocity.map((v) => {
      const rows = this.q.velocity.all(v.scope, v.subject, velocityBucket(now - v.windowSeconds * 1000)) as Array<{ count: number; value: string }>;
      return rows.reduce((a, r) => ({ count: a.count + r.count, value: a.value + BigInt(r.value) }), { count: 0, value: 0n });
    });
    const view: ReserveView = { items, velocity };
    if (req.batch) {
      const b = this.q.batch.get(req.batch.client, req.batch.batchId) as { items_hash: Buffer } | undefined;
      if (b) view.batch = { itemsHash: b.items_hash };
    }
    return view;
  }

  private addVelocity(scope: 'key' | 'client', subject: string, now: number, value: bigint): void {
    const bucket = velocityBucket(now);
    this.q.countBucket.run(scope, subject, bucket);
    // Values exceed SQLite's 64-bit integers (wei), so they are summed as decimal text here.
    if (value === 0n) return;
    const cur = this.q.bucket.get(scope, subject, bucket) as { value: string };
    this.q.addBucketValue.run((BigInt(cur.value) + value).toString(), scope, subject, bucket);
  }
}

interface AuditRow {
  seq: number;
  at: string;
  kind: string;
  client: string | null;
  key_id: string | null;
  key_version: number | null;
  request_id: string | null;
  payload_hash: string | null;
  intent: string | null;
  decision: AuditEntry['decision'];
  reason: string | null;
  signature_hash: string | null;
  prev_hash: string;
  hash: string;
}

function auditEntry(r: AuditRow): AuditEntry {
  return {
    seq: r.seq,
    at: r.at,
    kind: r.kind,
    client: r.client,
    keyId: r.key_id,
    keyVersion: r.key_version,
    requestId: r.request_id,
    payloadHash: r.payload_hash,
    intent: r.intent === null ? null : (JSON.parse(r.intent) as Record<string, string>),
    decision: r.decision,
    reason: r.reason,
    signatureHash: r.signature_hash,
    prevHash: r.prev_hash,
    hash: r.hash,
  };
}

interface PolicyRow {
  name: string;
  version: number;
  document: string;
  updated_at: number;
  updated_by: string;
}

function policyRecord(r: PolicyRow): PolicyRecord {
  return { name: r.name, version: r.version, document: r.document, updatedAt: new Date(r.updated_at), updatedBy: r.updated_by };
}

interface NonceRow {
  payload_hash: Buffer;
  intent_hash: Buffer;
  max_fee: string;
  max_priority_fee: string;
  state: 'pending' | 'done';
  result: Buffer | null;
  client: string;
  request_id: string;
  lease_until: bigint;
}

function requestRecord(r: { payload_hash: Buffer; state: 'pending' | 'done'; result: Buffer | null; lease_until: number }, now: number): RequestRecord {
  return {
    payloadHash: r.payload_hash,
    state: r.state,
    ...(r.result ? { result: r.result } : {}),
    leaseExpired: r.state === 'pending' && r.lease_until <= now,
  };
}

function nonceRecord(n: NonceRow, now: number): NonceRecord {
  return {
    payloadHash: n.payload_hash,
    intentHash: n.intent_hash,
    maxFeePerGas: BigInt(n.max_fee),
    maxPriorityFeePerGas: BigInt(n.max_priority_fee),
    state: n.state,
    ...(n.result ? { result: n.result } : {}),
    client: n.client,
    requestId: n.request_id,
    leaseExpired: n.state === 'pending' && Number(n.lease_until) <= now,
  };
}

