import pg, { type PoolClient, type QueryConfig, type QueryResult } from 'pg';
import type { Algorithm } from '../config/schema.js';
import type {
  Completion,
  ItemView,
  NonceRecord,
  ReplayStore,
  RequestRecord,
  ReserveItem,
  ReservePlan,
  ReserveRequest,
  ReserveView,
} from '../../core/replay/records.js';
import { KeyExistsError, type KeyRecord, type KeyState, type PolicyRecord, type Store, type ThresholdInfo } from './store.js';
import { velocityBucket } from '../../core/replay/velocity.js';
import { GENESIS, canonicalJson, entryHash, type AuditEntry } from '../../core/audit/chain.js';
import type { AuditDraft } from '../../core/audit/draft.js';
import type { AuditStore, StoredCheckpoint } from './audit.js';
import { draftToEntry } from '../../core/audit/draft.js';

const { DatabaseError, Pool } = pg;

/**
 * Same tables and meaning as sqlite.ts. Identifiers are `COLLATE "C"` (byte order, like SQLite),
 * times are ms since the epoch, fees and velocity values NUMERIC(78,0) so that sums are exact.
 */
const SCHEMA = `
CREATE TABLE IF NOT EXISTS keys (
  key_id     TEXT COLLATE "C" NOT NULL,
  version    INTEGER NOT NULL,
  algorithm  TEXT    NOT NULL,
  cka_id     BYTEA   NOT NULL UNIQUE,
  public_key BYTEA   NOT NULL,
  state      TEXT    NOT NULL,
  created_at BIGINT  NOT NULL,
  state_changed_at BIGINT,
  retire_at  BIGINT,
  PRIMARY KEY (key_id, version)
);
-- Columns added after the first release, for databases created before them.
ALTER TABLE keys ADD COLUMN IF NOT EXISTS state_changed_at BIGINT;
ALTER TABLE keys ADD COLUMN IF NOT EXISTS retire_at BIGINT;
ALTER TABLE keys ADD COLUMN IF NOT EXISTS threshold TEXT;
CREATE TABLE IF NOT EXISTS requests (
  client       TEXT COLLATE "C" NOT NULL,
  request_id   TEXT COLLATE "C" NOT NULL,
  key_id       TEXT COLLATE "C" NOT NULL,
  payload_hash BYTEA   NOT NULL,
  state        TEXT    NOT NULL,
  result       BYTEA,
  lease_until  BIGINT  NOT NULL,
  created_at   BIGINT  NOT NULL,
  PRIMARY KEY (client, request_id)
);
CREATE INDEX IF NOT EXISTS requests_created ON requests (created_at);
-- key_id holds the nonce's account: "<key id>@v<version>" (each key version is an address).
CREATE TABLE IF NOT EXISTS nonces (
  key_id           TEXT COLLATE "C" NOT NULL,
  chain_id         BIGINT  NOT NULL,
  nonce            BIGINT  NOT NULL,
  payload_hash     BYTEA   NOT NULL,
  intent_hash      BYTEA   NOT NULL,
  max_fee          NUMERIC(78,0) NOT NULL,
  max_priority_fee NUMERIC(78,0) NOT NULL,
  client           TEXT COLLATE "C" NOT NULL,
  request_id       TEXT COLLATE "C" NOT NULL,
  state            TEXT    NOT NULL,
  result           BYTEA,
  lease_until      BIGINT  NOT NULL,
  PRIMARY KEY (key_id, chain_id, nonce)
);
CREATE INDEX IF NOT EXISTS nonces_holder ON nonces (client, request_id);
CREATE TABLE IF NOT EXISTS nonce_replacements (
  key_id       TEXT COLLATE "C" NOT NULL,
  chain_id     BIGINT  NOT NULL,
  nonce        BIGINT  NOT NULL,
  payload_hash BYTEA   NOT NULL,
  result       BYTEA,
  replaced_at  BIGINT  NOT NULL
);
CREATE TABLE IF NOT EXISTS velocity (
  scope   TEXT COLLATE "C" NOT NULL,
  subject TEXT COLLATE "C" NOT NULL,
  bucket  BIGINT  NOT NULL,
  count   BIGINT  NOT NULL,
  value   NUMERIC(78,0) NOT NULL,
  PRIMARY KEY (scope, subject, bucket)
);
CREATE TABLE IF NOT EXISTS policies (
  name       TEXT COLLATE "C" NOT NULL,
  version    INTEGER NOT NULL,
  document   TEXT    NOT NULL,
  updated_at BIGINT  NOT NULL,
  updated_by TEXT    NOT NULL,
  PRIMARY KEY (name, version)
);
CREATE TABLE IF NOT EXISTS batches (
  client     TEXT COLLATE "C" NOT NULL,
  batch_id   TEXT COLLATE "C" NOT NULL,
  items_hash BYTEA   NOT NULL,
  created_at BIGINT  NOT NULL,
  PRIMARY KEY (client, batch_id)
);
CREATE TABLE IF NOT EXISTS audit (
  seq            BIGINT  PRIMARY KEY,
  at             TEXT    NOT NULL,
  at_ms          BIGINT  NOT NULL,
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
  seq         BIGINT  PRIMARY KEY,
  head_hash   TEXT    NOT NULL,
  at          TEXT    NOT NULL,
  key_id      TEXT    NOT NULL,
  key_version INTEGER NOT NULL,
  signature   TEXT    NOT NULL
);`;

/** pg_advisory_xact_lock key that serialises schema creation of replicas starting together. */
const SCHEMA_LOCK = '7526231390315488613'; // "hsmsigsc"

/**
 * The audit chain's lock: pg_advisory_xact_lock(int4, int4). Two-key advisory locks live in
 * another lock space than the one-bigint locks of SCHEMA_LOCK and of reservation subjects
 * (hashtextextended values), so no subject can ever hash onto it.
 */
const AUDIT_LOCK = [1752395105, 1969514868] as const; // "hsma", "udit"

/**
 * Statements. Named, so each connection parses and plans them once. Each works on arrays
 * (`unnest`) so that a batch of any size costs the same number of statements.
 */
