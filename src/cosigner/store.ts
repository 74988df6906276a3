import Database from 'better-sqlite3';
import type { ThresholdAlgorithm } from '../core/frost/suites.js';

const SCHEMA = `
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
CREATE TABLE IF NOT EXISTS claims (
  key_id       TEXT    NOT NULL,
  version      INTEGER NOT NULL,
  scope        TEXT    NOT NULL,
  payload_hash BLOB    NOT NULL,
  at           INTEGER NOT NULL,
  PRIMARY KEY (key_id, version, scope)
);`;

/** One sealed share: the ciphertext, and the public facts its AES-GCM additional data binds. */
export interface ShareRow {
  keyId: string;
  version: number;
  epoch: number;
  state: 'pending' | 'active';
  sessionId: string;
  algorithm: ThresholdAlgorithm;
  /** The coordinator's random group id (its key record's CKA_ID). */
  groupId: Uint8Array;
  /** FrostPublic as JSON. */
  publicPackage: string;
  /** seal() output: the share under this node's HSM AES key. */
  sealed: Uint8Array;
}

interface Row {
  key_id: string;
  version: number;
  epoch: number;
  state: 'pending' | 'active';
  session_id: string;
  algorithm: ThresholdAlgorithm;
  group_id: Buffer;
  public_package: string;
  sealed: Buffer;
}

const fromRow = (r: Row): ShareRow => ({
  keyId: r.key_id,
  version: r.version,
  epoch: r.epoch,
  state: r.state,
  sessionId: r.session_id,
  algorithm: r.algorithm,
  groupId: r.group_id,
  publicPackage: r.public_package,
  sealed: r.sealed,
});

/**
 * A cosigner's durable state: its sealed shares and its own replay records. secure_delete makes
 * SQLite overwrite deleted rows, so a refreshed-away share leaves no ciphertext in free pages.
 */
export class CosignerStore {
  private readonly db: Database.Database;

  constructor(path: string) {
    this.db = new Database(path);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = FULL');
    this.db.pragma('secure_delete = ON');
    this.db.exec(SCHEMA);
  }

  /** A finished ceremony's share, not yet signing until `finish` commits it. */
  putPending(s: Omit<ShareRow, 'state'>, at: Date): void {
    this.db
      .prepare(
        `INSERT INTO shares (key_id, version, epoch, state, session_id, algorithm, group_id, public_package, sealed, created_at)
         VALUES (?, ?, ?, 'pending', ?, ?, ?, ?, ?, ?)`,
      )
      .run(
        s.keyId,
        s.version,
        s.epoch,
        s.sessionId,
        s.algorithm,
        Buffer.from(s.groupId),
        s.publicPackage,
        Buffer.from(s.sealed),
        at.getTime(),
      );
  }

  /**
   * Commits a ceremony: its share becomes the one that signs and every other epoch of the key
   * version is deleted (the refreshed-away shares). Or discards the pending share. Returns the
   * committed share, or undefined when the session has no pending share.
   */
  finish(sessionId: string, commit: boolean): ShareRow | undefined {
    const out = this.db.transaction(() => {
      const row = this.db.prepare("SELECT * FROM shares WHERE session_id = ? AND state = 'pending'").get(sessionId) as
        | Row
        | undefined;
      if (!row) return undefined;
      if (!commit) {
        this.db.prepare('DELETE FROM shares WHERE session_id = ?').run(sessionId);
        return undefined;
      }
      this.db
        .prepare('DELETE FROM shares WHERE key_id = ? AND version = ? AND epoch <> ?')
        .run(row.key_id, row.version, row.epoch);
      this.db.prepare("UPDATE shares SET state = 'active' WHERE session_id = ?").run(sessionId);
      return fromRow({ ...row, state: 'active' });
    })();
    this.scrub();
    return out;
  }

  /**
   * secure_delete zeroes deleted rows in the new page versions, but with WAL the old versions
   * stay in the main file and the log until a checkpoint: force it, so a destroyed share's
   * ciphertext is gone from disk when the call returns.
   */
  private scrub(): void {
    this.db.pragma('wal_checkpoint(TRUNCATE)');
  }

  /** Drops pending shares of a key version whose ceremony never finished (a coordinator crash). */
  discardPending(keyId: string, version: number): void {
    if (
      this.db.prepare("DELETE FROM shares WHERE key_id = ? AND version = ? AND state = 'pending'").run(keyId, version)
        .changes
    )
      this.scrub();
  }

  active(keyId: string, version: number): ShareRow | undefined {
    const r = this.db
      .prepare("SELECT * FROM shares WHERE key_id = ? AND version = ? AND state = 'active'")
      .get(keyId, version) as Row | undefined;
    return r && fromRow(r);
  }

  /** Every stored share row, for tests and operators: ciphertext only. */
  all(): ShareRow[] {
    return (this.db.prepare('SELECT * FROM shares ORDER BY key_id, version, epoch').all() as Row[]).map(fromRow);
  }

  destroy(keyId: string, version: number): number {
    const n = this.db.prepare('DELETE FROM shares WHERE key_id = ? AND version = ?').run(keyId, version).changes;
    this.scrub();
    return n;
  }

  /**
   * Records that this payload (by hash) is the one signed under each scope ("req:<id>",
   * "nonce:<chain>:<n>"), in one transaction; returns the first scope already held by another
   * payload, or undefined when all are now this payload's.
   */
  claim(keyId: string, version: number, scopes: string[], payloadHash: Uint8Array, at: Date): string | undefined {
    return this.db.transaction(() => {
      const get = this.db.prepare('SELECT payload_hash FROM claims WHERE key_id = ? AND version = ? AND scope = ?');
      const put = this.db.prepare(
        'INSERT OR IGNORE INTO claims (key_id, version, scope, payload_hash, at) VALUES (?, ?, ?, ?, ?)',
      );
      for (const scope of scopes) {
        const held = get.get(keyId, version, scope) as { payload_hash: Buffer } | undefined;
        if (held && !held.payload_hash.equals(Buffer.from(payloadHash))) return scope;
      }
      for (const scope of scopes) put.run(keyId, version, scope, Buffer.from(payloadHash), at.getTime());
      return undefined;
    })();
  }

  /**
   * Forgets request-id records older than `before`; nonce records are kept for good (a nonce
   * must never get a second payload, however late the request).
   */
  pruneRequests(before: Date): number {
    return this.db.prepare("DELETE FROM claims WHERE scope LIKE 'req:%' AND at < ?").run(before.getTime()).changes;
  }

  close(): void {
    this.db.close();
  }
}
