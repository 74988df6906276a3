import Database from 'better-sqlite3';
import type { RecordedHead } from '../../core/audit/witness-check.js';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS latest (
  origin     TEXT    PRIMARY KEY,
  size       INTEGER NOT NULL CHECK (size >= 0),
  root       BLOB    NOT NULL CHECK (length(root) = 32),
  note       TEXT    NOT NULL,
  updated_at INTEGER NOT NULL
);`;

export interface LatestRow extends RecordedHead {
  /** The checkpoint note with the log's signature and this witness's cosignature. */
  readonly note: string;
}

/**
 * A witness's memory: per origin, the last checkpoint it cosigned. A witness that forgets is a
 * witness that can be made to cosign a fork, so this lives in the node's own SQLite file with
 * synchronous=FULL (a commit is on disk when `advance` returns), never in the signer's database.
 */
export class WitnessStore {
  private readonly db: Database.Database;

  constructor(path: string) {
    this.db = new Database(path);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = FULL');
    this.db.exec(SCHEMA);
  }

  latest(origin: string): LatestRow | undefined {
    const row = this.db.prepare('SELECT size, root, note FROM latest WHERE origin = ?').get(origin) as
      | { size: number; root: Buffer; note: string }
      | undefined;
    return row && { size: row.size, root: new Uint8Array(row.root), note: row.note };
  }

  /**
   * Records `next` as the latest for `origin` if the recorded size is still `fromSize` (0: none):
   * a compare-and-swap, so two concurrent requests checked against the same head cannot both
   * advance it. Returns false when another write got there first.
   */
  advance(origin: string, fromSize: number, next: LatestRow): boolean {
    const now = Date.now();
    const root = Buffer.from(next.root);
    if (fromSize === 0) {
      const r = this.db
        .prepare(
          `INSERT INTO latest (origin, size, root, note, updated_at) VALUES (?, ?, ?, ?, ?)
           ON CONFLICT (origin) DO UPDATE SET size = excluded.size, root = excluded.root, note = excluded.note,
             updated_at = excluded.updated_at WHERE latest.size = 0`,
        )
        .run(origin, next.size, root, next.note, now);
      return r.changes === 1;
    }
    const r = this.db
      .prepare('UPDATE latest SET size = ?, root = ?, note = ?, updated_at = ? WHERE origin = ? AND size = ?')
      .run(next.size, root, next.note, now, origin, fromSize);
    return r.changes === 1;
  }

  close(): void {
    this.db.close();
  }
}
