/**
 * The audit Merkle tree in SQLite (audit-tree.ts): perfect-subtree nodes by (level, idx), the
 * frontier in one row, and the signed checkpoint notes. Appends run inside the audit append's
 * transaction (same write lock, same commit); reads are O(log n) primary-key lookups.
 */
import type Database from 'better-sqlite3';
import type { AuditEntry } from '../../core/audit/chain.js';
import { frontierRoot, type NodeId } from '../../core/audit/merkle.js';
import type { StoredNote } from './audit-tree.js';
import { decodeFrontier, EMPTY_FRONTIER, encodeFrontier, treeAppend, treeReads } from './audit-tree-codec.js';

/** The tables; `audit_tree` holds one row (id 1): the tree's size and frontier. */
export const SQLITE_AUDIT_TREE_DDL = `
CREATE TABLE IF NOT EXISTS audit_nodes (
  level INTEGER NOT NULL,
  idx   INTEGER NOT NULL,
  hash  BLOB    NOT NULL,
  PRIMARY KEY (level, idx)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS audit_tree (
  id       INTEGER PRIMARY KEY CHECK (id = 1),
  size     INTEGER NOT NULL,
  frontier BLOB    NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_notes (
  size INTEGER PRIMARY KEY,
  note TEXT    NOT NULL,
  at   TEXT    NOT NULL
);`;

/** Entries per transaction-internal batch when building the tree of an existing log. */
const BUILD_BATCH = 10_000;

export class SqliteAuditTree {
  private readonly q;
  readonly reads = treeReads(this);

  constructor(db: Database.Database) {
    this.q = {
      tree: db.prepare('SELECT size, frontier FROM audit_tree WHERE id = 1'),
      setTree: db.prepare(
        'INSERT INTO audit_tree (id, size, frontier) VALUES (1, ?, ?) ON CONFLICT (id) DO UPDATE SET size = excluded.size, frontier = excluded.frontier',
      ),
      // A plain INSERT: a node that exists means the tree and the log disagree; fail the append.
      putNode: db.prepare('INSERT INTO audit_nodes (level, idx, hash) VALUES (?, ?, ?)'),
      node: db.prepare('SELECT hash FROM audit_nodes WHERE level = ? AND idx = ?').pluck(),
      putNote: db.prepare('INSERT INTO audit_notes (size, note, at) VALUES (?, ?, ?) ON CONFLICT (size) DO NOTHING'),
      latestNote: db.prepare('SELECT size, note, at FROM audit_notes ORDER BY size DESC LIMIT 1'),
      noteAt: db.prepare('SELECT size, note, at FROM audit_notes WHERE size = ?'),
      noteFrom: db.prepare('SELECT size, note, at FROM audit_notes WHERE size >= ? ORDER BY size LIMIT 1'),
      replaceNote: db.prepare('UPDATE audit_notes SET note = ? WHERE size = ?'),
    };
  }

  /**
   * Creates the tables and, for a log from before them, builds the tree from the stored entries
   * (`entries` reads them in seq order). Runs inside the caller's migration transaction.
   */
  static migrate(db: Database.Database, entries: (fromSeq: number, limit: number) => AuditEntry[]): void {
    db.exec(SQLITE_AUDIT_TREE_DDL);
    const tree = new SqliteAuditTree(db);
    if (tree.q.tree.get()) return;
    let frontier = EMPTY_FRONTIER;
    for (let batch = entries(1, BUILD_BATCH); batch.length > 0; batch = entries(frontier.size + 1, BUILD_BATCH)) {
      const r = treeAppend(frontier, batch);
      for (const n of r.nodes) tree.q.putNode.run(n.level, n.index, Buffer.from(n.hash));
      frontier = r.frontier;
    }
    tree.q.setTree.run(frontier.size, encodeFrontier(frontier));
  }

  /** Adds `entries` (just inserted, seq size+1...; `leaves`: their leaf hashes) to the tree; inside the append transaction. */
  append(entries: readonly AuditEntry[], leaves?: readonly Uint8Array[]): void {
    if (entries.length === 0) return;
    const row = this.q.tree.get() as { size: number; frontier: Buffer } | undefined;
    if (!row) throw new Error('audit tree: no tree row (the migration did not run)');
    const { nodes, frontier } = treeAppend(decodeFrontier(row.size, row.frontier), entries, leaves);
    for (const n of nodes) this.q.putNode.run(n.level, n.index, Buffer.from(n.hash));
    this.q.setTree.run(frontier.size, encodeFrontier(frontier));
  }

  async readNodes(ids: readonly NodeId[]): Promise<readonly Uint8Array[]> {
    return ids.map((id) => {
      const h = this.q.node.get(id.level, id.index) as Buffer | undefined;
      if (!h) throw new Error(`audit tree: no node ${id.level}/${id.index}`);
      return new Uint8Array(h);
    });
  }

  /** Nodes for a size beyond the tree would be missing anyway; say so plainly. */
  checkSize(size: number): void {
    const row = this.q.tree.get() as { size: number } | undefined;
    if (size > (row?.size ?? 0))
      throw new Error(`audit tree: size ${size} is beyond the tree's ${row?.size ?? 0} entries`);
  }

  /**
   * The head at `size`. The head of the whole tree (what the rollback mark records at every
   * release) folds the stored frontier, which holds exactly the nodes a head of that size reads,
   * so it costs one row instead of a read per node; an older size reads its nodes.
   */
  treeHead(size: number): Promise<Uint8Array> {
    const row = this.q.tree.get() as { size: number; frontier: Buffer } | undefined;
    if (size > (row?.size ?? 0))
      throw new Error(`audit tree: size ${size} is beyond the tree's ${row?.size ?? 0} entries`);
    if (row && size === row.size && size > 0)
      return Promise.resolve(frontierRoot(decodeFrontier(row.size, row.frontier)));
    return this.reads.treeHead(size);
  }

  putNote(c: StoredNote): void {
    this.q.putNote.run(c.size, c.note, c.at);
  }

  latestNote(): StoredNote | undefined {
    return this.q.latestNote.get() as StoredNote | undefined;
  }

  noteAt(size: number, atLeast = false): StoredNote | undefined {
    return (atLeast ? this.q.noteFrom.get(size) : this.q.noteAt.get(size)) as StoredNote | undefined;
  }

  replaceNote(size: number, note: string): void {
    this.q.replaceNote.run(note, size);
  }
}