const SQL = {
  /**
   * The reservation's locks: one advisory lock per subject, taken in hash order so that two
   * reservations can never wait for each other in a cycle. Sorted in a subquery that the
   * planner cannot flatten (ORDER BY + DISTINCT), so the locks are taken in that order.
   */
  lock: `SELECT pg_advisory_xact_lock(h) FROM (
      SELECT DISTINCT hashtextextended(s, 0) AS h FROM unnest($1::text[]) AS s ORDER BY h
    ) AS l`,
  // The view. Existing request and nonce rows are also row-locked (in key order), so that a
  // concurrent complete/abandon of the same rows is ordered before or after the whole
  // reservation, exactly as with SQLite's single writer.
  requests: `SELECT q.i, r.payload_hash, r.state, r.result, r.lease_until
    FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS q(client, request_id, i)
    JOIN requests r ON r.client = q.client AND r.request_id = q.request_id
    ORDER BY r.client, r.request_id
    FOR NO KEY UPDATE OF r`,
  nonces: `SELECT q.i, n.payload_hash, n.intent_hash, n.max_fee::text AS max_fee,
      n.max_priority_fee::text AS max_priority_fee, n.state, n.result, n.client, n.request_id, n.lease_until
    FROM unnest($1::text[], $2::bigint[], $3::bigint[]) WITH ORDINALITY AS q(key_id, chain_id, nonce, i)
    JOIN nonces n ON n.key_id = q.key_id AND n.chain_id = q.chain_id AND n.nonce = q.nonce
    ORDER BY n.key_id, n.chain_id, n.nonce
    FOR NO KEY UPDATE OF n`,
  maxNonces: `SELECT q.i, (SELECT max(n.nonce) FROM nonces n WHERE n.key_id = q.key_id AND n.chain_id = q.chain_id) AS n
    FROM unnest($1::text[], $2::bigint[]) WITH ORDINALITY AS q(key_id, chain_id, i)`,
  velocity: `SELECT q.i, coalesce(sum(v.count), 0)::text AS count, coalesce(sum(v.value), 0)::text AS value
    FROM unnest($1::text[], $2::text[], $3::bigint[]) WITH ORDINALITY AS q(scope, subject, since, i)
    LEFT JOIN velocity v ON v.scope = q.scope AND v.subject = q.subject AND v.bucket >= q.since
    GROUP BY q.i`,
  batch: 'SELECT items_hash FROM batches WHERE client = $1 AND batch_id = $2',
  // A group of reservations (see runGroup) locks all the existing rows its reservations will
  // read up front, in the order complete() uses, rather than reservation by reservation.
  prelockRequests: `SELECT 1 FROM unnest($1::text[], $2::text[]) AS q(client, request_id)
    JOIN requests r ON r.client = q.client AND r.request_id = q.request_id
    ORDER BY r.client, r.request_id
    FOR NO KEY UPDATE OF r`,
  prelockNonces: `SELECT 1 FROM unnest($1::text[], $2::bigint[], $3::bigint[]) AS q(key_id, chain_id, nonce)
    JOIN nonces n ON n.key_id = q.key_id AND n.chain_id = q.chain_id AND n.nonce = q.nonce
    ORDER BY n.key_id, n.chain_id, n.nonce
    FOR NO KEY UPDATE OF n`,
  // The writes, in the order sqlite.ts makes them for one item.
  renewRequests: `UPDATE requests r SET lease_until = $3::bigint
    FROM unnest($1::text[], $2::text[]) AS q(client, request_id)
    WHERE r.client = q.client AND r.request_id = q.request_id AND r.state = 'pending'`,
  renewNonces: `UPDATE nonces n SET lease_until = $3::bigint
    FROM unnest($1::text[], $2::text[]) AS q(client, request_id)
    WHERE n.client = q.client AND n.request_id = q.request_id AND n.state = 'pending'`,
  insertRequests: `INSERT INTO requests (client, request_id, key_id, payload_hash, state, lease_until, created_at)
    SELECT client, request_id, key_id, payload_hash, 'pending', $5::bigint, $6::bigint
    FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[]) AS q(client, request_id, key_id, payload_hash)`,
  archiveNonces: `INSERT INTO nonce_replacements (key_id, chain_id, nonce, payload_hash, result, replaced_at)
    SELECT n.key_id, n.chain_id, n.nonce, n.payload_hash, n.result, $4::bigint
    FROM unnest($1::text[], $2::bigint[], $3::bigint[]) AS q(key_id, chain_id, nonce)
    JOIN nonces n ON n.key_id = q.key_id AND n.chain_id = q.chain_id AND n.nonce = q.nonce`,
  replaceNonces: `UPDATE nonces n SET payload_hash = q.payload_hash, intent_hash = q.intent_hash, max_fee = q.max_fee,
      max_priority_fee = q.max_priority_fee, client = q.client, request_id = q.request_id, state = 'pending',
      result = NULL, lease_until = $10::bigint
    FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bytea[], $5::bytea[], $6::numeric[], $7::numeric[],
      $8::text[], $9::text[]) AS q(key_id, chain_id, nonce, payload_hash, intent_hash, max_fee, max_priority_fee, client, request_id)
    WHERE n.key_id = q.key_id AND n.chain_id = q.chain_id AND n.nonce = q.nonce`,
  insertNonces: `INSERT INTO nonces (key_id, chain_id, nonce, payload_hash, intent_hash, max_fee, max_priority_fee,
      client, request_id, state, lease_until)
    SELECT key_id, chain_id, nonce, payload_hash, intent_hash, max_fee, max_priority_fee, client, request_id, 'pending', $10::bigint
    FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bytea[], $5::bytea[], $6::numeric[], $7::numeric[],
      $8::text[], $9::text[]) AS q(key_id, chain_id, nonce, payload_hash, intent_hash, max_fee, max_priority_fee, client, request_id)`,
  addVelocity: `INSERT INTO velocity (scope, subject, bucket, count, value)
    SELECT scope, subject, $5::bigint, count, value FROM unnest($1::text[], $2::text[], $3::bigint[], $4::numeric[]) AS q(scope, subject, count, value)
    ON CONFLICT (scope, subject, bucket) DO UPDATE SET count = velocity.count + excluded.count, value = velocity.value + excluded.value`,
  insertBatch: 'INSERT INTO batches (client, batch_id, items_hash, created_at) VALUES ($1, $2, $3, $4)',
  // complete/abandon: rows are locked in key order first (the MATERIALIZED CTE; an UPDATE only
  // touches rows the CTE has already returned, i.e. locked), the order a reservation uses too,
  // so the two can never deadlock.
  completeRequests: `WITH d AS (SELECT * FROM unnest($1::text[], $2::text[], $3::bytea[]) AS q(client, request_id, result)),
    l AS MATERIALIZED (SELECT r.client, r.request_id, d.result FROM requests r JOIN d ON r.client = d.client AND r.request_id = d.request_id
      ORDER BY r.client, r.request_id FOR NO KEY UPDATE OF r)
    UPDATE requests r SET state = 'done', result = l.result FROM l WHERE r.client = l.client AND r.request_id = l.request_id`,
  completeNonces: `WITH d AS (SELECT * FROM unnest($1::text[], $2::text[], $3::bytea[]) AS q(client, request_id, result)),
    l AS MATERIALIZED (SELECT n.key_id, n.chain_id, n.nonce, d.result FROM nonces n JOIN d ON n.client = d.client AND n.request_id = d.request_id
      ORDER BY n.key_id, n.chain_id, n.nonce FOR NO KEY UPDATE OF n)
    UPDATE nonces n SET state = 'done', result = l.result FROM l WHERE n.key_id = l.key_id AND n.chain_id = l.chain_id AND n.nonce = l.nonce`,
  abandonRequests: `WITH l AS MATERIALIZED (SELECT r.client, r.request_id FROM requests r
      JOIN unnest($1::text[], $2::text[]) AS q(client, request_id) ON r.client = q.client AND r.request_id = q.request_id
      WHERE r.state = 'pending' ORDER BY r.client, r.request_id FOR NO KEY UPDATE OF r)
    UPDATE requests r SET lease_until = 0 FROM l WHERE r.client = l.client AND r.request_id = l.request_id AND r.state = 'pending'`,
  /**
   * Appending to the audit chain. The lock is the LAST lock any transaction takes: a
   * transaction that holds it only reads the head, inserts rows nobody else can insert (the
   * lock serialises inserters) and commits, so it never waits for anything and no lock cycle
   * can include it. The head is read by a statement of its own AFTER the lock statement: READ
   * COMMITTED takes a new snapshot per statement, so it sees the previous holder's commit (a
   * transaction is visible before its locks are released). In one statement with the lock its
   * snapshot could predate the lock, and two replicas would chain onto the same head: a fork.
   */
  auditLock: 'SELECT pg_advisory_xact_lock($1::int4, $2::int4)',
  // BIGINT columns come back as decimal strings (node-pg's default for int8). Never alias a
  // cast as `seq`: ORDER BY seq would then sort text ("999" > "1000").
  auditHead: 'SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1',
  insertAudit: `INSERT INTO audit (seq, at, at_ms, kind, client, key_id, key_version, request_id, payload_hash, intent,
      decision, reason, signature_hash, prev_hash, hash)
    SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::text[], $7::int4[], $8::text[],
      $9::text[], $10::text[], $11::text[], $12::text[], $13::text[], $14::text[], $15::text[])`,
  readAudit: `SELECT seq, at, kind, client, key_id, key_version, request_id, payload_hash, intent, decision, reason,
      signature_hash, prev_hash, hash
    FROM audit WHERE seq >= $1::bigint AND seq <= $2::bigint ORDER BY seq LIMIT $3`,
  abandonNonces: `WITH l AS MATERIALIZED (SELECT n.key_id, n.chain_id, n.nonce FROM nonces n
      JOIN unnest($1::text[], $2::text[]) AS q(client, request_id) ON n.client = q.client AND n.request_id = q.request_id
      WHERE n.state = 'pending' ORDER BY n.key_id, n.chain_id, n.nonce FOR NO KEY UPDATE OF n)
    UPDATE nonces n SET lease_until = 0 FROM l
    WHERE n.key_id = l.key_id AND n.chain_id = l.chain_id AND n.nonce = l.nonce AND n.state = 'pending'`,
} as const;

