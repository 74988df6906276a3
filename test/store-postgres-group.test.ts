/**
 * PostgreSQL reads the views of a whole group of reservations in one round trip and brings each
 * up to date with the writes of the ones before it (src/infra/store/postgres/overlay.ts). Here
 * the same script of reservations runs three ways: on SQLite one at a time (the reference), on
 * PostgreSQL one at a time, and on PostgreSQL all submitted in one turn (one group). Every
 * reservation must see the same view and leave the same records, whichever way it ran.
 */
import { createHash } from 'node:crypto';
import t, { type Test } from 'tap';
import { startSchemaServer } from '../harness/postgres.js';
import { tempDir } from '../harness/token.js';
import type {
  NonceClaim,
  ReplayStore,
  ReserveItem,
  ReservePlan,
  ReserveRequest,
  ReserveView,
} from '../src/core/replay/records.js';
import { VELOCITY_BUCKET_MS } from '../src/core/replay/velocity.js';
import { PostgresStore } from '../src/infra/store/postgres.js';
import { SqliteStore } from '../src/infra/store/sqlite.js';

const T0 = Math.ceil(Date.UTC(2030, 5, 1) / VELOCITY_BUCKET_MS) * VELOCITY_BUCKET_MS;
const at = (ms: number) => new Date(T0 + ms);
const h = (s: string) => createHash('sha256').update(s).digest();
const LEASE = 30_000;
const TOKEN = '0x00000000000000000000000000000000000000c0';

const claim = (nonce: bigint, over: Partial<NonceClaim> = {}): NonceClaim => ({
  account: 'k1@v1',
  chainId: 1n,
  nonce,
  intentHash: h(`intent ${nonce}`),
  maxFeePerGas: 100n,
  maxPriorityFeePerGas: 2n,
  ...over,
});
const item = (requestId: string, over: Partial<ReserveItem> = {}): ReserveItem => ({
  client: 'engine',
  requestId,
  keyId: 'k1',
  payloadHash: h(`payload ${requestId}`),
  value: 3n,
  ...over,
});
const VELOCITY: ReserveRequest['velocity'] = [
  { scope: 'key', subject: 'k1', windowSeconds: 3600, tokens: [TOKEN] },
  { scope: 'client', subject: 'engine', windowSeconds: 3600 },
  // A window that ends before the script's first bucket: nothing of the script is in it.
  { scope: 'key', subject: 'k1', windowSeconds: 5 },
];
type Step = {
  items: ReserveItem[];
  writes: ReservePlan<unknown>['writes'];
  batch?: string;
  /** Records the batch (its first reservation). */
  newBatch?: true;
  now?: number;
  throws?: boolean;
};
const ins = (n: number) => Array.from({ length: n }, (_, index) => ({ index, action: 'insert' as const }));

/** Before the script, each on its own: a claim whose lease will have run out, a done one. */
const SETUP: Step[] = [
  { items: [item('stale', { nonce: claim(1n) })], writes: ins(1), now: 0 },
  { items: [item('done', { nonce: claim(2n) })], writes: ins(1), now: 0 },
];
const S = 40_000; // the script's time: the setup's leases (30 s) have run out
/** The script: each step depends on what the ones before it wrote. */
const SCRIPT: Step[] = [
  { items: [item('a', { nonce: claim(5n) })], writes: ins(1) },
  { items: [item('a', { nonce: claim(5n) })], writes: [] }, // the same request: pending, nonce held
  { items: [item('b', { nonce: claim(6n), token: { contract: TOKEN, amount: 7n } })], writes: ins(1) },
  { items: [item('c', { nonce: claim(6n, { maxFeePerGas: 200n }) })], writes: [{ index: 0, action: 'replaceNonce' }] },
  { items: [item('d', { nonce: claim(6n) }), item('e', { nonce: claim(9n) })], writes: [] },
  { items: [item('stale', { nonce: claim(1n) })], writes: [{ index: 0, action: 'resume' }] },
  { items: [item('stale', { nonce: claim(1n) }), item('done', { nonce: claim(2n) })], writes: [] },
  { items: [item('x', { nonce: claim(3n) })], writes: ins(1), throws: true }, // decides nothing
  { items: [item('x', { nonce: claim(3n) })], writes: [] },
  {
    items: [item('p1', { nonce: claim(10n) }), item('p2', { nonce: claim(11n) })],
    writes: ins(2),
    batch: 'b1',
    newBatch: true,
  },
  {
    items: [item('p1'), item('f', { client: 'other', nonce: claim(12n) })],
    writes: [{ index: 1, action: 'insert' }],
    batch: 'b1',
  },
  { items: [item('g', { nonce: claim(13n, { chainId: 5n }) })], writes: [], now: S + 1 },
];

