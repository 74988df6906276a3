import type Database from 'better-sqlite3';
import { type AuditRow, auditEntry } from '../codecs.js';
import { SqliteAuditTree } from '../sqlite-audit-tree.js';
import { type Migration, pendingMigrations, requireV1, V1_ADDED_KEY_COLUMNS } from './migrations.js';

export interface SqliteMigration extends Migration {
  /** Runs inside the migration transaction. */
  up(db: Database.Database): void;
}

/** Schema version 1: the schema of the releases before versioning, as they created it. */
const V1 = `
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

/** Types of the key columns added after the first release (SQLite has no ADD COLUMN IF NOT EXISTS). */
const ADDED_TYPES: Record<(typeof V1_ADDED_KEY_COLUMNS)[number], string> = {
  state_changed_at: 'INTEGER',
  retire_at: 'INTEGER',
  threshold: 'TEXT',
};

/** Version 3: the admin quorum's tables. */
const ADMIN_QUORUM = `
CREATE TABLE proposals (
  id           TEXT    PRIMARY KEY,
  kind         TEXT    NOT NULL,
  target       TEXT    NOT NULL,
  base_version INTEGER NOT NULL,
  document     TEXT    NOT NULL,
  proposed_by  TEXT    NOT NULL,
  proposed_at  INTEGER NOT NULL,
  state        TEXT    NOT NULL,
  closed_at    INTEGER,
  closed_by    TEXT,
  note         TEXT
);
CREATE TABLE proposal_approvals (
  proposal_id TEXT    NOT NULL REFERENCES proposals (id),
  admin       TEXT    NOT NULL,
  signature   BLOB    NOT NULL,
  approved_at INTEGER NOT NULL,
  PRIMARY KEY (proposal_id, admin)
);
CREATE TABLE freezes (
  kind      TEXT    NOT NULL,
  target    TEXT    NOT NULL,
  frozen_at INTEGER NOT NULL,
  frozen_by TEXT    NOT NULL,
  PRIMARY KEY (kind, target)
);`;

/** SQLite's migrations, version N at index N - 1. Forward-only: never edit a released one. */
export const SQLITE_MIGRATIONS: readonly SqliteMigration[] = [
  {
    version: 1,
    name: 'initial',
    up(db) {
      const shape = () => new Map(tables(db).map((t) => [t, columnsOf(db, t)]));
      requireV1(shape(), { before: true });
      db.exec(V1);
      const keyColumns = columnsOf(db, 'keys');
      for (const name of V1_ADDED_KEY_COLUMNS) {
        if (!keyColumns.has(name)) db.exec(`ALTER TABLE keys ADD COLUMN ${name} ${ADDED_TYPES[name]}`);
      }
      requireV1(shape());
    },
  },
  {
    version: 2,
    name: 'audit merkle tree',
    // The RFC 9162 tree over the log (node table, frontier row, signed notes); a log from before
    // this version gets its tree built here from the stored entries.
    up(db) {
      const read = db.prepare('SELECT * FROM audit WHERE seq >= ? ORDER BY seq LIMIT ?');
      SqliteAuditTree.migrate(db, (from, limit) => (read.all(from, limit) as AuditRow[]).map(auditEntry));
    },
  },
  {
    version: 3,
    name: 'threshold ceremonies',
    // A DKG or refresh in progress, written before any cosigner changes state, so a restarted
    // signer resumes or rolls it back (src/signer/threshold/recovery.ts). One per key version.
    up(db) {
      db.exec(CEREMONIES);
    },
  },
  {
    version: 4,
    name: 'audit request signatures',
    // The client's signed request of sign and batch entries (AuditEntry.request); NULL in older rows.
    up(db) {
      db.exec('ALTER TABLE audit ADD COLUMN request TEXT');
    },
  },
  {
    version: 5,
    name: 'admin quorum',
    // Proposals only a quorum of admins closes, their signed approvals, and single-admin freezes.
    up(db) {
      db.exec(ADMIN_QUORUM);
    },
  },
  {
    version: 6,
    name: 'attempt ids and token velocity',
    // requests.attempt: which reservation (first or a lease takeover) owns a pending record, so
    // a late completion of an earlier attempt cannot overwrite it. token_velocity: ERC-20
    // amounts per (scope, subject, token contract) in the velocity buckets.
    up(db) {
      db.exec(`ALTER TABLE requests ADD COLUMN attempt TEXT;
CREATE TABLE token_velocity (
  scope   TEXT    NOT NULL,
  subject TEXT    NOT NULL,
  token   TEXT    NOT NULL,
  bucket  INTEGER NOT NULL,
  count   INTEGER NOT NULL,
  amount  TEXT    NOT NULL,
  PRIMARY KEY (scope, subject, token, bucket)
);`);
    },
  },
  {
    version: 7,
    name: 'access versions',
    // Clients, roles, pins, request keys and key access as versioned documents the admin quorum
    // changes (core/admin/access.ts); the config file seeds version 1.
    up(db) {
      db.exec(`CREATE TABLE access_versions (
  version    INTEGER PRIMARY KEY,
  document   TEXT    NOT NULL,
  updated_at INTEGER NOT NULL,
  updated_by TEXT    NOT NULL
)`);
    },
  },
];

const CEREMONIES = `
CREATE TABLE ceremonies (
  session_id   TEXT    PRIMARY KEY,
  key_id       TEXT    NOT NULL,
  version      INTEGER NOT NULL,
  kind         TEXT    NOT NULL CHECK (kind IN ('dkg', 'refresh')),
  participants TEXT    NOT NULL,
  step         TEXT    NOT NULL CHECK (step IN ('started', 'prepared')),
  plan         TEXT    NOT NULL,
  started_at   INTEGER NOT NULL,
  UNIQUE (key_id, version)
)`;

function tables(db: Database.Database): string[] {
  const rows = db.prepare("SELECT name FROM sqlite_schema WHERE type = 'table'").all() as Array<{ name: string }>;
  return rows.map((r) => r.name);
}

function columnsOf(db: Database.Database, table: string): Set<string> {
  const rows = db.prepare(`PRAGMA table_info(${JSON.stringify(table)})`).all() as Array<{ name: string }>;
  return new Set(rows.map((c) => c.name));
}

/**
 * Brings the database to the latest schema version: the pending migrations and their
 * schema_version rows in one IMMEDIATE transaction, so two processes opening one file at once
 * migrate it once (the second waits for the write lock, then finds nothing pending).
 */
export function migrateSqlite(db: Database.Database, now = Date.now()): void {
  applySqliteMigrations(db, SQLITE_MIGRATIONS, now);
}

/** Applies `list`'s pending migrations as migrateSqlite does (the cosigner's store has a list too). */
export function applySqliteMigrations(db: Database.Database, list: readonly SqliteMigration[], now: number): void {
  db.transaction(() => {
    db.exec(`CREATE TABLE IF NOT EXISTS schema_version (
      version    INTEGER PRIMARY KEY,
      name       TEXT    NOT NULL,
      applied_at INTEGER NOT NULL
    )`);
    const { v } = db.prepare('SELECT coalesce(max(version), 0) AS v FROM schema_version').get() as { v: number };
    const record = db.prepare('INSERT INTO schema_version (version, name, applied_at) VALUES (?, ?, ?)');
    for (const m of pendingMigrations(list, v)) {
      m.up(db);
      record.run(m.version, m.name, now);
    }
  }).immediate();
}
