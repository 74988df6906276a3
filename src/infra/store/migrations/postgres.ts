import type { PoolClient } from 'pg';
import { migrateAuditTree } from '../postgres/audit-tree.js';
import { type Migration, pendingMigrations, requireV1 } from './migrations.js';

export interface PostgresMigration extends Migration {
  /** Runs inside the migration transaction. */
  up(c: PoolClient): Promise<void>;
}

/**
 * Schema version 1: the schema of the releases before versioning, as they created it. Same
 * tables and meaning as SQLite's. Identifiers are `COLLATE "C"` (byte order, like SQLite), times
 * are ms since the epoch, fees and velocity values NUMERIC(78,0) so that sums are exact.
 */
const V1 = `
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

/** Version 3: the admin quorum's tables. */
const ADMIN_QUORUM = `
CREATE TABLE proposals (
  id           TEXT COLLATE "C" PRIMARY KEY,
  kind         TEXT    NOT NULL,
  target       TEXT    NOT NULL,
  base_version INTEGER NOT NULL,
  document     TEXT    NOT NULL,
  proposed_by  TEXT    NOT NULL,
  proposed_at  BIGINT  NOT NULL,
  state        TEXT    NOT NULL,
  closed_at    BIGINT,
  closed_by    TEXT,
  note         TEXT
);
CREATE TABLE proposal_approvals (
  proposal_id TEXT COLLATE "C" NOT NULL REFERENCES proposals (id),
  admin       TEXT COLLATE "C" NOT NULL,
  signature   BYTEA   NOT NULL,
  approved_at BIGINT  NOT NULL,
  PRIMARY KEY (proposal_id, admin)
);
CREATE TABLE freezes (
  kind      TEXT COLLATE "C" NOT NULL,
  target    TEXT COLLATE "C" NOT NULL,
  frozen_at BIGINT  NOT NULL,
  frozen_by TEXT    NOT NULL,
  PRIMARY KEY (kind, target)
);`;

/** PostgreSQL's migrations, version N at index N - 1. Forward-only: never edit a released one. */
export const POSTGRES_MIGRATIONS: readonly PostgresMigration[] = [
  {
    version: 1,
    name: 'initial',
    async up(c) {
      requireV1(await shape(c), { before: true });
      await c.query(V1);
      requireV1(await shape(c));
    },
  },
  {
    version: 2,
    name: 'audit merkle tree',
    // The RFC 9162 tree over the log (node table, frontier row, signed notes); a log from before
    // this version gets its tree built here from the stored entries.
    up: migrateAuditTree,
  },
  {
    version: 3,
    name: 'threshold ceremonies',
    // A DKG or refresh in progress, written before any cosigner changes state, so a restarted
    // signer resumes or rolls it back (src/signer/threshold/recovery.ts). One per key version.
    async up(c) {
      await c.query(`CREATE TABLE ceremonies (
        session_id   TEXT    PRIMARY KEY,
        key_id       TEXT    NOT NULL,
        version      INTEGER NOT NULL,
        kind         TEXT    NOT NULL CHECK (kind IN ('dkg', 'refresh')),
        participants TEXT    NOT NULL,
        step         TEXT    NOT NULL CHECK (step IN ('started', 'prepared')),
        plan         TEXT    NOT NULL,
        started_at   BIGINT  NOT NULL,
        UNIQUE (key_id, version)
      )`);
    },
  },
  {
    version: 4,
    name: 'audit request signatures',
    // The client's signed request of sign and batch entries (AuditEntry.request); NULL in older rows.
    async up(c) {
      await c.query('ALTER TABLE audit ADD COLUMN IF NOT EXISTS request TEXT');
    },
  },
  {
    version: 5,
    name: 'admin quorum',
    // Proposals only a quorum of admins closes, their signed approvals, and single-admin freezes.
    async up(c) {
      await c.query(ADMIN_QUORUM);
    },
  },
  {
    version: 6,
    name: 'attempt ids and token velocity',
    // As in sqlite.ts: the attempt that owns a pending request, and ERC-20 velocity per token.
    async up(c) {
      await c.query(`ALTER TABLE requests ADD COLUMN attempt TEXT COLLATE "C";
CREATE TABLE token_velocity (
  scope   TEXT COLLATE "C" NOT NULL,
  subject TEXT COLLATE "C" NOT NULL,
  token   TEXT COLLATE "C" NOT NULL,
  bucket  BIGINT  NOT NULL,
  count   BIGINT  NOT NULL,
  amount  NUMERIC(78,0) NOT NULL,
  PRIMARY KEY (scope, subject, token, bucket)
);`);
    },
  },
  {
    version: 7,
    name: 'access versions',
    // As in sqlite.ts: the access document's versions, changed only by the admin quorum.
    async up(c) {
      await c.query(`CREATE TABLE access_versions (
  version    INTEGER PRIMARY KEY,
  document   TEXT    NOT NULL,
  updated_at BIGINT  NOT NULL,
  updated_by TEXT    NOT NULL
)`);
    },
  },
];

/** Table -> columns of the schema the connection works in. */
async function shape(c: PoolClient): Promise<Map<string, Set<string>>> {
  const { rows } = await c.query<{ table_name: string; column_name: string }>(
    'SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = current_schema()',
  );
  const columns = new Map<string, Set<string>>();
  for (const r of rows) columns.set(r.table_name, (columns.get(r.table_name) ?? new Set()).add(r.column_name));
  return columns;
}

/** pg_advisory_xact_lock key that serialises the migrations of replicas starting together. */
const SCHEMA_LOCK = '7526231390315488613'; // "hsmsigsc"

/**
 * Brings the database to the latest schema version. MUST run inside a transaction (PostgreSQL
 * DDL is transactional: a failed migration leaves nothing behind); the advisory lock taken first
 * makes replicas that start at once migrate one after the other, the later ones finding nothing
 * pending.
 */
export async function migratePostgres(c: PoolClient, now = Date.now()): Promise<void> {
  await c.query({ text: 'SELECT pg_advisory_xact_lock($1::bigint)', values: [SCHEMA_LOCK] });
  await c.query(`CREATE TABLE IF NOT EXISTS schema_version (
    version    INTEGER PRIMARY KEY,
    name       TEXT    NOT NULL,
    applied_at BIGINT  NOT NULL
  )`);
  const { rows } = await c.query<{ v: number }>('SELECT coalesce(max(version), 0)::int AS v FROM schema_version');
  for (const m of pendingMigrations(POSTGRES_MIGRATIONS, rows[0]!.v)) {
    await m.up(c);
    const record = 'INSERT INTO schema_version (version, name, applied_at) VALUES ($1, $2, $3)';
    await c.query({ text: record, values: [m.version, m.name, now] });
  }
}