type Sql = keyof typeof SQL;
const q = (name: Sql, values: unknown[]): QueryConfig => ({ name: `signer_${name}`, text: SQL[name], values });

/** Errors after which the whole transaction is retried: the database resolved a race. */
const RETRY_CODES = new Set(['23505', '40001', '40P01']);
const MAX_ATTEMPTS = 10;

const isRetryable = (e: unknown) => e instanceof DatabaseError && e.code !== undefined && RETRY_CODES.has(e.code);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** Small jittered exponential backoff: 1-4 ms, 2-8 ms, ... capped at 50 ms. */
const backoff = (attempt: number) => sleep(Math.min(50, 2 ** attempt) * (0.5 + Math.random() * 1.5));

/** Reservations per group transaction: bounds how long one group holds its locks. */
const MAX_GROUP_SIZE = 64;

/** Audit entries per readAudit query. */
const AUDIT_PAGE = 1000;

/** A seq range bound as a bigint parameter (ranges may be given as ±Infinity or fractions). */
function seqBound(x: number, round: 'ceil' | 'floor'): number {
  if (Number.isNaN(x)) throw new RangeError('audit seq bound is not a number');
  return Math.max(-Number.MAX_SAFE_INTEGER, Math.min(Number.MAX_SAFE_INTEGER, Math[round](x)));
}

interface ReserveOp {
  req: ReserveRequest;
  decide: (view: ReserveView) => ReservePlan<unknown>;
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
  now: number;
  locks: string[];
  reads: ReturnType<typeof viewQueries>;
  /** Tries that failed on a resolved race (unique violation, deadlock, serialisation). */
  attempts: number;
  settled: boolean;
}

function settle(op: ReserveOp, result: { value: unknown } | { error: unknown }): void {
  if (op.settled) return;
  op.settled = true;
  if ('error' in result) op.reject(result.error);
  else op.resolve(result.value);
}

/** PostgreSQL text cannot hold NUL; refused up front, not by a statement in a shared transaction. */
function checkText(what: string, s: string): void {
  if (s.includes('\0')) throw new RangeError(`${what} contains a NUL character`);
}

/**
 * Gathers the calls of one event-loop turn into one call of `run` (at most `maxInFlight` at a
 * time; calls made meanwhile wait for the next one), up to `maxSize` in total `size`.
 * Completions and audit appends are on the signing hot path: one transaction, one commit (and
 * one turn of the audit lock) and one connection for many responses. The calls of a run share
 * its outcome.
 */
class Coalescer<C> {
  private queue: Array<{ call: C; size: number; resolve: () => void; reject: (e: unknown) => void }> = [];
  private scheduled = false;
  private inFlight = 0;

  constructor(
    private readonly run: (calls: C[]) => Promise<void>,
    private readonly maxInFlight = 2,
    private readonly maxSize = 1000,
  ) {}

  submit(call: C, size: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ call, size, resolve, reject });
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => {
          this.scheduled = false;
          this.flush();
        });
      }
    });
  }

  private flush(): void {
    while (this.inFlight < this.maxInFlight && this.queue.length > 0) {
      let n = 0;
      let size = 0;
      while (n < this.queue.length && (n === 0 || size + this.queue[n]!.size <= this.maxSize)) size += this.queue[n++]!.size;
      const calls = this.queue.splice(0, n);
      this.inFlight++;
      this.run(calls.map((c) => c.call))
        .then(
          () => calls.forEach((c) => c.resolve()),
          (e: unknown) => calls.forEach((c) => c.reject(e)),
        )
        .finally(() => {
          this.inFlight--;
          this.flush();
        });
    }
  }
}

const INT8_MIN = -(2n ** 63n);
const INT8_MAX = 2n ** 63n - 1n;
const NUMERIC78_MAX = 10n ** 78n - 1n;

/**
 * Values the columns cannot hold are refused before they reach a transaction shared with
 * other reservations (SQLite refuses the same nonces and chain ids: its integers are 64-bit).
 */
function checkRequest(req: ReserveRequest): void {
  const text = checkText;
  const int8 = (what: string, v: bigint) => {
    if (v < INT8_MIN || v > INT8_MAX) throw new RangeError(`${what} ${v} does not fit in a 64-bit integer`);
  };
  const numeric = (what: string, v: bigint) => {
    if (v < -NUMERIC78_MAX || v > NUMERIC78_MAX) throw new RangeError(`${what} ${v} has more than 78 digits`);
  };
  if (Number.isNaN(req.now.getTime())) throw new RangeError('reservation time is not a valid date');
  if (!Number.isSafeInteger(req.leaseMs)) throw new RangeError(`lease ${req.leaseMs} ms is not an integer`);
  for (const it of req.items) {
    text('client', it.client);
    text('request id', it.requestId);
    text('key id', it.keyId);
    numeric('value', it.value);
    if (it.nonce) {
      text('nonce account', it.nonce.account);
      int8('chain id', it.nonce.chainId);
      int8('nonce', it.nonce.nonce);
      numeric('max fee per gas', it.nonce.maxFeePerGas);
      numeric('max priority fee per gas', it.nonce.maxPriorityFeePerGas);
    }
  }
  for (const v of req.velocity) {
    text('velocity subject', v.subject);
    if (!Number.isFinite(v.windowSeconds)) throw new RangeError(`velocity window ${v.windowSeconds} s is not finite`);
  }
  if (req.batch) {
    text('client', req.batch.client);
    text('batch id', req.batch.batchId);
  }
}

