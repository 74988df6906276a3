import fs from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import t from 'tap';
import { hashOf, reserveItem } from '../harness/reserve-items.js';
import { tempDir } from '../harness/token.js';
import type { AuditDraft } from '../src/core/audit/draft.js';
import { SqliteStore } from '../src/infra/store/sqlite.js';

// The SQLite store commits with synchronous=NORMAL and syncs the WAL off the event loop
// (src/infra/store/sqlite/wal-sync.ts): nothing may settle, and no read may hand over state,
// before the sync that covers it; a failed sync stops the store. The WAL's fdatasync is the
// failing module here: held to watch what waits for it, or failed as a disk would fail it.

const realSync = fs.fdatasync;
let hold = false;
let fail: NodeJS.ErrnoException | undefined;
let calls = 0;
const held: Array<() => void> = [];
fs.fdatasync = ((fd: number, cb: (e: NodeJS.ErrnoException | null) => void) => {
  calls++;
  const run = () => (fail ? cb(fail) : realSync(fd, cb));
  if (hold) held.push(run);
  else run();
}) as typeof fs.fdatasync;
syncBuiltinESMExports();
t.teardown(() => {
  fs.fdatasync = realSync;
  syncBuiltinESMExports();
});
const release = () => {
  hold = false;
  for (const run of held.splice(0)) run();
};
/** Whether `p` has settled yet (either way). */
const watch = (p: Promise<unknown>) => {
  let settled = false;
  p.then(
    () => (settled = true),
    () => (settled = true),
  );
  return () => settled;
};
const turns = () => new Promise((r) => setTimeout(r, 50));

const tmp = await tempDir('store-wal-');
t.teardown(() => tmp.cleanup());
let n = 0;
const open = () => {
  const s = new SqliteStore(`${tmp.path}/wal-${n++}.db`);
  t.teardown(() => s.close().catch(() => undefined));
  return s;
};
const draft = (requestId: string): AuditDraft => ({
  kind: 'sign',
  at: new Date(),
  client: 'engine',
  keyId: 'k1',
  keyVersion: 1,
  requestId,
  payloadHash: hashOf(requestId),
  intent: { kind: 'digest' },
  decision: 'allowed',
  reason: null,
  signatureHash: hashOf(`sig ${requestId}`),
});

t.test('SQLite itself does not fsync commits: synchronous=NORMAL', async (t) => {
  const s = open();
  const db = (s as unknown as { db: { pragma(q: string, o: object): unknown } }).db;
  t.equal(db.pragma('synchronous', { simple: true }), 1);
});

t.test('a write settles only after the WAL sync that covers it', async (t) => {
  const s = open();
  hold = true;
  const before = calls;
  const write = s.appendAudit([draft('a')]);
  const done = watch(write);
  await turns();
  t.ok(calls > before, 'the sync started');
  t.notOk(done(), 'not settled while the sync runs');
  release();
  await write;
  t.pass('settled after the sync');
});

t.test('reads hand over only durable state', async (t) => {
  const s = open();
  await s.appendAudit([draft('a')]);
  hold = true;
  const write = s.appendAudit([draft('b')]);
  await turns();
  // Committed, visible, not yet on disk: the read waits for the sync.
  const head = s.auditHead();
  const done = watch(head);
  await turns();
  t.notOk(done(), 'the head of a commit not yet synced is held back');
  release();
  await write;
  t.equal((await head)?.seq, 2, 'then handed over');
});

t.test('a reservation that only claims settles at commit; its completion waits for the sync', async (t) => {
  const s = open();
  hold = true;
  const now = new Date();
  const req = { items: [reserveItem('r1')], velocity: [], leaseMs: 30_000, now, attempt: 'x' };
  const before = calls;
  const outcome = await s.reserve(req, () => ({
    outcome: 'claimed',
    writes: [{ index: 0, action: 'insert' as const }],
  }));
  t.equal(outcome, 'claimed', 'the claim settled while the sync was held');
  await turns();
  t.equal(calls, before, 'a group of claims only starts no sync of its own');
  const complete = s.complete(
    [{ client: 'engine', requestId: 'r1', result: Buffer.from('sig'), attempt: 'x' }],
    [draft('r1')],
  );
  const refused = s.reserve({ ...req, items: [reserveItem('r2')] }, () => ({
    outcome: 'refused',
    writes: [],
    audit: [{ ...draft('r2'), decision: 'refused' as const, reason: 'VALUE_LIMIT', signatureHash: null }],
  }));
  const done = [watch(complete), watch(refused)];
  await turns();
  t.notOk(done[0]!(), 'the completion waits for the sync (it covers the claim too)');
  t.notOk(done[1]!(), 'a reservation with an audit entry (a decision that leaves) waits too');
  release();
  t.same(await complete, { dropped: [] });
  t.equal(await refused, 'refused');
});

t.test('a failed sync fails its writes and stops the store', async (t) => {
  const s = open();
  await s.appendAudit([draft('ok')]);
  fail = Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' });
  await t.rejects(s.appendAudit([draft('lost')]), /WAL could not be synced to disk \(EIO\)/);
  fail = undefined;
  await t.rejects(s.appendAudit([draft('after')]), /WAL could not be synced/, 'later writes are refused');
  await t.rejects(s.auditHead(), /WAL could not be synced/, 'and reads');
});
