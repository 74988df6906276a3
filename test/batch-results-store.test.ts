import t, { type Test } from 'tap';
import { startPostgres } from '../harness/postgres.js';
import { hashOf, reserveItem } from '../harness/reserve-items.js';
import { tempDir } from '../harness/token.js';
import type { ReplayStore } from '../src/core/replay/records.js';
import type { BatchResultStore } from '../src/infra/store/batch-results.js';
import { PostgresStore } from '../src/infra/store/postgres.js';
import { SqliteStore } from '../src/infra/store/sqlite.js';

// The store's read of a batch's results (GetBatchResults): one query by (client, batch id) for
// a page of items, on both backends, over records written by the store's own reserve,
// complete and abandon.

type S = ReplayStore & BatchResultStore & { close(): Promise<void> };
const T0 = Date.parse('2026-11-30T12:00:00Z');

async function scenario(t: Test, s: S) {
  const ids = Array.from({ length: 5 }, (_, i) => `bx#${i}`);
  await s.reserve(
    {
      items: ids.map(reserveItem),
      velocity: [],
      batch: { client: 'engine', batchId: 'bx' },
      leaseMs: 60_000,
      now: new Date(T0),
    },
    () => ({
      outcome: undefined,
      writes: ids.map((_, index) => ({ index, action: 'insert' as const })),
      batch: { itemsHash: hashOf('bx') },
    }),
  );
  // Items 0..2 signed, 3 failed (abandoned), 4 still being signed.
  await s.complete(
    ids
      .slice(0, 3)
      .map((requestId) => ({ client: 'engine', requestId, result: Buffer.from(`result of ${requestId}`) })),
    [],
  );
  await s.abandon([{ client: 'engine', requestId: 'bx#3' }], []);
  const now = new Date(T0 + 1000);

  const p1 = await s.batchResults('engine', 'bx', 0, 2, now);
  t.same(
    p1?.items.map((i) => [i.index, i.state, Buffer.from(i.result ?? []).toString()]),
    [
      [0, 'done', 'result of bx#0'],
      [1, 'done', 'result of bx#1'],
    ],
  );
  t.equal(p1?.more, true, 'more follow');
  const p2 = await s.batchResults('engine', 'bx', 2, 2, now);
  t.same(
    p2?.items.map((i) => [i.index, i.state, i.leaseExpired]),
    [
      [2, 'done', false],
      [3, 'pending', true],
    ],
    'an abandoned item reads as pending past its lease',
  );
  const p3 = await s.batchResults('engine', 'bx', 4, 2, now);
  t.same(
    p3?.items.map((i) => [i.index, i.state, i.leaseExpired]),
    [[4, 'pending', false]],
  );
  t.equal(p3?.more, false, 'the last page');
  t.same(await s.batchResults('engine', 'bx', 9, 2, now), { items: [], more: false }, 'past the end: an empty page');
  t.equal(await s.batchResults('other', 'bx', 0, 2, now), undefined, 'another client: no batch');
  t.equal(await s.batchResults('engine', 'by', 0, 2, now), undefined, 'an unknown id: no batch');
  // A request id of the same shape that is not part of a batch is not one.
  t.equal(await s.batchResults('engine', 'bx#0', 0, 2, now), undefined);
}

t.test('SQLite', async (t) => {
  const dir = await tempDir('batch-store-');
  t.teardown(() => dir.cleanup());
  const s = new SqliteStore(`${dir.path}/signer.db`);
  t.teardown(() => s.close());
  await scenario(t, s);
});

t.test('PostgreSQL', async (t) => {
  const server = await startPostgres();
  t.teardown(() => server.stop());
  const s = await PostgresStore.open(server.url);
  t.teardown(() => s.close());
  await scenario(t, s);
});
