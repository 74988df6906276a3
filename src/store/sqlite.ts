import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import type { Algorithm } from '../config/schema.js';
import { KeyExistsError, type KeyRecord, type KeyState, type Store } from './store.js';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS keys (
  key_id     TEXT    NOT NULL,
  version    INTEGER NOT NULL,
  algorithm  TEXT    NOT NULL,
  cka_id     BLOB    NOT NULL UNIQUE,
  public_key BLOB    NOT NULL,
  state      TEXT    NOT NULL,
  created_at INTEGER NOT NULL,
  PRIMARY KEY (key_id, version)
);`;

interface KeyRow {
  key_id: string;
  version: number;
  algorithm: string;
  cka_id: Buffer;
  public_key: Buffer;
  state: string;
  created_at: number;
}

/**
 * The embedded store. WAL with synchronous=FULL: a transaction is on stable storage when
 * commit returns, which is what "durable before the signature leaves" requires.
 */
export class SqliteStore implements Store {
  private readonly db: Database.Database;

  constructor(path: string) {
    mkdirSync(dirname(path), { recursive: true });
    this.db = new Database(path);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = FULL');
    this.db.pragma('busy_timeout = 5000');
    this.db.exec(SCHEMA);
  }

  async insertKey(k: KeyRecord): Promise<void> {
    try {
      this.db
        .prepare('INSERT INTO keys (key_id, version, algorithm, cka_id, public_key, state, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)')
        .run(k.keyId, k.version, k.algorithm, Buffer.from(k.ckaId), Buffer.from(k.publicKey), k.state, k.createdAt.getTime());
    } catch (e) {
      if ((e as { code?: string }).code?.startsWith('SQLITE_CONSTRAINT')) throw new KeyExistsError(`key ${k.keyId} v${k.version} exists`);
      throw e;
    }
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
    }));
  }

  async close(): Promise<void> {
    this.db.close();
  }
}