const hex = (b: Uint8Array | undefined) => (b ? Buffer.from(b).toString('hex').slice(0, 12) : undefined);
/** A view as comparable JSON. */
function shown(v: ReserveView): unknown {
  return JSON.parse(
    JSON.stringify(
      {
        items: v.items.map((i) => ({
          request: i.request && {
            ...i.request,
            payloadHash: hex(i.request.payloadHash),
            result: hex(i.request.result),
          },
          nonce: i.nonce && {
            ...i.nonce,
            payloadHash: hex(i.nonce.payloadHash),
            intentHash: hex(i.nonce.intentHash),
            result: hex(i.nonce.result),
          },
          nextNonce: i.nextNonce,
        })),
        velocity: v.velocity.map((u) => ({ ...u, tokens: u.tokens && [...u.tokens.entries()] })),
        batch: hex(v.batch?.itemsHash),
        keyState: v.keyState,
        policyEpoch: v.policyEpoch,
      },
      (_, x) => (typeof x === 'bigint' ? x.toString() : x),
    ),
  );
}

function reserve(s: ReplayStore, step: Step, time: number): Promise<unknown> {
  const req: ReserveRequest = {
    items: step.items,
    velocity: VELOCITY,
    leaseMs: LEASE,
    now: at(step.now ?? time),
    attempt: 'attempt',
    ...(step.batch ? { batch: { client: 'engine', batchId: step.batch } } : {}),
    // Some read the key's state and the policy epoch (no key is stored: state null), some not.
    ...(step.items.length > 1 ? { check: { keyId: 'k1', version: 1, policies: true } } : {}),
  };
  return s.reserve(req, (view) => {
    if (step.throws) throw new Error('decide failed');
    return {
      outcome: shown(view),
      writes: step.writes,
      ...(step.batch && step.newBatch ? { batch: { itemsHash: h(step.batch) } } : {}),
    };
  });
}

/** The script's views (one per step; a refused step: its error), then every record it left. */
async function run(s: ReplayStore, together: boolean): Promise<unknown[]> {
  for (const step of SETUP) await reserve(s, step, 0);
  await s.complete([{ client: 'engine', requestId: 'done', result: Buffer.from('sig') }], []);
  const settle = (p: Promise<unknown>) =>
    p.then(
      (v) => v,
      (e: Error) => `refused: ${e.message}`,
    );
  const views = together
    ? await Promise.all(SCRIPT.map((step) => settle(reserve(s, step, S))))
    : await SCRIPT.reduce<Promise<unknown[]>>(
        async (acc, step) => [...(await acc), await settle(reserve(s, step, S))],
        Promise.resolve([]),
      );
  const all = [...SETUP, ...SCRIPT].flatMap((st) => st.items);
  const after = await reserve(s, { items: all, writes: [], batch: 'b1' }, S + 2);
  return [...views, after];
}

const { freshSchema } = await startSchemaServer(t, 'group');
const tmp = await tempDir('store-group-');
t.teardown(() => tmp.cleanup());
/** A fresh store in a schema of its own. */
async function postgres(t: Test): Promise<PostgresStore> {
  const s = await PostgresStore.open((await freshSchema()).url);
  t.teardown(() => s.close());
  return s;
}

t.test('a group of reservations decides on the views one at a time would give', async (t) => {
  const reference = new SqliteStore(`${tmp.path}/reference.db`);
  t.teardown(() => reference.close());
  const want = await run(reference, false);
  t.match(want[1], { items: [{ request: { state: 'pending' }, nonce: { requestId: 'a' } }] }, 'the script is live');
  t.same(await run(await postgres(t), false), want, 'PostgreSQL, one at a time: as SQLite');
  const grouped = await run(await postgres(t), true);
  want.forEach((w, i) => t.same(grouped[i], w, `PostgreSQL, one group: step ${i + 1} as SQLite`));
});
