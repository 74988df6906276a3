import type Database from 'better-sqlite3';
import t from 'tap';
import { withDb } from '../harness/audit-adversary.js';
import { tempDir } from '../harness/token.js';
import { eventDraft } from '../src/core/audit/draft.js';
import { checkRollback, nextMark, rolledBackError, type TreeHead } from '../src/core/audit/rollback.js';
import { replicationWarnings } from '../src/core/store/replication.js';
import { decodeMark, encodeMark } from '../src/infra/hsm/mark.js';
import { SqliteStore } from '../src/infra/store/sqlite.js';
import { treeHeads } from '../src/signer/audit/log-heads.js';
import { type LogHeads, type MarkKeeper, RollbackGuard } from '../src/signer/audit/rollback-guard.js';

const root = (b: number) => new Uint8Array(32).fill(b);
const head = (size: number, b: number): TreeHead => ({ size, root: root(b) });

t.test('the rollback decision, as a table', async (t) => {
  // [case, mark, db size, db root at the marked size, expected]
  const cases: Array<[string, TreeHead | undefined, number, Uint8Array | undefined, 'ok' | 'shorter' | 'diverged']> = [
    ['first start: no mark', undefined, 0, undefined, 'ok'],
    ['database at the mark', head(8, 1), 8, root(1), 'ok'],
    ['database past the mark', head(8, 1), 12, root(1), 'ok'],
    ['database shorter than the mark (restored backup)', head(8, 1), 6, undefined, 'shorter'],
    ['same size, another head (rewritten)', head(8, 1), 8, root(2), 'diverged'],
    ['longer, another head at the mark (restored, then written to)', head(8, 1), 11, root(2), 'diverged'],
    ['empty database, marked', head(3, 1), 0, undefined, 'shorter'],
  ];
  for (const [name, mark, size, at, want] of cases) {
    const c = checkRollback(mark, 'hsm:default', size, at);
    t.equal(c.ok ? 'ok' : c.why, want, name);
  }
  const e = rolledBackError(
    checkRollback(head(8, 1), 'hsm:r1', 6, undefined) as Extract<ReturnType<typeof checkRollback>, { ok: false }>,
  );
  t.equal(e.reason, 'STORE_ROLLED_BACK');
  t.same(
    { markedSize: e.metadata.markedSize, dbSize: e.metadata.dbSize, source: e.metadata.source },
    { markedSize: '8', dbSize: '6', source: 'hsm:r1' },
  );
});

t.test('the mark is never lowered', async (t) => {
  t.same(nextMark(undefined, head(3, 1)), head(3, 1), 'first write');
  t.same(nextMark(head(3, 1), head(5, 2)), head(5, 2), 'raised');
  t.equal(nextMark(head(5, 2), head(5, 2)), undefined, 'same size: nothing to write');
  t.equal(nextMark(head(5, 2), head(4, 2)), undefined, 'smaller: never written');
});

t.test('the mark label round-trips and refuses other formats', async (t) => {
  t.same(decodeMark(encodeMark('r1', head(42, 7))), head(42, 7));
  t.equal(decodeMark(encodeMark('r1', undefined)), undefined, 'a fresh object has no head');
  t.throws(() => decodeMark('something else'), /unknown format/);
  t.throws(() => encodeMark('r1', { size: 1, root: new Uint8Array(31) }), /32 bytes/);
  t.match(encodeMark('r1', head(42, 7)), / size=42 tree=0707/, 'written as a tree head');
  const legacy = `hsm-signer-audit-mark-r1 size=42 root=${'07'.repeat(32)}`;
  t.same(decodeMark(legacy), { ...head(42, 7), chainHash: true }, "the previous release's mark reads as a chain hash");
  t.throws(() => encodeMark('r1', { ...head(1, 1), chainHash: true }), /never as a chain hash/);
});

t.test("tree heads over a real SQLite store, and the previous release's chain-hash marks", async (t) => {
  const tmp = await tempDir('log-heads-');
  t.teardown(() => tmp.cleanup());
  const path = `${tmp.path}/signer.db`;
  const store = new SqliteStore(path);
  t.teardown(() => store.close());
  for (let i = 0; i < 5; i++) await store.appendAudit([eventDraft('test.event', new Date(), `c${i}`)]);
  const heads = treeHeads(store);
  const h = await heads.head();
  t.equal(h.size, 5);
  t.same(h.root, await store.treeHead(5), 'the head is the Merkle tree head, not a chain hash');
  t.same(await heads.rootAt(3), await store.treeHead(3));
  t.equal(await heads.rootAt(6), undefined, 'beyond the log: undefined');
  let chain3 = '';
  for await (const e of store.readAudit(3, 3)) chain3 = e.hash;
  const legacy = { size: 3, root: new Uint8Array(Buffer.from(chain3, 'hex')), chainHash: true as const };
  const guard = (m: TreeHead) =>
    new RollbackGuard({
      heads,
      mark: { head: m, advance: async () => {}, all: async () => [{ source: 'hsm:old', head: m }] },
    });
  t.ok(await guard(legacy).checkAtStart(), "an intact log passes the previous release's mark");
  t.notOk(await guard({ ...legacy, chainHash: undefined }).checkAtStart(), 'read as a tree head it would not');
  // Entry 3's content edited in the file, its stored hash kept: the recomputed hash differs.
  withDb(path, (db: Database.Database) => db.prepare("UPDATE audit SET client = 'mallory' WHERE seq = 3").run());
  const g = guard(legacy);
  t.notOk(await g.checkAtStart(), 'an entry edited under its old hash trips the legacy check');
  t.equal(g.rolledBack?.why, 'diverged');
});

