import Database from 'better-sqlite3';
import type { ThresholdAlgorithm } from '../core/frost/suites.js';
import { WalSync } from '../infra/store/sqlite/wal-sync.js';
import { DestroyOrders } from './destroy-store.js';
import { migrateCosigner } from './migrations.js';
import { CosignerRecords } from './records.js';

/**
 * Makes `db.prepare` return one statement per SQL text for the connection's life: every share
 * runs the same dozen statements, and preparing them again each time was ~4% of a cosigner's
 * busy time. The SQL texts are constants (a few with a placeholder count), so the map stays
 * small. A statement is only run with get/run/all here, never iterated, so sharing one is safe.
 */
function preparedOnce(db: Database.Database): void {
  const prepare = db.prepare.bind(db);
  const statements = new Map<string, Database.Statement>();
  db.prepare = ((sql: string) => {
    let st = statements.get(sql);
    if (!st) {
      st = prepare(sql);
      statements.set(sql, st);
    }
    return st;
  }) as typeof db.prepare;
}

/** Where one ceremony stands on this cosigner. */
export type CeremonyState = 'running' | 'pending' | 'committed' | 'discarded';

/** What `finish` did: committed (the row now signs), discarded, or nothing pending for the session. */
export type FinishOutcome = { done: 'committed'; row: ShareRow } | { done: 'discarded' } | { done: 'not-pending' };

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
 * Its tables (these, the orders' and the records') are made by migrations.ts.
 */
export class CosignerStore {
  private readonly db: Database.Database;
  /** The admin quorum's orders to destroy shares (destroy-store.ts). */
  readonly orders: DestroyOrders;
  /** Grants, policy floors and the audit log, on this connection (one transaction with claims). */
  readonly records: CosignerRecords;

  constructor(path: string) {
    this.db = new Database(path);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = FULL');
    this.db.pragma('secure_delete = ON');
    // Tables come from the numbered migrations (migrations.ts); a store newer than this build
    // is refused before anything reads or writes it.
    try {
      migrateCosigner(this.db);
    } catch (e) {
      this.db.close();
      throw new Error(`cosigner store ${path}: ${(e as Error).message}`);
    }
    preparedOnce(this.db);
    this.orders = new DestroyOrders(this.db, () => this.scrub());
    // Grants commit without SQLite's fsync and are synced off the event loop before their shares
    // leave (records.ts `together`); every other write here keeps synchronous=FULL.
    this.records = new CosignerRecords(this.db, new WalSync(`${path}-wal`));
    // A ceremony's rounds live in memory: those that were running when this process stopped
    // cannot go on (their pending shares, if any, stay until the coordinator commits or drops them).
    this.db
      .prepare("UPDATE ceremonies SET state = 'discarded', updated_at = ? WHERE state = 'running'")
      .run(Date.now());
  }

  /**
   * Records a new ceremony before any of its state exists here. Refused (returns why) when the
   * session id was used before, or another ceremony of the same key version is running (younger
   * than `ttlMs`) or holds a pending share: a second DKG or refresh never replaces the first's.
   */
  beginCeremony(
    c: { sessionId: string; keyId: string; version: number; kind: string; epoch: number },
    at: Date,
    ttlMs: number,
  ): 'ok' | 'session-used' | { busy: string } {
    return this.db.transaction(() => {
      if (this.db.prepare('SELECT 1 FROM ceremonies WHERE session_id = ?').get(c.sessionId)) return 'session-used';
      const busy = this.db
        .prepare(
          `SELECT session_id FROM ceremonies WHERE key_id = ? AND version = ?
           AND (state = 'pending' OR (state = 'running' AND updated_at > ?))`,
        )
        .get(c.keyId, c.version, at.getTime() - ttlMs) as { session_id: string } | undefined;
      if (busy) return { busy: busy.session_id };
      this.db
        .prepare(
          `INSERT INTO ceremonies (session_id, key_id, version, kind, epoch, state, started_at, updated_at)
           VALUES (?, ?, ?, ?, ?, 'running', ?, ?)`,
        )
        .run(c.sessionId, c.keyId, c.version, c.kind, c.epoch, at.getTime(), at.getTime());
      return 'ok' as const;
    })();
  }

