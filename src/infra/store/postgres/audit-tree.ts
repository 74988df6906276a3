/**
 * The audit Merkle tree in PostgreSQL (../audit-tree.ts): the node table, the frontier row and
 * the signed notes. The append reads the frontier row with the head, under the audit lock, and
 * writes the entries, their nodes and the new frontier in ONE statement (data-modifying CTEs),
 * so the two-round-trip append path keeps its shape.
 */

import type pg from 'pg';
import type { PoolClient, QueryConfig, QueryResult } from 'pg';
import type { AuditDraft } from '../../../core/audit/draft.js';
import type { Frontier, NodeId } from '../../../core/audit/merkle.js';
import { AUDIT_COLUMNS, type AuditHead, chainDrafts } from '../audit-chain.js';
import type { StoredNote } from '../audit-tree.js';
import { decodeFrontier, EMPTY_FRONTIER, encodeFrontier, treeAppend, treeReads } from '../audit-tree-codec.js';
import { type AuditRow, auditEntry } from '../codecs.js';

export const POSTGRES_AUDIT_TREE_DDL = `
CREATE TABLE IF NOT EXISTS audit_nodes (
  level INTEGER NOT NULL,
  idx   BIGINT  NOT NULL,
  hash  BYTEA   NOT NULL,
  PRIMARY KEY (level, idx)
);
CREATE TABLE IF NOT EXISTS audit_tree (
  id       INTEGER PRIMARY KEY CHECK (id = 1),
  size     BIGINT  NOT NULL,
  frontier BYTEA   NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_notes (
  size BIGINT PRIMARY KEY,
  note TEXT   NOT NULL,
  at   TEXT   NOT NULL
);`;

/** The head and the tree's frontier as read under the audit lock. */
export const HEAD_AND_TREE = `SELECT h.seq, h.hash, t.size AS tree_size, t.frontier
    FROM audit_tree t LEFT JOIN (SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1) h ON true WHERE t.id = 1`;

const cols = AUDIT_COLUMNS.map((_, i) => `$${i + 1}`);
const n = AUDIT_COLUMNS.length;
/**
 * Entries, their nodes and the new frontier: one statement, so one pipeline slot. It fails
 * (division by zero, 22012) unless the tree is still exactly where the append was computed from
 * (size and frontier, which commits to every entry and so to the head's hash): an append built
 * on a remembered point rather than on the head read under the lock (appendAfter) is then
 * refused by the database, in its transaction, instead of forking the chain or leaving a gap.
 */
export const INSERT_WITH_TREE = `WITH e AS (
    INSERT INTO audit (${AUDIT_COLUMNS.join(', ')})
    SELECT * FROM unnest(${cols[0]}::bigint[], ${cols[1]}::text[], ${cols[2]}::bigint[], ${cols[3]}::text[],
      ${cols[4]}::text[], ${cols[5]}::text[], ${cols[6]}::int4[], ${cols[7]}::text[], ${cols[8]}::text[], ${cols[9]}::text[],
      ${cols[10]}::text[], ${cols[11]}::text[], ${cols[12]}::text[], ${cols[13]}::text[], ${cols[14]}::text[],
      ${cols[15]}::text[])),
  nodes AS (INSERT INTO audit_nodes (level, idx, hash)
    SELECT * FROM unnest($${n + 1}::int4[], $${n + 2}::bigint[], $${n + 3}::bytea[])),
  t AS (UPDATE audit_tree SET size = $${n + 4}::bigint, frontier = $${n + 5}::bytea
    WHERE id = 1 AND size = $${n + 6}::bigint AND frontier = $${n + 7}::bytea RETURNING 1)
  SELECT 1 / count(*)::int AS tree_moved_check FROM t`;

/** SQLSTATE of INSERT_WITH_TREE's refusal: the tree is not where the append was computed from. */
export const TREE_MOVED = '22012';

/** Where an append starts: the chain head and the tree's frontier (they MUST agree). */
export interface AppendPoint {
  head: AuditHead | undefined;
  tree: Frontier;
}

/** The head-and-tree row (BIGINT as text) as an append point; throws when they disagree. */
export function appendPointOf(result: QueryResult): AppendPoint {
  const r = result.rows[0] as
    | { seq: string | null; hash: string | null; tree_size: string; frontier: Buffer }
    | undefined;
  if (!r) throw new Error('audit tree: no tree row (the migration did not run)');
  const head = r.seq === null ? undefined : { seq: Number(r.seq), hash: r.hash! };
  const tree = decodeFrontier(Number(r.tree_size), r.frontier);
  if ((head?.seq ?? 0) !== tree.size) {
    throw new Error(
      `audit tree: the log's head is ${head?.seq ?? 0} but its tree has ${tree.size} leaves; not appending`,
    );
  }
  return { head, tree };
}

/** `drafts` numbered, chained and added to the tree after `at`, as one statement. */
export function insertWithTree(drafts: AuditDraft[], at: AppendPoint): QueryConfig {
  return appendAfter(drafts, at).query;
}