/** A log and a mark in memory, to test the guard's batching and its run-time check. */
function fakes(initial?: TreeHead) {
  const log: TreeHead[] = [head(0, 0)];
  let mark = initial;
  const writes: TreeHead[] = [];
  let failNext = false;
  const heads: LogHeads = {
    head: async () => log[log.length - 1]!,
    rootAt: async (size) => log.find((h) => h.size === size)?.root,
  };
  const keeper: MarkKeeper = {
    get head() {
      return mark;
    },
    async advance(next) {
      await new Promise((r) => setTimeout(r, 5));
      if (failNext) {
        failNext = false;
        throw new Error('token gone');
      }
      writes.push(next);
      mark = next;
    },
    all: async () => [{ source: 'hsm:default', head: mark }],
  };
  return {
    heads,
    keeper,
    writes,
    append: (b: number) => log.push(head(log.length, b)),
    rollBackTo: (size: number) => log.splice(size + 1),
    failNextWrite: () => (failNext = true),
  };
}

t.test('releases share mark writes, are serialised, and stop on a rollback while running', async (t) => {
  const f = fakes();
  let tripped = 0;
  const guard = new RollbackGuard({ heads: f.heads, mark: f.keeper, onTrip: () => tripped++ });
  t.ok(await guard.checkAtStart(), 'an empty token passes');
  f.append(1);
  await guard.release();
  t.same(
    f.writes.map((w) => w.size),
    [1],
    'one write covers the commit',
  );
  for (let i = 0; i < 10; i++) f.append(i + 2);
  await Promise.all(Array.from({ length: 10 }, () => guard.release()));
  t.equal(f.writes.length, 2, 'ten releases of one commit group (one turn of the event loop) share one write');
  t.equal(f.writes.at(-1)!.size, 11, 'the mark covers every commit');
  // A group commits while a write runs: its releases wait for the next write, and share it.
  f.append(12);
  const first = guard.release();
  await new Promise((r) => setImmediate(r));
  f.append(13);
  f.append(14);
  await Promise.all([first, guard.release(), guard.release()]);
  t.same(
    f.writes.slice(2).map((w) => w.size),
    [12, 14],
    'releases arriving during a write are covered by the next one, never by the write in flight',
  );
  f.append(15);
  f.failNextWrite();
  const failed = await guard.release().catch((e) => e);
  t.equal(failed.reason, 'HSM_UNAVAILABLE', 'a failed mark write fails the release (UNAVAILABLE: retry)');
  await guard.release();
  t.equal(f.writes.at(-1)!.size, 15, 'the retry writes it');
  f.rollBackTo(5);
  const refused = await guard.release().catch((e) => e);
  t.equal(refused.reason, 'STORE_ROLLED_BACK', 'a database that lost released entries stops the release');
  t.match(
    t.throws(() => guard.assertServing()),
    { reason: 'STORE_ROLLED_BACK' },
    'and every later request',
  );
  t.equal(tripped, 1, 'tripped once');
  t.equal(f.writes.at(-1)!.size, 15, 'the mark was not lowered');
});

t.test('the start check looks at every kept head', async (t) => {
  const f = fakes(head(3, 9));
  for (let i = 1; i <= 5; i++) f.append(i);
  const guard = new RollbackGuard({ heads: f.heads, mark: f.keeper });
  t.notOk(await guard.checkAtStart(), 'a mark whose head differs from the database at its size trips');
  t.equal(guard.rolledBack?.why, 'diverged');
});

t.test('PostgreSQL replication warnings, as a table', async (t) => {
  const base = { synchronousCommit: 'on', synchronousStandbyNames: '', standbys: [] };
  t.same(replicationWarnings(base), [], 'no standby: nothing to warn about');
  const safe = {
    synchronousCommit: 'remote_apply',
    synchronousStandbyNames: 'FIRST 1 (s1)',
    standbys: [{ name: 's1', syncState: 'sync' }],
  };
  t.same(replicationWarnings(safe), [], 'a synchronous standby with remote_apply: safe');
  const asyncStandby = replicationWarnings({
    ...base,
    synchronousCommit: 'remote_apply',
    standbys: [{ name: 's1', syncState: 'async' }],
  });
  t.match(asyncStandby.join('\n'), /s1 \(async\) is not synchronous/);
  t.match(asyncStandby.join('\n'), /synchronous_standby_names is empty/);
  const onOnly = replicationWarnings({ ...safe, synchronousCommit: 'on' });
  t.equal(onOnly.length, 1);
  t.match(onOnly[0], /synchronous_commit is on, not remote_apply/);
  t.match(
    replicationWarnings({ ...safe, standbys: [{ name: 's1', syncState: 'potential' }] }).join(),
    /potential/,
    'a potential standby is not synchronous',
  );
});
