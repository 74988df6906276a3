/**
 * A database writer attacking the audit log: opens the signer's SQLite file directly (while the
 * signer runs or between runs) and rewrites it the way an attacker with write access would,
 * recomputing every hash the database holds (chain hashes, Merkle nodes, the frontier row) so
 * the store's own data stays self-consistent. Only what is kept outside the database (the
 * checkpointer's frontier, checkpoints an auditor kept) can tell.
 */
import Database from 'better-sqlite3';
import { type AuditEntry, entryHash, GENESIS } from '../src/core/audit/chain.js';
import { EMPTY_FRONTIER, encodeFrontier, treeAppend } from '../src/infra/store/audit-tree-codec.js';
import { type AuditRow, auditEntry } from '../src/infra/store/codecs.js';

/** An audit row as the file holds it, read back with the store's own codec. */
export type Row = AuditRow;

/** `rows` with entry `seq` edited and every chain hash from it on recomputed. */
export function rechain(rows: readonly Row[], seq: number, edit: Partial<AuditEntry>): AuditEntry[] {
  let prev = GENESIS;
  return rows.map((r) => {
    const e = auditEntry(r);
    const edited = { ...e, ...(e.seq === seq ? edit : {}), prevHash: prev };
    const { hash: _h, ...body } = edited;
    prev = entryHash(body);
    return { ...edited, hash: prev };
  });
}

/** Runs `fn` on the signer's database file, as another process would (busy-waits for the lock). */
export function withDb<T>(path: string, fn: (db: Database.Database) => T): T {
  const db = new Database(path, { timeout: 10_000 });
  try {
    return db.transaction(() => fn(db)).immediate();
  } finally {
    db.close();
  }
}

/** DELETE FROM audit WHERE seq > n: the tail cut (nodes and frontier left as they were). */
export function cutTail(path: string, n: number): number {
  return withDb(path, (db) => db.prepare('DELETE FROM audit WHERE seq > ?').run(n).changes);
}

/**
 * Rewrites entry `seq` with `edit`, recomputes the chain hashes of it and every later entry, the
 * whole Merkle tree and its frontier row, and deletes the checkpoints and notes from `seq` on:
 * a rewrite nothing inside the database contradicts.
 */
export function rewriteHistory(path: string, seq: number, edit: Partial<AuditEntry>): void {
  withDb(path, (db) => {
    const rows = db.prepare('SELECT * FROM audit ORDER BY seq').all() as Row[];
    const update = db.prepare('UPDATE audit SET client = ?, reason = ?, prev_hash = ?, hash = ? WHERE seq = ?');
    const entries = rechain(rows, seq, edit);
    for (const e of entries) if (e.seq >= seq) update.run(e.client, e.reason, e.prevHash, e.hash, e.seq);
    rebuildTree(db, entries);
    db.prepare('DELETE FROM audit_checkpoints WHERE seq >= ?').run(seq);
    db.prepare('DELETE FROM audit_notes WHERE size >= ?').run(seq);
  });
}

/** Rewrites the tree tables from `entries` as an honest append of all of them would have. */
export function rebuildTree(db: Database.Database, entries: readonly AuditEntry[]): void {
  const { nodes, frontier } = treeAppend(EMPTY_FRONTIER, entries);
  db.prepare('DELETE FROM audit_nodes').run();
  const put = db.prepare('INSERT INTO audit_nodes (level, idx, hash) VALUES (?, ?, ?)');
  for (const n of nodes) put.run(n.level, n.index, Buffer.from(n.hash));
  db.prepare('UPDATE audit_tree SET size = ?, frontier = ?').run(frontier.size, encodeFrontier(frontier));
}

/** Every entry as stored. */
export function entries(path: string): AuditEntry[] {
  return withDb(path, (db) => (db.prepare('SELECT * FROM audit ORDER BY seq').all() as Row[]).map(auditEntry));
}