const INT4_MAX = 2 ** 31 - 1;

/**
 * Audit drafts are checked before they join a transaction shared with other calls, like
 * reservations (checkRequest): a draft the columns cannot hold fails its own call only.
 */
function checkDrafts(drafts: AuditDraft[]): void {
  for (const d of drafts) {
    if (!(d.at instanceof Date) || Number.isNaN(d.at.getTime())) throw new RangeError('audit entry time is not a valid date');
    const texts = { kind: d.kind, decision: d.decision, client: d.client, 'key id': d.keyId, 'request id': d.requestId, reason: d.reason };
    for (const [what, v] of Object.entries(texts)) if (v !== null) checkText(`audit ${what}`, v);
    if (d.keyVersion !== null && !(Number.isInteger(d.keyVersion) && Math.abs(d.keyVersion) <= INT4_MAX)) {
      throw new RangeError(`audit key version ${d.keyVersion} is not a 32-bit integer`);
    }
    // What entryHash would refuse, refused now rather than under the audit lock.
    if (d.intent !== null) canonicalJson(d.intent);
  }
}

/**
 * Numbers and chains `drafts` after `head` exactly as sqlite.ts does (draftToEntry, entryHash),
 * as one insert. Runs while the transaction holds the audit lock.
 */
function auditInsert(drafts: AuditDraft[], head: { seq: string; hash: string } | undefined): QueryConfig {
  let seq = head ? Number(head.seq) : 0;
  let prevHash = head?.hash ?? GENESIS;
  const cols: unknown[][] = Array.from({ length: 15 }, () => []);
  for (const d of drafts) {
    seq++;
    const entry = draftToEntry(d, seq, prevHash);
    const hash = entryHash(entry);
    const row = [
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
    ];
    row.forEach((v, i) => cols[i]!.push(v));
    prevHash = hash;
  }
  return q('insertAudit', cols);
}

/** The audit lock and the head read under it: the last statements before insertAudit and COMMIT. */
const auditLockAndHead = (): QueryConfig[] => [q('auditLock', [...AUDIT_LOCK]), q('auditHead', [])];

interface KeyRow {
  key_id: string;
  version: number;
  algorithm: string;
  cka_id: Buffer;
  public_key: Buffer;
  state: string;
  created_at: string;
  state_changed_at: string | null;
  retire_at: string | null;
  threshold: string | null;
}

interface RequestRow {
  i: string;
  payload_hash: Buffer;
  state: 'pending' | 'done';
  result: Buffer | null;
  lease_until: string;
}

interface AuditRow {
  seq: string;
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

interface NonceRow {
  i: string;
  payload_hash: Buffer;
  intent_hash: Buffer;
  max_fee: string;
  max_priority_fee: string;
  state: 'pending' | 'done';
  result: Buffer | null;
  client: string;
  request_id: string;
  lease_until: string;
}

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
 * transaction of the records they describe (reservation, completion), or in one of their own
 * (appendAudit), under one advisory lock taken last, right before the head is read, the
 * entries inserted and the transaction committed. Lock order in every transaction:
 *
 *   reservation subjects (advisory, hash order) -> request rows -> nonce rows (key order)
 *   -> [writes] -> audit lock -> COMMIT
 *
 * complete() and abandon() take request then nonce rows, complete() then the audit lock. The
 * holder of the audit lock waits for nothing, so it is never part of a cycle; appends of all
 * replicas commit one after the other, each after the head the previous one committed: seq
 * 1..N without gaps (a rolled-back transaction numbered nothing that anyone saw) or forks.
 */
export class PostgresStore implements Store, ReplayStore, AuditStore {
  /** Reservations waiting for a group transaction. */
  private queue: ReserveOp[] = [];
  private scheduled = false;
  private groups = 0;
  private readonly maxGroups: number;
  private readonly completions = new Coalescer<{ done: Completion[]; audit: AuditDraft[] }>((calls) => this.completeNow(calls));
  // One append transaction at a time: they queue for the audit lock anyway, and calls made
  // meanwhile go together into the next one, in call order.
  private readonly appends = new Coalescer<AuditDraft[]>((calls) => this.appendNow(calls.flat()), 1);

  private constructor(
    private readonly pool: pg.Pool,
    poolSize: number,
  ) {
    // Group transactions in flight at once: one holding its locks, one queued behind it. More
    // would mostly wait for the same locks and take connections from complete() and others.
    this.maxGroups = Math.max(1, Math.min(2, poolSize - 1));
  }

  /**
   * Connects and creates the schema if it is missing. `url` is a libpq-style connection URI
   * (`postgres://user:pass@host:port/db?sslmode=...`).
   */
  static async open(url: string, opts: { poolSize?: number } = {}): Promise<PostgresStore> {
    const poolSize = opts.poolSize ?? 10;
    const pool = new Pool({
      connectionString: url,
      max: poolSize,
      pipeline: true,
      keepAlive: true,
      connectionTimeoutMillis: 10_000,
      application_name: 'hsm-signer',
      // A session that dies mid-transaction must not hold its locks for long.
      idle_in_transaction_session_timeout: 30_000,
      // "Durable before the signature leaves": a commit must be flushed before it returns.
      // Raise synchronous_commit if the server or role turned it off; never lower it.
      onConnect: async (client) => {
        // A connection that breaks while checked out fails its queries; without a listener its
        // 'error' event would also crash the process.
        client.on('error', () => {});
        await client.query("SELECT set_config('synchronous_commit', 'on', false) WHERE current_setting('synchronous_commit') = 'off'");
      },
    });
    // An idle connection that breaks (server restart, network) is dropped by the pool; without
    // a listener the 'error' event would crash the process. The next query reconnects.
    pool.on('error', () => {});
    const store = new PostgresStore(pool, poolSize);
    try {
      await store.transaction(async (c) => {
        await c.query({ text: 'SELECT pg_advisory_xact_lock($1::bigint)', values: [SCHEMA_LOCK] });
        await c.query(SCHEMA);
      });
    } catch (e) {
      await pool.end().catch(() => {});
      throw e;
    }
    return store;
  }