/** insertWithTree's statement, and the append point it leaves once committed. */
export function appendAfter(drafts: AuditDraft[], at: AppendPoint): { query: QueryConfig; after: AppendPoint } {
  const chained = chainDrafts(drafts, at.head);
  const values: unknown[][] = AUDIT_COLUMNS.map(() => []);
  for (const row of chained.rows) row.forEach((v, i) => values[i]!.push(v));
  const { nodes, frontier } = treeAppend(at.tree, chained.entries, chained.leaves);
  const query = {
    name: 'signer_insertAuditWithTree',
    text: INSERT_WITH_TREE,
    values: [
      ...values,
      nodes.map((x) => x.level),
      nodes.map((x) => x.index),
      nodes.map((x) => Buffer.from(x.hash)),
      frontier.size,
      encodeFrontier(frontier),
      at.tree.size,
      encodeFrontier(at.tree),
    ],
  };
  return { query, after: { head: chained.head, tree: frontier } };
}

/**
 * Migration: the tables, and the tree of the entries already stored (a log from before them),
 * built in pages of entries inside the migration transaction.
 */
export async function migrateAuditTree(c: PoolClient): Promise<void> {
  await c.query(POSTGRES_AUDIT_TREE_DDL);
  const { rows } = await c.query('SELECT 1 FROM audit_tree WHERE id = 1');
  if (rows.length > 0) return;
  let frontier = EMPTY_FRONTIER;
  for (;;) {
    const page = await c.query<AuditRow>({
      text: 'SELECT * FROM audit WHERE seq > $1 ORDER BY seq LIMIT 10000',
      values: [frontier.size],
    });
    if (page.rows.length === 0) break;
    const r = treeAppend(frontier, page.rows.map(auditEntry));
    await c.query({
      text: 'INSERT INTO audit_nodes (level, idx, hash) SELECT * FROM unnest($1::int4[], $2::bigint[], $3::bytea[])',
      values: [r.nodes.map((x) => x.level), r.nodes.map((x) => x.index), r.nodes.map((x) => Buffer.from(x.hash))],
    });
    frontier = r.frontier;
  }
  await c.query({
    text: 'INSERT INTO audit_tree (id, size, frontier) VALUES (1, $1, $2)',
    values: [frontier.size, encodeFrontier(frontier)],
  });
}

/** Reads of the tree and the notes, on the pool (each one statement). */
export class PostgresAuditTree {
  readonly reads = treeReads(this);
  constructor(private readonly pool: pg.Pool) {}

  async readNodes(ids: readonly NodeId[]): Promise<readonly Uint8Array[]> {
    const { rows } = await this.pool.query<{ level: number; idx: string; hash: Buffer }>({
      name: 'signer_readNodes',
      text: `SELECT n.level, n.idx, n.hash FROM audit_nodes n
        JOIN unnest($1::int4[], $2::bigint[]) AS q(level, idx) ON n.level = q.level AND n.idx = q.idx`,
      values: [ids.map((i) => i.level), ids.map((i) => i.index)],
    });
    const byKey = new Map(rows.map((r) => [`${r.level}/${r.idx}`, r.hash]));
    return ids.map((id) => {
      const h = byKey.get(`${id.level}/${id.index}`);
      if (!h) throw new Error(`audit tree: no node ${id.level}/${id.index}`);
      return new Uint8Array(h);
    });
  }

  async checkSize(size: number): Promise<void> {
    const { rows } = await this.pool.query<{ size: string }>('SELECT size FROM audit_tree WHERE id = 1');
    const have = Number(rows[0]?.size ?? 0);
    if (size > have) throw new Error(`audit tree: size ${size} is beyond the tree's ${have} entries`);
  }

  async putNote(c: StoredNote): Promise<void> {
    await this.pool.query({
      text: 'INSERT INTO audit_notes (size, note, at) VALUES ($1, $2, $3) ON CONFLICT (size) DO NOTHING',
      values: [c.size, c.note, c.at],
    });
  }

  async latestNote(): Promise<StoredNote | undefined> {
    return note((await this.pool.query('SELECT size, note, at FROM audit_notes ORDER BY size DESC LIMIT 1')).rows[0]);
  }

  async noteAt(size: number, atLeast = false): Promise<StoredNote | undefined> {
    const text = atLeast
      ? 'SELECT size, note, at FROM audit_notes WHERE size >= $1 ORDER BY size LIMIT 1'
      : 'SELECT size, note, at FROM audit_notes WHERE size = $1';
    return note((await this.pool.query({ text, values: [size] })).rows[0]);
  }

  async replaceNote(size: number, text: string): Promise<void> {
    await this.pool.query({ text: 'UPDATE audit_notes SET note = $2 WHERE size = $1', values: [size, text] });
  }
}

function note(r: { size: string; note: string; at: string } | undefined): StoredNote | undefined {
  return r && { size: Number(r.size), note: r.note, at: r.at };
}
