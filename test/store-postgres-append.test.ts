/**
 * A completion's audit entries are appended in one round trip on the point this process's
 * previous append left (src/infra/store/postgres.ts, completeNow), not on a head read under the
 * audit lock. The database must refuse that append whenever the log is not there any more, and
 * the store must then append after the real head: another replica appended meanwhile; the
 * database went back (a restored backup) to fewer entries; or it went back and another replica
 * then appended as many entries as were lost (same size, other entries: only the frontier check
 * tells). In every case the chain stays gapless and linked, and the stored tree matches it.
 */
import { createHash } from 'node:crypto';
import pg from 'pg';
import t from 'tap';
import { startPostgres } from '../harness/postgres.js';
import { entryHash } from '../src/core/audit/chain.js';
import type { AuditDraft } from '../src/core/audit/draft.js';
import { entryLeafHash } from '../src/core/audit/leaf.js';
import { MemoryTree } from '../src/core/audit/merkle-memory.js';
import { PostgresStore } from '../src/infra/store/postgres.js';

const h = (s: string) => createHash('sha256').update(s).digest();
const draft = (who: string, n: number): AuditDraft => ({
  kind: 'sign',
  at: new Date(Date.UTC(2030, 0, 1, 0, 0, n)),
  client: who,
  keyId: 'k1',
  keyVersion: 1,
  requestId: `${who}-${n}`,
  payloadHash: h(`${who} ${n}`),
  intent: null,
  decision: 'allowed',
  reason: null,
  signatureHash: h(`sig ${who} ${n}`),
});

const server = await startPostgres();
t.teardown(() => server.stop());
const a = await PostgresStore.open(server.url);
const b = await PostgresStore.open(server.url);
const admin = new pg.Client({ connectionString: server.url });
await admin.connect();
t.teardown(async () => {
  await admin.end();
  await a.close();
  await b.close();
});

let n = 0;
/** A completion of a request nobody reserved: nothing applies, the audit entry is appended. */
const complete = async (s: PostgresStore, who: string) => {
  const d = draft(who, n++);
  const r = await s.complete([{ client: who, requestId: d.requestId!, result: Buffer.alloc(8) }], [d]);
  t.equal(r.dropped.length, 1, 'the completion of an unreserved request applies nothing');
};
// Every ROLLBACK the stores send (a refused append is rolled back, then appended again).
let rolledBack = 0;
const query = pg.Client.prototype.query;
pg.Client.prototype.query = function (this: pg.Client, ...args: unknown[]) {
  if (args[0] === 'ROLLBACK') rolledBack++;
  return (query as (...x: unknown[]) => unknown).apply(this, args);
} as typeof query;
const rollbacks = async () => rolledBack;

/** The whole log: seq 1..n, each linked to the one before, hashes right, tree head as computed. */
async function checkLog(what: string, clients: string[]) {
  const head = await a.auditHead();
  const entries = [];
  for await (const e of a.readAudit(1, head!.seq)) entries.push(e);
  t.same(
    entries.map((e) => e.seq),
    entries.map((_, i) => i + 1),
    `${what}: gapless`,
  );
  let prev = '00'.repeat(32);
  for (const e of entries) {
    const { hash, ...rest } = e;
    if (e.prevHash !== prev || entryHash(rest) !== hash) t.fail(`${what}: entry ${e.seq} is not chained`);
    prev = hash;
  }
  t.equal(prev, head!.hash, `${what}: linked up to the head`);
  const tree = new MemoryTree();
  tree.append(entries.map((e) => entryLeafHash(e)));
  t.same(Buffer.from(await a.treeHead(entries.length)), Buffer.from(tree.root()), `${what}: the tree matches`);
  t.same(
    entries.map((e) => e.client),
    clients,
    `${what}: every entry appended once, in order`,
  );
}

/** The audit tables as they are now, to put back later (a restored backup). */
async function backup() {
  await admin.query('DROP TABLE IF EXISTS bk_audit, bk_nodes, bk_tree');
  await admin.query('CREATE TABLE bk_audit AS SELECT * FROM audit');
  await admin.query('CREATE TABLE bk_nodes AS SELECT * FROM audit_nodes');
  await admin.query('CREATE TABLE bk_tree AS SELECT * FROM audit_tree');
}
async function restore() {
  await admin.query('BEGIN');
  await admin.query('DELETE FROM audit; INSERT INTO audit SELECT * FROM bk_audit');
  await admin.query('DELETE FROM audit_nodes; INSERT INTO audit_nodes SELECT * FROM bk_nodes');
  await admin.query('DELETE FROM audit_tree; INSERT INTO audit_tree SELECT * FROM bk_tree');
  await admin.query('COMMIT');
}

t.test('completions appended on the remembered point', async (t) => {
  const log: string[] = [];
  await complete(a, 'a');
  await complete(a, 'a');
  log.push('a', 'a');
  const r0 = await rollbacks();
  await complete(a, 'a');
  log.push('a');
  t.equal(await rollbacks(), r0, 'an append on the remembered point commits the first time');
  await checkLog('one replica', log);

  await complete(b, 'b');
  log.push('b');
  const r1 = await rollbacks();
  await complete(a, 'a');
  log.push('a');
  t.ok((await rollbacks()) > r1, 'after another replica appended, the append on the old point is refused');
  await checkLog('another replica appended', log);

  await backup();
  const kept = log.length;
  await complete(a, 'a');
  await complete(a, 'a');
  await restore(); // the database went back two entries; a still remembers the point after them
  log.splice(kept);
  const r2 = await rollbacks();
  await complete(a, 'a');
  log.push('a');
  t.ok((await rollbacks()) > r2, 'on a database gone back, the append on the lost point is refused');
  await checkLog('the database went back', log);

  await backup();
  const kept2 = log.length;
  await complete(a, 'a');
  await restore(); // gone back one entry, then another replica appends one: the same size again
  log.splice(kept2);
  await complete(b, 'b');
  log.push('b');
  const r3 = await rollbacks();
  await complete(a, 'a');
  log.push('a');
  t.ok((await rollbacks()) > r3, 'same size, other entries: the frontier check refuses the append');
  await checkLog('gone back, then as many entries by another replica', log);

  // Completion groups sent back to back (each on the point the one before leaves), with another
  // replica appending in between: whatever is refused is appended again after the real head.
  const burst = await Promise.all(
    Array.from({ length: 40 }, (_, i) => (i % 7 === 3 ? complete(b, 'b') : complete(a, 'a')).then(() => i)),
  );
  t.equal(burst.length, 40);
  const head = await a.auditHead();
  t.equal(head!.seq, log.length + 40, 'every completion of the burst appended exactly once');
  const entries = [];
  for await (const e of a.readAudit(1, head!.seq)) entries.push(e);
  await checkLog(
    'a burst from two replicas',
    entries.map((e) => e.client!),
  );
});