  async insertKey(k: KeyRecord): Promise<void> {
    try {
      await this.pool.query({
        text: `INSERT INTO keys (key_id, version, algorithm, cka_id, public_key, state, created_at, state_changed_at, retire_at, threshold)
          VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
        values: keyValues(k),
      });
    } catch (e) {
      if (e instanceof DatabaseError && e.code === '23505') throw new KeyExistsError(`key ${k.keyId} v${k.version} exists`);
      throw e;
    }
  }

  async rotateKey(next: KeyRecord, previousVersion: number, retireAt: Date): Promise<void> {
    // One statement: the insert happens only if this call moved the active version. A replica
    // rotating at the same time waits for the row; once the first commits, the row is no longer
    // active and this one moves nothing (READ COMMITTED re-checks the WHERE on the new row).
    let moved: number;
    try {
      const r = await this.pool.query({
        text: `WITH moved AS (
            UPDATE keys SET state = 'verify-only', state_changed_at = $11, retire_at = $12
            WHERE key_id = $1 AND version = $13 AND state = 'active' RETURNING 1)
          INSERT INTO keys (key_id, version, algorithm, cka_id, public_key, state, created_at, state_changed_at, retire_at, threshold)
          SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10 WHERE EXISTS (SELECT 1 FROM moved)`,
        values: [...keyValues(next), next.createdAt.getTime(), retireAt.getTime(), previousVersion],
      });
      moved = r.rowCount ?? 0;
    } catch (e) {
      if (e instanceof DatabaseError && e.code === '23505') throw new KeyExistsError(`key ${next.keyId} v${next.version} exists`);
      throw e;
    }
    if (moved !== 1) throw new KeyExistsError(`key ${next.keyId} v${previousVersion} is no longer active`);
  }

  async updateThreshold(keyId: string, version: number, info: ThresholdInfo): Promise<void> {
    await this.pool.query({ text: 'UPDATE keys SET threshold = $1 WHERE key_id = $2 AND version = $3', values: [JSON.stringify(info), keyId, version] });
  }

  async setKeyState(keyId: string, version: number, from: KeyState[], to: KeyState, at: Date): Promise<boolean> {
    const r = await this.pool.query({
      text: `UPDATE keys SET state = $1, state_changed_at = $2, retire_at = NULL
        WHERE key_id = $3 AND version = $4 AND state = ANY($5::text[])`,
      values: [to, at.getTime(), keyId, version, from],
    });
    return r.rowCount === 1;
  }

  async listKeys(): Promise<KeyRecord[]> {
    const { rows } = await this.pool.query<KeyRow>(
      'SELECT key_id, version, algorithm, cka_id, public_key, state, created_at, state_changed_at, retire_at, threshold FROM keys ORDER BY key_id, version',
    );
    return rows.map((r) => ({
      keyId: r.key_id,
      version: r.version,
      algorithm: r.algorithm as Algorithm,
      ckaId: r.cka_id,
      publicKey: r.public_key,
      state: r.state as KeyState,
      createdAt: new Date(Number(r.created_at)),
      stateChangedAt: new Date(Number(r.state_changed_at ?? r.created_at)),
      retireAt: r.retire_at === null ? null : new Date(Number(r.retire_at)),
      threshold: r.threshold === null ? null : (JSON.parse(r.threshold) as ThresholdInfo),
    }));
  }

  async putPolicy(name: string, document: string, updatedBy: string, at: Date): Promise<PolicyRecord> {
    // Two replicas setting the same policy at once compute the same version: the primary key
    // refuses the second, which retries and gets the next one.
    const { rows } = await this.retrying((c) =>
      c.query<{ version: number }>({
        text: `INSERT INTO policies (name, version, document, updated_at, updated_by)
          SELECT $1, coalesce(max(version), 0) + 1, $2, $3, $4 FROM policies WHERE name = $1
          RETURNING version`,
        values: [name, document, at.getTime(), updatedBy],
      }),
    );
    return { name, version: rows[0]!.version, document, updatedAt: at, updatedBy };
  }

  async listPolicies(): Promise<PolicyRecord[]> {
    const { rows } = await this.pool.query<PolicyRow>(
      'SELECT DISTINCT ON (name) name, version, document, updated_at, updated_by FROM policies ORDER BY name, version DESC',
    );
    return rows.map(policyRecord);
  }

  async policyHistory(name: string): Promise<PolicyRecord[]> {
    const { rows } = await this.pool.query<PolicyRow>({
      text: 'SELECT name, version, document, updated_at, updated_by FROM policies WHERE name = $1 ORDER BY version',
      values: [name],
    });
    return rows.map(policyRecord);
  }

  reserve<T>(req: ReserveRequest, decide: (view: ReserveView) => ReservePlan<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      try {
        checkRequest(req);
      } catch (e) {
        reject(e);
        return;
      }
      const now = req.now.getTime();
      this.queue.push({
        req,
        decide,
        resolve: resolve as (v: unknown) => void,
        reject,
        now,
        locks: lockSubjects(req),
        reads: viewQueries(req, now),
        attempts: 0,
        settled: false,
      });
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => {
          this.scheduled = false;
          this.startGroups();
        });
      }
    });
  }

  async complete(done: Completion[], audit: AuditDraft[]): Promise<void> {
    for (const d of done) {
      checkText('client', d.client);
      checkText('request id', d.requestId);
    }
    checkDrafts(audit);
    if (done.length > 0 || audit.length > 0) await this.completions.submit({ done, audit: [...audit] }, done.length + audit.length);
  }

  /**
   * One transaction for every completion submitted in the same turn (see Coalescer): results,
   * then the calls' audit entries in call order, then COMMIT.
   */
  private async completeNow(calls: Array<{ done: Completion[]; audit: AuditDraft[] }>): Promise<void> {
    // The same request twice: the last result wins, as with sqlite.ts's sequential updates.
    const last = new Map(calls.flatMap((c) => c.done).map((d) => [JSON.stringify([d.client, d.requestId]), d]));
    const rows = [...last.values()];
    const values = [rows.map((d) => d.client), rows.map((d) => d.requestId), rows.map((d) => Buffer.from(d.result))];
    const queries = rows.length > 0 ? [q('completeRequests', values), q('completeNonces', values)] : [];
    const audit = calls.flatMap((c) => c.audit);
    await this.retrying((c) => inTransaction(c, queries, audit));
  }

  async appendAudit(drafts: AuditDraft[]): Promise<void> {
    checkDrafts(drafts);
    if (drafts.length > 0) await this.appends.submit([...drafts], drafts.length);
  }

  /** The appendAudit calls of one turn: one transaction, one turn of the audit lock. */
  private async appendNow(drafts: AuditDraft[]): Promise<void> {
    await this.retrying((c) => inTransaction(c, [], drafts));
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
    const { rows } = await this.pool.query<{ first: string | null; last: string | null }>({
      text: 'SELECT min(seq) AS first, max(seq) AS last FROM audit WHERE at_ms >= $1 AND at_ms < $2',
      values: [from?.getTime() ?? 0, to?.getTime() ?? Number.MAX_SAFE_INTEGER],
    });
    const r = rows[0]!;
    return r.first === null || r.last === null ? undefined : { first: Number(r.first), last: Number(r.last) };
  }

  async putCheckpoint(c: StoredCheckpoint): Promise<void> {
    for (const [what, v] of Object.entries({ 'head hash': c.headHash, time: c.at, 'key id': c.auditKey.keyId, signature: c.signature })) {
      checkText(`checkpoint ${what}`, v);
    }
    // A second replica checkpointing the same seq is ignored: the first one stays.
    await this.retrying((client) =>
      client.query({
        text: `INSERT INTO audit_checkpoints (seq, head_hash, at, key_id, key_version, signature) VALUES ($1, $2, $3, $4, $5, $6)
          ON CONFLICT (seq) DO NOTHING`,
        values: [c.seq, c.headHash, c.at, c.auditKey.keyId, c.auditKey.version, c.signature],
      }),
    );
  }

  async checkpoints(fromSeq: number, toSeq: number): Promise<StoredCheckpoint[]> {
    const { rows } = await this.pool.query<{ seq: string; head_hash: string; at: string; key_id: string; key_version: number; signature: string }>({
      text: `SELECT seq, head_hash, at, key_id, key_version, signature FROM audit_checkpoints
        WHERE seq >= $1::bigint AND seq <= $2::bigint ORDER BY seq`,
      values: [seqBound(fromSeq, 'ceil'), seqBound(toSeq, 'floor')],
    });
    return rows.map((r) => ({ seq: Number(r.seq), headHash: r.head_hash, at: r.at, auditKey: { keyId: r.key_id, version: r.key_version }, signature: r.signature }));
  }

  async abandon(items: Array<{ client: string; requestId: string }>): Promise<void> {
    if (items.length === 0) return;
    for (const it of items) {
      checkText('client', it.client);
      checkText('request id', it.requestId);
    }
    const values = [items.map((d) => d.client), items.map((d) => d.requestId)];
    await this.retrying((c) => inTransaction(c, [q('abandonRequests', values), q('abandonNonces', values)]));
  }

  async prune(before: { requests: Date; velocity: Date }): Promise<number> {
    const t = before.requests.getTime();
    const results = await this.retrying((c) =>
      inTransaction(c, [
        { text: 'DELETE FROM velocity WHERE bucket < $1', values: [velocityBucket(before.velocity.getTime()) - 1] },
        { text: 'DELETE FROM batches WHERE created_at < $1', values: [t] },
        // Rows locked in the order reservations and complete() lock them: no lock cycle.
        {
          text: `DELETE FROM requests WHERE (client, request_id) IN (
              SELECT client, request_id FROM requests WHERE created_at < $1 ORDER BY client, request_id FOR UPDATE)`,
          values: [t],
        },
      ]),
    );
    return results[2]!.rowCount ?? 0;
  }

  /**
   * A session-level advisory lock on its own connection, held while `fn` runs. The connection is
   * not taken from the pool: `fn` uses the pool itself, and with a small pool holding one of
   * its clients for the lock could starve it. If the connection dies, PostgreSQL drops the lock.
   */
  async withJobLock<T>(name: string, fn: () => Promise<T>): Promise<T | undefined> {
    const client = new pg.Client({
      connectionString: this.pool.options.connectionString,
      keepAlive: true,
      connectionTimeoutMillis: 10_000,
      application_name: 'hsm-signer job lock',
    });
    client.on('error', () => {});
    await client.connect();
    try {
      const { rows } = await client.query<{ ok: boolean }>({ text: "SELECT pg_try_advisory_lock(hashtextextended('job:' || $1, 0)) AS ok", values: [name] });
      if (!rows[0]?.ok) return undefined;
      try {
        return await fn();
      } finally {
        await client.query({ text: "SELECT pg_advisory_unlock(hashtextextended('job:' || $1, 0))", values: [name] }).catch(() => undefined);
      }
    } finally {
      await client.end().catch(() => undefined);
    }
  }

  async close(): Promise<void> {
    await this.pool.end();
  }

  private startGroups(): void {
    while (this.groups < this.maxGroups && this.queue.length > 0) {
      const ops = this.queue.splice(0, MAX_GROUP_SIZE);
      this.groups++;
      void this.runGroup(ops).finally(() => {
        this.groups--;
        this.startGroups();
      });
    }
  }

  /**
   * Runs reservations in one transaction, one after the other, like sqlite.ts's group commit:
   *
   *   [BEGIN, lock(all subjects), reads 1] -> decide 1 -> [writes 1, reads 2] -> decide 2 -> ...
   *   -> [writes n, COMMIT]
   *
   * or, when plans carry audit drafts, with the audit lock last and held for one round trip:
   *
   *   -> [writes n, audit lock, audit head] -> chain the drafts of plans 1..n -> [insert, COMMIT]
   *
   * n reservations cost n + 1 round trips and one commit, instead of 2n round trips and n
   * commits, each holding the locks (a hot client's reservations all share its lock). Each
   * reservation reads what the previous ones wrote, as with one transaction each. Outcomes are
   * delivered only after COMMIT. A statement that fails aborts the transaction: the
   * reservation it belongs to is rejected, or retried if the error is a resolved race, and the
   * group starts over (every `decide` runs again; the contract allows that), its audit drafts
   * with it: they are decided again and appended only by the try that commits.
   */
  private async runGroup(ops: ReserveOp[]): Promise<void> {
    let client: PoolClient;
    try {
      client = await this.pool.connect();
    } catch (e) {
      for (const op of ops) op.reject(e);
      return;
    }
    let broken: Error | undefined;
    let groupAttempts = 0;
    try {
      for (;;) {
        const live = ops.filter((op) => !op.settled);
        if (live.length === 0) return;
        const failure = await this.groupOnce(client, live);
        if (!failure) return;
        const { error, op } = failure;
        try {
          await client.query('ROLLBACK');
        } catch (rollbackError) {
          broken = rollbackError as Error;
          for (const o of live) settle(o, { error });
          return;
        }
        if (op) {
          op.attempts++;
          if (!isRetryable(error) || op.attempts >= MAX_ATTEMPTS) settle(op, { error });
          else await backoff(op.attempts);
        } else {
          groupAttempts++;
          if (!isRetryable(error) || groupAttempts >= MAX_ATTEMPTS) {
            for (const o of live) settle(o, { error });
            return;
          }
          await backoff(groupAttempts);
        }
      }
    } finally {
      client.release(broken);
    }
  }

  /** One try of a group; undefined when committed, else the error and whose statement failed. */
  private async groupOnce(client: PoolClient, live: ReserveOp[]): Promise<{ error: unknown; op?: ReserveOp } | undefined> {
    const locks = [...new Set(live.flatMap((op) => op.locks))];
    let pending: Array<{ query: QueryConfig | string; op?: ReserveOp }> = [{ query: 'BEGIN' }, { query: q('lock', [locks]) }];
    if (live.length > 1) {
      // Row locks in one global order (requests, then nonces, each sorted), not reservation by
      // reservation: two groups, or a group and complete(), can then never wait for each other
      // in a cycle (which PostgreSQL would break only after deadlock_timeout, 1 s by default).
      const items = live.flatMap((op) => op.req.items);
      const claims = items.flatMap((it) => (it.nonce ? [{ account: it.nonce.account, n: it.nonce }] : []));
      pending.push({ query: q('prelockRequests', [items.map((it) => it.client), items.map((it) => it.requestId)]) });
      if (claims.length > 0) {
        pending.push({
          query: q('prelockNonces', [claims.map((c) => c.account), claims.map((c) => c.n.chainId.toString()), claims.map((c) => c.n.nonce.toString())]),
        });
      }
    }
    const decided: Array<{ op: ReserveOp; result: { value: unknown } | { error: unknown } }> = [];
    // The audit drafts of the plans decided so far, in group order: appended after the last
    // reservation's writes, under the audit lock, in this transaction (and tried again with it).
    const audit: AuditDraft[] = [];
    const send = async (batch: typeof pending): Promise<{ error: unknown; op?: ReserveOp } | { results: QueryResult[] }> => {
      const settled = await Promise.allSettled(batch.map((b) => client.query(b.query)));
      const failed = settled.findIndex((r) => r.status === 'rejected');
      if (failed >= 0) {
        const { op } = batch[failed]!;
        return { error: (settled[failed] as PromiseRejectedResult).reason, ...(op ? { op } : {}) };
      }
      return { results: settled.map((r) => (r as PromiseFulfilledResult<QueryResult>).value) };
    };
    for (let i = 0; ; i++) {
      const op = live[i];
      if (!op) {
        // [writes n, (audit lock, head) | COMMIT] -> [insert audit, COMMIT]
        const tail = audit.length > 0 ? auditLockAndHead() : ['COMMIT'];
        const sent = await send([...pending, ...tail.map((query) => ({ query }))]);
        if ('error' in sent) return sent;
        let last = sent.results.at(-1)!;
        if (audit.length > 0) {
          const head = last.rows[0] as { seq: string; hash: string } | undefined;
          let insert: QueryConfig;
          try {
            insert = auditInsert(audit, head);
          } catch (error) {
            return { error }; // drafts are checked when decided; belt and braces
          }
          const commit = await send([{ query: insert }, { query: 'COMMIT' }]);
          if ('error' in commit) return { error: commit.error };
          last = commit.results.at(-1)!;
        }
        // COMMIT of a failed transaction answers ROLLBACK; a failed statement would have
        // thrown above, so this is belt and braces.
        if (last.command !== 'COMMIT') return { error: new Error('reservation transaction was rolled back') };
        for (const d of decided) settle(d.op, d.result);
        return undefined;
      }
      const sent = await send([...pending, ...op.reads.queries.map((query) => ({ query, op }))]);
      if ('error' in sent) return sent;
      const { results } = sent;
      pending = [];
      let plan: ReservePlan<unknown>;
      try {
        plan = op.decide(op.reads.view(results.slice(results.length - op.reads.queries.length)));
        const lease = op.now + op.req.leaseMs;
        pending = writeQueries(op.req, plan, op.now, lease).map((query) => ({ query, op }));
        if (plan.audit) checkDrafts(plan.audit);
      } catch (error) {
        // decide (or a plan naming items that do not exist, or an audit draft the columns
        // cannot hold) failed: nothing of it is written.
        pending = [];
        decided.push({ op, result: { error } });
        continue;
      }
      if (plan.audit) audit.push(...plan.audit);
      decided.push({ op, result: { value: plan.outcome } });
    }
  }

  /** Runs `f` in a transaction (commit on success, rollback on error). */
  private async transaction<R>(f: (c: PoolClient) => Promise<R>): Promise<R> {
    const client = await this.pool.connect();
    let broken: Error | undefined;
    try {
      await client.query('BEGIN');
      const r = await f(client);
      await client.query('COMMIT');
      return r;
    } catch (e) {
      await client.query('ROLLBACK').catch((rollbackError: Error) => (broken = rollbackError));
      throw e;
    } finally {
      client.release(broken);
    }
  }

  /** Runs `f` (one statement, or one whole transaction), again when the database says so. */
  private async retrying<R>(f: (c: PoolClient) => Promise<R>): Promise<R> {
    const client = await this.pool.connect();
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
          if (attempt < MAX_ATTEMPTS && isRetryable(e)) {
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
}

/**
 * Sends all statements at once and waits for all answers. Throws the first failure in
 * statement order: the cause, not the "current transaction is aborted" errors that follow it.
 */
async function pipeline(client: PoolClient, queries: Array<QueryConfig | string>): Promise<QueryResult[]> {
  const settled = await Promise.allSettled(queries.map((x) => client.query(x)));
  const failed = settled.find((s) => s.status === 'rejected');
  if (failed) throw failed.reason;
  return settled.map((s) => (s as PromiseFulfilledResult<QueryResult>).value);
}

/**
 * One transaction; resolves to the results of `queries` once committed. Without audit drafts
 * one round trip; with them two: [BEGIN, queries, audit lock, head] -> chain -> [insert, COMMIT].
 */
async function inTransaction(client: PoolClient, queries: QueryConfig[], audit: AuditDraft[] = []): Promise<QueryResult[]> {
  if (audit.length === 0) {
    const results = await pipeline(client, ['BEGIN', ...queries, 'COMMIT']);
    // A COMMIT of a failed transaction is answered with ROLLBACK, not an error; the failed
    // statement has thrown already, this is belt and braces.
    if (results.at(-1)!.command !== 'COMMIT') throw new Error('transaction was rolled back');
    return results.slice(1, -1);
  }
  const results = await pipeline(client, ['BEGIN', ...queries, ...auditLockAndHead()]);
  const head = results.at(-1)!.rows[0] as { seq: string; hash: string } | undefined;
  const [, commit] = await pipeline(client, [auditInsert(audit, head), 'COMMIT']);
  if (commit!.command !== 'COMMIT') throw new Error('transaction was rolled back');
  return results.slice(1, 1 + queries.length);
}

/**
 * Advisory-lock subjects (the same strings name the same subject in every replica): whatever
 * part of the view cannot be protected by row locks and primary keys alone.
 *
 * - ["account", account] for an item with a nonce claim: nextNonce (max over the account's
 *   claims) and a nonce not claimed yet are reads of rows that may not exist, so no row lock
 *   covers them.
 * - [scope, subject] for each velocity query: its sum must not change until the decision is
 *   written.
 * - ["batch", client, id] for the batch record.
 *
 * Existing request and nonce rows are row-locked by the reads; a request id or nonce inserted
 * by two reservations at once is refused to the second by the primary key, which then retries
 * and sees the first. Velocity increments are additive and commute, so only readers of a sum
 * lock it. A client's reservations therefore do not all queue behind one lock unless their
 * policy reads the client's velocity; those of one account do when they claim nonces, those of
 * one key when they read the key's velocity.
 */
function lockSubjects(req: ReserveRequest): string[] {
  const subjects = new Set<string>();
  for (const it of req.items) if (it.nonce) subjects.add(JSON.stringify(['account', it.nonce.account]));
  for (const v of req.velocity) subjects.add(JSON.stringify([v.scope, v.subject]));
  if (req.batch) subjects.add(JSON.stringify(['batch', req.batch.client, req.batch.batchId]));
  return [...subjects];
}

/** The view's statements and how to assemble their answers. */
function viewQueries(req: ReserveRequest, now: number) {
  const { items } = req;
  const withNonce = items.flatMap((it, i) => (it.nonce ? [{ it, i, n: it.nonce }] : []));
  const queries: QueryConfig[] = [q('requests', [items.map((it) => it.client), items.map((it) => it.requestId)])];
  if (withNonce.length > 0) {
    const keys = withNonce.map((x) => x.n.account);
    const chains = withNonce.map((x) => x.n.chainId.toString());
    queries.push(q('nonces', [keys, chains, withNonce.map((x) => x.n.nonce.toString())]));
    queries.push(q('maxNonces', [keys, chains]));
  }
  if (req.velocity.length > 0) {
    queries.push(
      q('velocity', [
        req.velocity.map((v) => v.scope),
        req.velocity.map((v) => v.subject),
        req.velocity.map((v) => velocityBucket(now - v.windowSeconds * 1000)),
      ]),
    );
  }
  if (req.batch) queries.push(q('batch', [req.batch.client, req.batch.batchId]));

  const view = (results: QueryResult[]): ReserveView => {
    let next = 0;
    const take = () => results[next++]!.rows;
    const itemViews: ItemView[] = items.map(() => ({}));
    for (const r of take() as RequestRow[]) itemViews[Number(r.i) - 1]!.request = requestRecord(r, now);
    if (withNonce.length > 0) {
      const nonceRows = take() as NonceRow[];
      const maxRows = take() as Array<{ i: string; n: string | null }>;
      // Fields in the order sqlite.ts sets them (request, nonce, nextNonce).
      for (const r of nonceRows) itemViews[withNonce[Number(r.i) - 1]!.i]!.nonce = nonceRecord(r, now);
      for (const r of maxRows) if (r.n !== null) itemViews[withNonce[Number(r.i) - 1]!.i]!.nextNonce = BigInt(r.n) + 1n;
    }
    const velocity = req.velocity.map(() => ({ count: 0, value: 0n }));
    if (req.velocity.length > 0) {
      for (const r of take() as Array<{ i: string; count: string; value: string }>) {
        velocity[Number(r.i) - 1] = { count: Number(r.count), value: BigInt(r.value) };
      }
    }
    const out: ReserveView = { items: itemViews, velocity };
    if (req.batch) {
      const b = take()[0] as { items_hash: Buffer } | undefined;
      if (b) out.batch = { itemsHash: b.items_hash };
    }
    return out;
  };
  return { queries, view };
}

/**
 * The plan's writes as set statements. sqlite.ts applies them item by item; here consecutive
 * writes are grouped into segments that never touch the same nonce twice (for a sane plan:
 * one segment), and each segment runs as renew, insert requests, archive + replace nonces,
 * insert nonces, velocity. Within a segment that order gives the same end state as item by
 * item (a renewal that a replacement then overwrites ends the same either way).
 */
function writeQueries<T>(req: ReserveRequest, plan: ReservePlan<T>, now: number, lease: number): QueryConfig[] {
  const segments: Array<Array<{ it: ReserveItem; action: 'insert' | 'replaceNonce' | 'resume' }>> = [[]];
  let claimed = new Set<string>();
  for (const w of plan.writes) {
    const it = req.items[w.index];
    if (!it) throw new RangeError(`reserve plan writes item ${w.index}, but the request has ${req.items.length} items`);
    if (w.action !== 'resume' && it.nonce) {
      const key = JSON.stringify([it.nonce.account, it.nonce.chainId.toString(), it.nonce.nonce.toString()]);
      if (claimed.has(key)) {
        segments.push([]);
        claimed = new Set();
      }
      claimed.add(key);
    }
    segments.at(-1)!.push({ it, action: w.action });
  }

  const queries: QueryConfig[] = [];
  for (const seg of segments) {
    const resume = seg.filter((w) => w.action === 'resume').map((w) => w.it);
    const fresh = seg.filter((w) => w.action !== 'resume');
    const claims = (action: 'insert' | 'replaceNonce') =>
      fresh.filter((w) => w.action === action && w.it.nonce).map((w) => ({ it: w.it, n: w.it.nonce! }));
    const claimValues = (cs: ReturnType<typeof claims>) => [
      cs.map((c) => c.n.account),
      cs.map((c) => c.n.chainId.toString()),
      cs.map((c) => c.n.nonce.toString()),
      cs.map((c) => Buffer.from(c.it.payloadHash)),
      cs.map((c) => Buffer.from(c.n.intentHash)),
      cs.map((c) => c.n.maxFeePerGas.toString()),
      cs.map((c) => c.n.maxPriorityFeePerGas.toString()),
      cs.map((c) => c.it.client),
      cs.map((c) => c.it.requestId),
      lease,
    ];

    if (resume.length > 0) {
      const v = [resume.map((it) => it.client), resume.map((it) => it.requestId), lease];
      queries.push(q('renewRequests', v), q('renewNonces', v));
    }
    if (fresh.length === 0) continue;
    const its = fresh.map((w) => w.it);
    queries.push(
      q('insertRequests', [its.map((it) => it.client), its.map((it) => it.requestId), its.map((it) => it.keyId), its.map((it) => Buffer.from(it.payloadHash)), lease, now]),
    );
    const replaced = claims('replaceNonce');
    if (replaced.length > 0) {
      const v = claimValues(replaced);
      queries.push(q('archiveNonces', [v[0], v[1], v[2], now]), q('replaceNonces', v));
    }
    const inserted = claims('insert');
    if (inserted.length > 0) queries.push(q('insertNonces', claimValues(inserted)));
    // One row per (scope, subject) and statement: ON CONFLICT cannot update a row twice.
    const usage = new Map<string, { scope: string; subject: string; count: number; value: bigint }>();
    const add = (scope: string, subject: string, value: bigint) => {
      const k = JSON.stringify([scope, subject]);
      const u = usage.get(k) ?? { scope, subject, count: 0, value: 0n };
      u.count += 1;
      u.value += value;
      usage.set(k, u);
    };
    for (const it of its) {
      add('key', it.keyId, it.value);
      add('client', it.client, it.value);
    }
    const u = [...usage.values()];
    queries.push(q('addVelocity', [u.map((x) => x.scope), u.map((x) => x.subject), u.map((x) => x.count), u.map((x) => x.value.toString()), velocityBucket(now)]));
  }
  if (plan.batch && req.batch) {
    queries.push(q('insertBatch', [req.batch.client, req.batch.batchId, Buffer.from(plan.batch.itemsHash), now]));
  }
  return queries;
}

interface PolicyRow {
  name: string;
  version: number;
  document: string;
  updated_at: string;
  updated_by: string;
}

function keyValues(k: KeyRecord): unknown[] {
  return [
    k.keyId,
    k.version,
    k.algorithm,
    Buffer.from(k.ckaId),
    Buffer.from(k.publicKey),
    k.state,
    k.createdAt.getTime(),
    k.stateChangedAt.getTime(),
    k.retireAt?.getTime() ?? null,
    k.threshold ? JSON.stringify(k.threshold) : null,
  ];
}

function auditEntry(r: AuditRow): AuditEntry {
  return {
    seq: Number(r.seq),
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

function policyRecord(r: PolicyRow): PolicyRecord {
  return { name: r.name, version: r.version, document: r.document, updatedAt: new Date(Number(r.updated_at)), updatedBy: r.updated_by };
}

function requestRecord(r: RequestRow, now: number): RequestRecord {
  return {
    payloadHash: r.payload_hash,
    state: r.state,
    ...(r.result ? { result: r.result } : {}),
    leaseExpired: r.state === 'pending' && Number(r.lease_until) <= now,
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
