import type Database from 'better-sqlite3';
import { applySqliteMigrations, type SqliteMigration } from '../infra/store/migrations/sqlite.js';

/**
 * The cosigner store's numbered, forward-only migrations, run by the signer's SQLite runner
 * (src/infra/store/migrations/, same rules): version N is the N-th entry, each applied version
 * is a `schema_version` row written in the migration's own transaction, a store newer than this
 * build is refused, and a released migration is never edited (changes are new entries at the end).
 */

/**
 * Schema version 1: the tables of the releases before versioning, as they created them (each
 * with CREATE ... IF NOT EXISTS, tables added over releases, never a column). A store those
 * releases made holds some of them: migration 1 adds the missing ones and keeps every row.
 */
const V1 = `
CREATE TABLE IF NOT EXISTS shares (
  key_id         TEXT    NOT NULL,
  version        INTEGER NOT NULL,
  epoch          INTEGER NOT NULL,
  state          TEXT    NOT NULL CHECK (state IN ('pending', 'active')),
  session_id     TEXT    NOT NULL UNIQUE,
  algorithm      TEXT    NOT NULL,
  group_id       BLOB    NOT NULL,
  public_package TEXT    NOT NULL,
  sealed         BLOB    NOT NULL,
  created_at     INTEGER NOT NULL,
  PRIMARY KEY (key_id, version, epoch)
);
CREATE TABLE IF NOT EXISTS ceremonies (
  session_id TEXT    PRIMARY KEY,
  key_id     TEXT    NOT NULL,
  version    INTEGER NOT NULL,
  kind       TEXT    NOT NULL,
  epoch      INTEGER NOT NULL,
  state      TEXT    NOT NULL CHECK (state IN ('running', 'pending', 'committed', 'discarded')),
  started_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS ceremonies_key ON ceremonies (key_id, version, state);
CREATE TABLE IF NOT EXISTS claims (
  key_id       TEXT    NOT NULL,
  version      INTEGER NOT NULL,
  scope        TEXT    NOT NULL,
  payload_hash BLOB    NOT NULL,
  at           INTEGER NOT NULL,
  PRIMARY KEY (key_id, version, scope)
);
CREATE TABLE IF NOT EXISTS share_destroys (
  proposal_id TEXT    PRIMARY KEY,
  key_id      TEXT    NOT NULL,
  version     INTEGER NOT NULL,
  state       TEXT    NOT NULL CHECK (state IN ('scheduled', 'cancelled', 'done')),
  approvals   TEXT    NOT NULL,
  ordered_at  INTEGER NOT NULL,
  due_at      INTEGER NOT NULL,
  closed_at   INTEGER,
  closed_by   TEXT
);
CREATE INDEX IF NOT EXISTS share_destroys_key ON share_destroys (key_id, version, state);
CREATE TABLE IF NOT EXISTS share_grants (
  key_id     TEXT    NOT NULL,
  client     TEXT    NOT NULL,
  request_id TEXT    NOT NULL,
  at         INTEGER NOT NULL,
  PRIMARY KEY (key_id, client, request_id)
);
CREATE INDEX IF NOT EXISTS share_grants_at ON share_grants (at);
CREATE TABLE IF NOT EXISTS policy_floors (
  name    TEXT    PRIMARY KEY,
  version INTEGER NOT NULL,
  at      INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS key_policies (
  key_id  TEXT    PRIMARY KEY,
  policy  TEXT    NOT NULL,
  rank    INTEGER NOT NULL,
  at      INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS cosigner_audit (
  seq       INTEGER PRIMARY KEY,
  at        TEXT    NOT NULL,
  kind      TEXT    NOT NULL,
  details   TEXT    NOT NULL,
  prev_hash TEXT    NOT NULL,
  hash      TEXT    NOT NULL
);`;

/** Tables and columns of version 1 (what migration 1 checks before and after it runs). */
const V1_TABLES: Record<string, readonly string[]> = {
  shares: [
    'key_id',
    'version',
    'epoch',
    'state',
    'session_id',
    'algorithm',
    'group_id',
    'public_package',
    'sealed',
    'created_at',
  ],
  ceremonies: ['session_id', 'key_id', 'version', 'kind', 'epoch', 'state', 'started_at', 'updated_at'],
  claims: ['key_id', 'version', 'scope', 'payload_hash', 'at'],
  share_destroys: [
    'proposal_id',
    'key_id',
    'version',
    'state',
    'approvals',
    'ordered_at',
    'due_at',
    'closed_at',
    'closed_by',
  ],
  share_grants: ['key_id', 'client', 'request_id', 'at'],
  policy_floors: ['name', 'version', 'at'],
  key_policies: ['key_id', 'policy', 'rank', 'at'],
  cosigner_audit: ['seq', 'at', 'kind', 'details', 'prev_hash', 'hash'],
};

/** Throws naming what is missing; `before`: only the tables the store already has are checked. */
function requireV1(db: Database.Database, before: boolean): void {
  const missing: string[] = [];
  for (const [table, cols] of Object.entries(V1_TABLES)) {
    const rows = db.prepare(`PRAGMA table_info(${JSON.stringify(table)})`).all() as Array<{ name: string }>;
    if (before && rows.length === 0) continue;
    const have = new Set(rows.map((r) => r.name));
    for (const c of cols) if (!have.has(c)) missing.push(`${table}.${c}`);
  }
  if (missing.length > 0) {
    throw new Error(
      `the cosigner store has tables of another shape than schema version 1 (missing ${missing.join(', ')}): not opened`,
    );
  }
}

export const COSIGNER_MIGRATIONS: readonly SqliteMigration[] = [
  {
    version: 1,
    name: 'initial',
    up(db) {
      requireV1(db, true);
      db.exec(V1);
      requireV1(db, false);
    },
  },
];

/**
 * Brings a cosigner store to the latest schema version: the pending migrations and their
 * schema_version rows in one IMMEDIATE transaction (a second process opening the file waits,
 * then finds nothing pending). Throws, changing nothing, for a store newer than this build.
 */
export function migrateCosigner(db: Database.Database, now = Date.now()): void {
  applySqliteMigrations(db, COSIGNER_MIGRATIONS, now);
}