  /** A ceremony's state here, or undefined when this cosigner never saw it. */
  ceremonyState(sessionId: string): CeremonyState | undefined {
    const r = this.db.prepare('SELECT state FROM ceremonies WHERE session_id = ?').get(sessionId) as
      | { state: CeremonyState }
      | undefined;
    return r?.state;
  }

  /** A running ceremony that failed here: it can no longer go on. */
  abandonCeremony(sessionId: string): void {
    this.db
      .prepare("UPDATE ceremonies SET state = 'discarded', updated_at = ? WHERE session_id = ? AND state = 'running'")
      .run(Date.now(), sessionId);
  }

  /** A finished ceremony's share, not yet signing until `finish` commits it. */
  putPending(s: Omit<ShareRow, 'state'>, at: Date): void {
    this.db.transaction(() => {
      const moved = this.db
        .prepare("UPDATE ceremonies SET state = 'pending', updated_at = ? WHERE session_id = ? AND state = 'running'")
        .run(at.getTime(), s.sessionId);
      if (moved.changes !== 1) throw new Error(`ceremony ${s.sessionId} is not running here`);
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
    })();
  }

  /**
   * Commits a ceremony: its pending share becomes the one that signs and every other epoch of
   * the key version is deleted (the refreshed-away shares). Or discards the session's pending
   * share (or its running rounds). Only this session's rows are touched; `not-pending` when the
   * session has nothing to commit (or discard) here.
   */
  finish(sessionId: string, commit: boolean): FinishOutcome {
    const now = Date.now();
    const out = this.db.transaction((): FinishOutcome => {
      const row = this.db.prepare("SELECT * FROM shares WHERE session_id = ? AND state = 'pending'").get(sessionId) as
        | Row
        | undefined;
      const mark = (state: CeremonyState, from: CeremonyState[]) =>
        this.db
          .prepare(
            `UPDATE ceremonies SET state = ?, updated_at = ? WHERE session_id = ?
             AND state IN (${from.map(() => '?').join(', ')})`,
          )
          .run(state, now, sessionId, ...from).changes;
      if (!commit) {
        if (row) this.db.prepare("DELETE FROM shares WHERE session_id = ? AND state = 'pending'").run(sessionId);
        return mark('discarded', ['running', 'pending']) || row ? { done: 'discarded' } : { done: 'not-pending' };
      }
      if (!row) return { done: 'not-pending' };
      this.db
        .prepare('DELETE FROM shares WHERE key_id = ? AND version = ? AND epoch <> ?')
        .run(row.key_id, row.version, row.epoch);
      this.db.prepare("UPDATE shares SET state = 'active' WHERE session_id = ?").run(sessionId);
      mark('committed', ['pending']);
      return { done: 'committed', row: fromRow({ ...row, state: 'active' }) };
    })();
    if (out.done !== 'not-pending') this.scrub();
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

  /** The pending share of a session, if it has one here. */
  pendingOf(sessionId: string): ShareRow | undefined {
    const r = this.db.prepare("SELECT * FROM shares WHERE session_id = ? AND state = 'pending'").get(sessionId) as
      | Row
      | undefined;
    return r && fromRow(r);
  }

  /**
   * A ceremony's cleanup: removes that session's share of the key version only while it is
   * pending (never committed). `committed` when the session's share signs here: removing that
   * takes the quorum's order (`orders.schedule`), never a session id.
   */
  discardSession(keyId: string, version: number, sessionId: string): number | 'committed' {
    const out = this.db.transaction(() => {
      const where = 'key_id = ? AND version = ? AND session_id = ?';
      if (this.db.prepare(`SELECT 1 FROM shares WHERE ${where} AND state <> 'pending'`).get(keyId, version, sessionId))
        return 'committed' as const;
      return this.db.prepare(`DELETE FROM shares WHERE ${where} AND state = 'pending'`).run(keyId, version, sessionId)
        .changes;
    })();
    if (out !== 'committed') this.scrub();
    return out;
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
    void this.records.close();
    this.db.close();
  }
}
