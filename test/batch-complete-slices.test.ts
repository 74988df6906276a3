import t from 'tap';
import { hashOf, reserveItem } from '../harness/reserve-items.js';
import { tempDir } from '../harness/token.js';
import type { AuditDraft } from '../src/core/audit/draft.js';
import { SqliteStore } from '../src/infra/store/sqlite.js';
import { SliceCommitter } from '../src/signer/signing/complete-slices.js';

// A batch's results commit slice by slice as the slices are signed (src/signer/signing/flow.ts):
// here against a real SQLite store, with the items' signatures arriving out of order.

const T0 = Date.parse('2026-11-30T12:00:00Z');
const turns = async (n: number) => {
  for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r));
};

async function reserved(batchId: string, n: number) {
  const dir = await tempDir('slices-');
  const s = new SqliteStore(`${dir.path}/signer.db`);
  const ids = Array.from({ length: n }, (_, i) => `${batchId}#${i}`);
  await s.reserve(
    {
      items: ids.map(reserveItem),
      velocity: [],
      batch: { client: 'engine', batchId },
      leaseMs: 60_000,
      now: new Date(T0),
    },
    () => ({
      outcome: undefined,
      writes: ids.map((_, index) => ({ index, action: 'insert' as const })),
      batch: { itemsHash: hashOf(batchId) },
    }),
  );
  const completion = (i: number) => {
    const draft: AuditDraft = {
      kind: 'sign',
      at: new Date(T0),
      client: 'engine',
      keyId: 'k1',
      keyVersion: 1,
      requestId: ids[i]!,
      payloadHash: hashOf(ids[i]!),
      intent: { kind: 'digest' },
      decision: 'allowed',
      reason: null,
      signatureHash: hashOf(`signature ${i}`),
    };
    return { done: { client: 'engine', requestId: ids[i]!, result: Buffer.from(`result ${i}`) }, drafts: [draft] };
  };
  const states = async () =>
    (await s.batchResults('engine', batchId, 0, n, new Date(T0 + 1)))!.items.map((x) => x.state);
  const logged = async () => {
    const head = await s.auditHead();
    const out: Array<string | null> = [];
    if (head) for await (const e of s.readAudit(1, head.seq)) out.push(e.requestId);
    return out;
  };
  return { s, dir, completion, states, logged };
}

t.test('slices commit in item order, each once all its items settled; failures commit nothing', async (t) => {
  const { s, dir, completion, states, logged } = await reserved('b', 250);
  t.teardown(async () => {
    await s.close();
    await dir.cleanup();
  });
  const c = new SliceCommitter(s, 250, 100);
  // The last 150 items first: slices 1 and 2 are complete, but wait for slice 0.
  for (let i = 249; i >= 100; i--) c.settle(i, completion(i));
  await turns(5);
  t.ok(
    (await states()).every((x) => x === 'pending'),
    'nothing committed before slice 0 is signed',
  );
  for (let i = 0; i < 100; i++) c.settle(i, i === 50 ? null : completion(i));
  const dropped = await c.finish();
  t.equal(dropped.size, 0);
  const after = await states();
  t.equal(after.filter((x) => x === 'done').length, 249);
  t.equal(after[50], 'pending', 'the failed item is left to its abandon');
  const expected = Array.from({ length: 250 }, (_, i) => `b#${i}`).filter((_, i) => i !== 50);
  t.same(await logged(), expected, 'audit entries in item order, one per signed item');
});

t.test('a slice the store refuses: finish throws it, later slices are not committed, nothing unhandled', async (t) => {
  const { s, dir, completion, states } = await reserved('f', 300);
  t.teardown(async () => {
    await s.close();
    await dir.cleanup();
  });
  const unhandled: unknown[] = [];
  const onUnhandled = (e: unknown) => unhandled.push(e);
  process.on('unhandledRejection', onUnhandled);
  t.teardown(() => process.off('unhandledRejection', onUnhandled));
  // The failing module: the store's second completion call fails (as a full disk would).
  let calls = 0;
  const failing = {
    complete: (...a: Parameters<SqliteStore['complete']>) =>
      ++calls === 2 ? Promise.reject(new Error('disk full')) : s.complete(...a),
  };
  const c = new SliceCommitter(failing, 300, 100);
  for (let i = 0; i < 300; i++) c.settle(i, completion(i));
  await turns(10);
  await t.rejects(c.finish(), /disk full/);
  const after = await states();
  t.equal(after.slice(0, 100).filter((x) => x === 'done').length, 100, 'slice 0 committed');
  t.ok(
    after.slice(100).every((x) => x === 'pending'),
    'slices 1 and 2 not committed',
  );
  t.equal(calls, 2, 'no slice is tried after the failed one');
  t.same(unhandled, []);
});
