/**
 * The database writer of audit-adversary.ts on PostgreSQL: holds the connection URL, rewrites
 * the log with recomputed hashes, nodes and frontier, or cuts its tail, through a pg client.
 */
import pg from 'pg';
import type { AuditEntry } from '../src/core/audit/chain.js';
import { EMPTY_FRONTIER, encodeFrontier, treeAppend } from '../src/infra/store/audit-tree-codec.js';
import { type Row, rechain } from './audit-adversary.js';

async function withPg<T>(url: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    await c.query('BEGIN');
    const out = await fn(c);
    await c.query('COMMIT');
    return out;
  } finally {
    await c.end();
  }
}

/** DELETE FROM audit WHERE seq > n. */
export function cutTailPg(url: string, n: number): Promise<number> {
  return withPg(url, async (c) => (await c.query('DELETE FROM audit WHERE seq > $1', [n])).rowCount ?? 0);
}

/** Rewrites entry `seq` and everything derived from the log; deletes checkpoints and notes from `seq` on. */
export function rewriteHistoryPg(url: string, seq: number, edit: Partial<AuditEntry>): Promise<void> {
  return withPg(url, async (c) => {
    const raw = (await c.query('SELECT * FROM audit ORDER BY seq')).rows as Array<Row & { seq: string }>;
    const entries = rechain(
      raw.map((r) => ({ ...r, seq: Number(r.seq) })),
      seq,
      edit,
    );
    for (const e of entries) {
      if (e.seq < seq) continue;
      await c.query('UPDATE audit SET client = $1, reason = $2, prev_hash = $3, hash = $4 WHERE seq = $5', [
        e.client,
        e.reason,
        e.prevHash,
        e.hash,
        e.seq,
      ]);
    }
    const { nodes, frontier } = treeAppend(EMPTY_FRONTIER, entries);
    await c.query('DELETE FROM audit_nodes');
    await c.query(
      'INSERT INTO audit_nodes (level, idx, hash) SELECT * FROM unnest($1::int4[], $2::bigint[], $3::bytea[])',
      [nodes.map((n) => n.level), nodes.map((n) => n.index), nodes.map((n) => Buffer.from(n.hash))],
    );
    await c.query('UPDATE audit_tree SET size = $1, frontier = $2', [frontier.size, encodeFrontier(frontier)]);
    await c.query('DELETE FROM audit_checkpoints WHERE seq >= $1', [seq]);
    await c.query('DELETE FROM audit_notes WHERE size >= $1', [seq]);
  });
}
