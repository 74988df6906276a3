/**
 * The store contract (src/infra/store/store.ts, src/core/replay/records.ts), run against every backend by
 * test/store-<backend>.test.ts. `decide` functions here are minimal stand-ins for the replay
 * guard: the suite checks what the store reads, writes and makes atomic, not the policy.
 */

import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createInterface } from 'node:readline';
import type { Test } from 'tap';
import { type AuditRaceResult, RACE, RACE_NOW, type RaceResult, runAuditRace, runRace } from '../harness/store-race.js';
import { repoRoot } from '../harness/token.js';
import { type AuditEntry, entryHash, GENESIS } from '../src/core/audit/chain.js';
import { type AuditDraft, eventDraft } from '../src/core/audit/draft.js';
import type {
  NonceClaim,
  ReplayStore,
  ReserveItem,
  ReservePlan,
  ReserveRequest,
  ReserveView,
} from '../src/core/replay/records.js';
import { VELOCITY_BUCKET_MS } from '../src/core/replay/velocity.js';
import type { AuditStore, StoredCheckpoint } from '../src/infra/store/audit.js';
import type { AuditTreeStore } from '../src/infra/store/audit-tree.js';
import { type CeremonyRecord, KeyExistsError, type KeyRecord, type Store } from '../src/infra/store/store.js';

export type TestStore = Store & ReplayStore & AuditStore & AuditTreeStore;

export interface SuiteOptions {
  /** Two independent instances (own connections) on one fresh, empty database. */
  twins?: () => Promise<[TestStore, TestStore]>;
  /** The archived claims (nonce_replacements) of one account's nonce, oldest first. */
  replacements?: (
    store: TestStore,
    account: string,
    chainId: bigint,
    nonce: bigint,
  ) => Promise<Array<{ payloadHash: Buffer; result: Buffer | null }>>;
}

type Action = 'insert' | 'replaceNonce' | 'resume';

/** A time on a velocity bucket boundary, so that window arithmetic in the tests is exact. */
const T0 = Math.ceil(Date.UTC(2030, 5, 1) / VELOCITY_BUCKET_MS) * VELOCITY_BUCKET_MS;
const at = (ms: number) => new Date(T0 + ms);
const LEASE = 30_000;
const h = (s: string) => createHash('sha256').update(s).digest();
const hex = (b: Uint8Array | undefined) => (b ? Buffer.from(b).toString('hex') : undefined);

/** A claim; without an account, item() puts it on the account of its key's version 1. */
function claim(nonce: bigint, over: Partial<NonceClaim> = {}): NonceClaim {
  return {
    account: '',
    chainId: 1n,
    nonce,
    intentHash: h(`intent ${nonce}`),
    maxFeePerGas: 100n,
    maxPriorityFeePerGas: 2n,
    ...over,
  };
}

function item(requestId: string, over: Partial<ReserveItem> = {}): ReserveItem {
  const it: ReserveItem = {
    client: 'engine',
    requestId,
    keyId: 'k1',
    payloadHash: h(`payload ${requestId}`),
    value: 1n,
    ...over,
  };
  if (it.nonce && it.nonce.account === '') it.nonce = { ...it.nonce, account: `${it.keyId}@v1` };
  return it;
}

function request(items: ReserveItem[], now: Date, over: Partial<ReserveRequest> = {}): ReserveRequest {
  return { items, velocity: [], leaseMs: LEASE, now, ...over };
}

/** Reads the view without writing anything. */
async function peek(store: ReplayStore, req: ReserveRequest): Promise<ReserveView> {
  return store.reserve(req, (view) => ({ outcome: view, writes: [] }));
}

/** Writes `actions` (one per item, in order; undefined = no write) whatever the view says. */
async function write(
  store: ReplayStore,
  req: ReserveRequest,
  actions: Array<Action | undefined>,
  batch?: ReservePlan<unknown>['batch'],
) {
  const writes = actions.flatMap((action, index) => (action ? [{ index, action }] : []));
  return store.reserve(req, (view) => ({ outcome: view, writes, ...(batch ? { batch } : {}) }));
}

function draft(requestId: string | null, over: Partial<AuditDraft> = {}): AuditDraft {
  return {
    kind: 'sign',
    at: at(0),
    client: 'engine',
    keyId: 'k1',
    keyVersion: 1,
    requestId,
    payloadHash: h(`payload ${requestId}`),
    intent: { kind: 'evm', chainId: '1', nonce: '7', to: '0x00000000000000000000000000000000000000aa', value: '5' },
    decision: 'allowed',
    reason: null,
    signatureHash: h(`signature ${requestId}`),
    ...over,
  };
}

/** Every entry of the log, read through readAudit. */
export async function readChain(store: AuditStore): Promise<AuditEntry[]> {
  const out: AuditEntry[] = [];
  for await (const e of store.readAudit(1, Number.MAX_SAFE_INTEGER)) out.push(e);
  return out;
}

/**
 * The chain invariant: seq 1..N without gaps, each prevHash the previous entry's hash (GENESIS
 * for the first), each hash entryHash of its entry. One assertion per property, naming the
 * first entry that breaks it.
 */
export function checkChain(t: Test, entries: AuditEntry[], what = 'the chain'): void {
  const gap = entries.findIndex((e, i) => e.seq !== i + 1);
  t.equal(
    gap,
    -1,
    `${what}: seq 1..${entries.length} without gaps${gap >= 0 ? ` (seq ${entries[gap]!.seq} at position ${gap + 1})` : ''}`,
  );
  const link = entries.findIndex((e, i) => e.prevHash !== (i === 0 ? GENESIS : entries[i - 1]!.hash));
  t.equal(
    link,
    -1,
    `${what}: each prevHash is the previous entry's hash${link >= 0 ? ` (not at seq ${entries[link]!.seq})` : ''}`,
  );
  const bad = entries.findIndex(({ hash, ...rest }) => entryHash(rest) !== hash);
  t.equal(
    bad,
    -1,
    `${what}: each hash is entryHash of its entry${bad >= 0 ? ` (not at seq ${entries[bad]!.seq})` : ''}`,
  );
}

/** The guard stand-in of the races: take it only if nobody holds the request id or nonce. */
const takeIfFree = (view: ReserveView): ReservePlan<boolean> =>
  view.items.every((v) => !v.request && !v.nonce)
    ? { outcome: true, writes: view.items.map((_, index) => ({ index, action: 'insert' as const })) }
    : { outcome: false, writes: [] };

export function storeSuite(t: Test, name: string, open: () => Promise<TestStore>, opts: SuiteOptions = {}) {
  const fresh = async (t: Test) => {
    const s = await open();
    t.teardown(() => s.close());
    return s;
  };

  t.test(`${name}: an empty store shows nothing`, async (t) => {
    const s = await fresh(t);
    const view = await peek(
      s,
      request([item('a', { nonce: claim(1n) }), item('b')], at(0), {
        velocity: [{ scope: 'key', subject: 'k1', windowSeconds: 60 }],
        batch: { client: 'engine', batchId: 'b1' },
      }),
    );
    t.same(view, { items: [{}, {}], velocity: [{ count: 0, value: 0n }] });
    t.equal(view.batch, undefined);
  });

  t.test(`${name}: insert writes a pending request, its nonce claim and velocity`, async (t) => {
    const s = await fresh(t);
    const fee = 2n ** 255n + 1n;
    const a = item('a', { nonce: claim(7n, { maxFeePerGas: fee, maxPriorityFeePerGas: fee - 1n }), value: 5n });
    t.equal(
      await s.reserve(request([a], at(0)), () => ({ outcome: 'ok', writes: [{ index: 0, action: 'insert' }] })),
      'ok',
      'resolves to the outcome',
    );

    const v = (await peek(s, request([a], at(1000)))).items[0]!;
    t.same(hex(v.request?.payloadHash), hex(a.payloadHash));
    t.equal(v.request?.state, 'pending');
    t.equal(v.request?.result, undefined);
    t.equal(v.request?.leaseExpired, false);
    t.ok(v.nonce, 'nonce claim');
    t.same(
      { ...v.nonce!, payloadHash: hex(v.nonce!.payloadHash), intentHash: hex(v.nonce!.intentHash) },
      {
        payloadHash: hex(a.payloadHash),
        intentHash: hex(a.nonce!.intentHash),
        maxFeePerGas: fee,
        maxPriorityFeePerGas: fee - 1n,
        state: 'pending',
        client: 'engine',
        requestId: 'a',
        leaseExpired: false,
      },
      'the claim, fees exact',
    );
    t.equal(typeof v.nonce!.maxFeePerGas, 'bigint');
    t.equal(v.nextNonce, 8n, 'next nonce is max + 1');

    const others = await peek(
      s,
      request(
        [
          item('other', { nonce: claim(3n) }),
          item('other-chain', { nonce: claim(7n, { chainId: 5n }) }),
          item('other-key', { keyId: 'k2', nonce: claim(7n) }),
          item('a', { client: 'another-client' }),
        ],
        at(1000),
      ),
    );
    t.same(
      others.items,
      [{ nextNonce: 8n }, {}, {}, {}],
      'records are per (client, request id) and per (key, chain, nonce)',
    );

    const later = (await peek(s, request([a], at(LEASE)))).items[0]!;
    t.equal(later.request?.leaseExpired, true, 'the lease ends at now + leaseMs');
    t.equal(later.nonce?.leaseExpired, true);
    t.equal(
      (await peek(s, request([a], at(LEASE - 1)))).items[0]!.request?.leaseExpired,
      false,
      'and not a millisecond earlier',
    );
  });

  t.test(`${name}: nextNonce follows the highest claim of the key and chain`, async (t) => {
    const s = await fresh(t);
    await write(s, request([item('x', { nonce: claim(2n ** 40n) }), item('y', { nonce: claim(3n) })], at(0)), [
      'insert',
      'insert',
    ]);
    const v = await peek(s, request([item('z', { nonce: claim(0n) })], at(0)));
    t.equal(v.items[0]!.nextNonce, 2n ** 40n + 1n);
  });

  t.test(`${name}: nonce claims are per account (key version), not per key`, async (t) => {
    const s = await fresh(t);
    const v1 = item('v1', { nonce: claim(7n, { account: 'k1@v1' }) });
    const v2 = item('v2', { nonce: claim(7n, { account: 'k1@v2' }) });
    await write(s, request([v1], at(0)), ['insert']);
    const v = await peek(s, request([v2, item('v1-9', { nonce: claim(9n, { account: 'k1@v1' }) })], at(1)));
    t.same(v.items, [{}, { nextNonce: 8n }], "another version's nonce 7 is free; its next nonce is its own");
    await write(s, request([v2], at(1)), ['insert']);
    const after = await peek(s, request([v1, v2], at(2)));
    t.same(
      after.items.map((x) => [x.nonce?.requestId, x.nextNonce]),
      [
        ['v1', 8n],
        ['v2', 8n],
      ],
    );
  });

  t.test(`${name}: complete stores the result on the request and its nonce claim`, async (t) => {
    const s = await fresh(t);
    const a = item('a', { nonce: claim(1n) });
    const b = item('b');
    await write(s, request([a, b], at(0)), ['insert', 'insert']);
    await s.complete(
      [
        { client: 'engine', requestId: 'a', result: Buffer.from('result a') },
        { client: 'engine', requestId: 'b', result: Buffer.from('result b') },
        { client: 'engine', requestId: 'unknown', result: Buffer.from('nothing') },
      ],
      [],
    );
    await s.complete([], []);
    const v = await peek(s, request([a, b], at(10 * LEASE)));
    t.equal(v.items[0]!.request?.state, 'done');
    t.equal(Buffer.from(v.items[0]!.request!.result!).toString(), 'result a');
    t.equal(v.items[0]!.request?.leaseExpired, false, 'a done record never has an expired lease');
    t.equal(v.items[0]!.nonce?.state, 'done');
    t.equal(Buffer.from(v.items[0]!.nonce!.result!).toString(), 'result a');
    t.equal(v.items[0]!.nonce?.leaseExpired, false);
    t.equal(Buffer.from(v.items[1]!.request!.result!).toString(), 'result b');
    t.ok(Buffer.isBuffer(v.items[0]!.request!.result) || v.items[0]!.request!.result instanceof Uint8Array);
  });

  t.test(`${name}: abandon ends the lease at once; done records keep theirs`, async (t) => {
    const s = await fresh(t);
    const a = item('a', { nonce: claim(1n) });
    const b = item('b', { nonce: claim(2n) });
    await write(s, request([a, b], at(0)), ['insert', 'insert']);
    await s.complete([{ client: 'engine', requestId: 'b', result: Buffer.from('rb') }], []);
    await s.abandon(
      [
        { client: 'engine', requestId: 'a' },
        { client: 'engine', requestId: 'b' },
        { client: 'engine', requestId: 'unknown' },
      ],
      [],
    );
    await s.abandon([], []);
    const v = await peek(s, request([a, b], at(1)));
    t.equal(v.items[0]!.request?.state, 'pending');
    t.equal(v.items[0]!.request?.leaseExpired, true, 'request lease ended');
    t.equal(v.items[0]!.nonce?.leaseExpired, true, 'nonce lease ended');
    t.equal(v.items[1]!.request?.state, 'done', 'done stays done');
    t.equal(v.items[1]!.request?.leaseExpired, false);
    t.equal(v.items[1]!.nonce?.state, 'done');
  });

  t.test(`${name}: resume renews the lease of request and nonce claim, without velocity`, async (t) => {
    const s = await fresh(t);
    const a = item('a', { nonce: claim(1n), value: 9n });
    const vel = [{ scope: 'key' as const, subject: 'k1', windowSeconds: 3600 }];
    await write(s, request([a], at(0)), ['insert']);
    const expired = await peek(s, request([a], at(LEASE + 5000), { velocity: vel }));
    t.equal(expired.items[0]!.request?.leaseExpired, true);
    await write(s, request([a], at(LEASE + 5000)), ['resume']);
    const renewed = await peek(s, request([a], at(2 * LEASE + 4999), { velocity: vel }));
    t.equal(renewed.items[0]!.request?.leaseExpired, false, 'request lease renewed to now + leaseMs');
    t.equal(renewed.items[0]!.nonce?.leaseExpired, false, 'nonce lease renewed');
    t.equal(renewed.items[0]!.request?.state, 'pending');
    t.same(renewed.velocity, [{ count: 1, value: 9n }], 'a resumed item is not counted again');
    const again = await peek(s, request([a], at(2 * LEASE + 5000)));
    t.equal(again.items[0]!.request?.leaseExpired, true);
    t.equal(again.items[0]!.nonce?.leaseExpired, true);

    // Resuming a done record changes nothing.
    await s.complete([{ client: 'engine', requestId: 'a', result: Buffer.from('r') }], []);
    await write(s, request([a], at(3 * LEASE)), ['resume']);
    const done = await peek(s, request([a], at(3 * LEASE)));
    t.equal(done.items[0]!.request?.state, 'done');
    t.equal(Buffer.from(done.items[0]!.request!.result!).toString(), 'r');
  });

  t.test(`${name}: replaceNonce hands the nonce to a new request and archives the old claim`, async (t) => {
    const s = await fresh(t);
    const old = item('old', { nonce: claim(4n, { maxFeePerGas: 100n }), value: 3n });
    const bump = item('bump', { nonce: claim(4n, { maxFeePerGas: 150n, maxPriorityFeePerGas: 3n }), value: 3n });
    await write(s, request([old], at(0)), ['insert']);
    await s.complete([{ client: 'engine', requestId: 'old', result: Buffer.from('old signature') }], []);
    const before = await peek(s, request([bump], at(1000)));
    t.equal(before.items[0]!.nonce?.requestId, 'old', 'the bump sees the current holder');
    await write(s, request([bump], at(1000)), ['replaceNonce']);

    const v = await peek(
      s,
      request([bump, old], at(2000), { velocity: [{ scope: 'key', subject: 'k1', windowSeconds: 3600 }] }),
    );
    const n = v.items[0]!.nonce!;
    t.equal(n.requestId, 'bump');
    t.equal(n.client, 'engine');
    t.equal(hex(n.payloadHash), hex(bump.payloadHash));
    t.equal(n.maxFeePerGas, 150n);
    t.equal(n.maxPriorityFeePerGas, 3n);
    t.equal(n.state, 'pending');
    t.equal(n.result, undefined, 'the old result is not carried over');
    t.equal(n.leaseExpired, false);
    t.equal(v.items[0]!.request?.state, 'pending', 'the bump has a request record of its own');
    t.equal(v.items[1]!.request?.state, 'done', 'the old request keeps its record');
    t.equal(v.items[1]!.nonce?.requestId, 'bump', 'and sees the new holder');
    t.same(v.velocity, [{ count: 2, value: 6n }], 'a replacement counts for velocity');
    t.equal(v.items[0]!.nextNonce, 5n);

    if (opts.replacements) {
      const archived = await opts.replacements(s, 'k1@v1', 1n, 4n);
      t.equal(archived.length, 1, 'one archived claim');
      t.equal(hex(archived[0]!.payloadHash), hex(old.payloadHash));
      t.equal(archived[0]!.result?.toString(), 'old signature', 'with the result that was signed');
    }

    await s.complete([{ client: 'engine', requestId: 'old', result: Buffer.from('late') }], []);
    const after = await peek(s, request([bump], at(3000)));
    t.equal(
      after.items[0]!.nonce?.requestId,
      'bump',
      "a late completion of the old holder doesn't touch the new claim",
    );
    t.equal(after.items[0]!.nonce?.state, 'pending');
  });

  t.test(`${name}: two bumps of one nonce in one plan apply in order`, async (t) => {
    const s = await fresh(t);
    const a = item('a', { nonce: claim(1n, { maxFeePerGas: 10n }) });
    const b = item('b', { nonce: claim(1n, { maxFeePerGas: 20n }) });
    const c = item('c', { nonce: claim(1n, { maxFeePerGas: 30n }) });
    await write(s, request([a], at(0)), ['insert']);
    await write(s, request([b, c], at(1)), ['replaceNonce', 'replaceNonce']);
    const n = (await peek(s, request([c], at(2)))).items[0]!.nonce!;
    t.equal(n.requestId, 'c');
    t.equal(n.maxFeePerGas, 30n);
    if (opts.replacements) {
      t.same(
        (await opts.replacements(s, 'k1@v1', 1n, 1n)).map((r) => hex(r.payloadHash)),
        [hex(a.payloadHash), hex(b.payloadHash)],
      );
    }
  });

  t.test(`${name}: velocity sums per scope and subject within each window`, async (t) => {
    const s = await fresh(t);
    const big = 2n ** 200n + 1n;
    await write(s, request([item('a', { value: big })], at(0)), ['insert']);
    await write(s, request([item('b', { value: 7n })], at(60_000)), ['insert']);
    await write(
      s,
      request([item('c', { keyId: 'k2', value: 1n }), item('d', { keyId: 'k2', value: 2n })], at(60_000)),
      ['insert', 'insert'],
    );
    await write(s, request([item('e', { client: 'other', keyId: 'k3', value: 100n })], at(61_000)), ['insert']);
    await write(s, request([item('f', { value: 1000n })], at(60_000)), [undefined]); // no write: not counted

    const v = await peek(
      s,
      request([], at(65_000), {
        velocity: [
          { scope: 'key', subject: 'k1', windowSeconds: 30 },
          { scope: 'key', subject: 'k1', windowSeconds: 3600 },
          { scope: 'client', subject: 'engine', windowSeconds: 3600 },
          { scope: 'key', subject: 'k2', windowSeconds: 3600 },
          { scope: 'client', subject: 'other', windowSeconds: 3600 },
          { scope: 'key', subject: 'engine', windowSeconds: 3600 },
          { scope: 'key', subject: 'k1', windowSeconds: 61 },
          { scope: 'key', subject: 'k1', windowSeconds: 0 },
        ],
      }),
    );
    t.same(v.velocity, [
      { count: 1, value: 7n }, // window 30 s: from the bucket of 35 s on, only b (60 s)
      { count: 2, value: big + 7n },
      { count: 4, value: big + 10n }, // client: a, b, c, d (not e: another client)
      { count: 2, value: 3n },
      { count: 1, value: 100n },
      { count: 0, value: 0n }, // scopes do not mix
      { count: 2, value: big + 7n }, // 61 s reaches back to 4 s: the whole oldest bucket (0..10 s) counts
      { count: 1, value: 7n }, // 0 s: the current bucket
    ]);
    t.equal(typeof v.velocity[1]!.value, 'bigint');
    t.equal(typeof v.velocity[1]!.count, 'number');
  });

  t.test(`${name}: a batch is recorded with its items, all or nothing`, async (t) => {
    const s = await fresh(t);
    const items = [item('b-0', { nonce: claim(10n) }), item('b-1', { nonce: claim(11n) }), item('b-2')];
    const batch = { client: 'engine', batchId: 'batch-1' };
    const itemsHash = h('items of batch-1');
    await write(s, request(items, at(0), { batch }), ['insert', 'insert', 'insert'], { itemsHash });
    const v = await peek(s, request(items, at(1), { batch }));
    t.equal(hex(v.batch?.itemsHash), hex(itemsHash), 'batch record');
    t.same(
      v.items.map((x) => [x.request?.state, x.nonce?.requestId]),
      [
        ['pending', 'b-0'],
        ['pending', 'b-1'],
        ['pending', undefined],
      ],
    );
    t.equal((await peek(s, request([], at(1), { batch: { client: 'engine', batchId: 'batch-2' } }))).batch, undefined);
    t.equal(
      (await peek(s, request([], at(1), { batch: { client: 'other', batchId: 'batch-1' } }))).batch,
      undefined,
      'batch ids are per client',
    );

    // A plan that cannot be applied (nonce 11 is taken) leaves no trace of any of its writes.
    const clash = [item('c-0', { nonce: claim(12n), value: 50n }), item('c-1', { nonce: claim(11n) })];
    const batch2 = { client: 'engine', batchId: 'batch-2' };
    await t.rejects(write(s, request(clash, at(2), { batch: batch2 }), ['insert', 'insert'], { itemsHash }));
    const after = await peek(
      s,
      request(clash, at(3), { batch: batch2, velocity: [{ scope: 'key', subject: 'k1', windowSeconds: 3600 }] }),
    );
    t.same(after.items[0], { nextNonce: 12n }, 'first item not written');
    t.equal(after.items[1]!.nonce?.requestId, 'b-1', 'the holder is unchanged');
    t.equal(after.batch, undefined, 'batch not recorded');
    t.same(after.velocity, [{ count: 3, value: 3n }], 'velocity not counted');
  });

  t.test(`${name}: a throwing decide rejects the reservation and writes nothing`, async (t) => {
    const s = await fresh(t);
    const boom = new Error('policy exploded');
    await t.rejects(
      s.reserve(request([item('a')], at(0)), () => {
        throw boom;
      }),
      boom,
    );
    t.same((await peek(s, request([item('a')], at(0)))).items, [{}]);
  });

  t.test(`${name}: a failing reservation does not take others with it`, async (t) => {
    const s = await fresh(t);
    await write(s, request([item('taken', { nonce: claim(1n) })], at(0)), ['insert']);
    const insert = (it: ReserveItem) =>
      s.reserve(request([it], at(1)), () => ({
        outcome: it.requestId,
        writes: [{ index: 0, action: 'insert' as const }],
      }));
    // All submitted in one turn: a store that groups reservations must isolate their failures.
    const results = await Promise.allSettled([
      insert(item('good-1', { nonce: claim(2n) })),
      s.reserve(request([item('throws')], at(1)), () => {
        throw new Error('decide failed');
      }),
      insert(item('good-2')),
      insert(item('clash', { nonce: claim(1n) })), // nonce 1 is taken: the insert must fail
      insert(item('too-big', { nonce: claim(2n ** 64n) })), // no 64-bit column holds it
      insert(item('good-3', { nonce: claim(3n) })),
    ]);
    t.same(
      results.map((r) => r.status),
      ['fulfilled', 'rejected', 'fulfilled', 'rejected', 'rejected', 'fulfilled'],
    );
    t.same(
      results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : [])),
      ['good-1', 'good-2', 'good-3'],
    );
    const v = await peek(
      s,
      request(
        ['good-1', 'throws', 'good-2', 'clash', 'good-3'].map((id) => item(id)),
        at(2),
      ),
    );
    t.same(
      v.items.map((x) => x.request?.state),
      ['pending', undefined, 'pending', undefined, 'pending'],
      'the good ones are written, the failed ones not at all',
    );
  });

  t.test(`${name}: prune deletes old idempotency records, never nonce claims`, async (t) => {
    const s = await fresh(t);
    const old = item('old', { nonce: claim(1n) });
    const oldDone = item('old-done', { nonce: claim(2n) });
    const recent = item('recent', { nonce: claim(3n) });
    await write(
      s,
      request([old, oldDone], at(0), { batch: { client: 'engine', batchId: 'old-batch' } }),
      ['insert', 'insert'],
      { itemsHash: h('x') },
    );
    await s.complete([{ client: 'engine', requestId: 'old-done', result: Buffer.from('sig') }], []);
    await write(s, request([recent], at(120_000)), ['insert']);

    t.equal(await s.prune({ requests: at(60_000), velocity: at(60_000) }), 2, 'two requests were created before');
    const v = await peek(
      s,
      request([old, oldDone, recent], at(120_001), {
        batch: { client: 'engine', batchId: 'old-batch' },
        velocity: [{ scope: 'key', subject: 'k1', windowSeconds: 3600 }],
      }),
    );
    t.equal(v.items[0]!.request, undefined, 'old request pruned');
    t.equal(v.items[1]!.request, undefined, 'old done request pruned');
    t.equal(v.items[2]!.request?.state, 'pending', 'recent request kept');
    t.equal(v.items[0]!.nonce?.requestId, 'old', 'nonce claims are kept forever');
    t.equal(v.items[1]!.nonce?.state, 'done');
    t.equal(Buffer.from(v.items[1]!.nonce!.result!).toString(), 'sig');
    t.equal(v.batch, undefined, 'old batch record pruned');
    t.same(v.velocity, [{ count: 1, value: 1n }], 'velocity buckets older than the cut-off pruned');
    t.equal(await s.prune({ requests: at(60_000), velocity: at(60_000) }), 0, 'nothing left to prune');
  });

  t.test(`${name}: keys`, async (t) => {
    const s = await fresh(t);
    const key = (keyId: string, version: number, over: Partial<KeyRecord> = {}): KeyRecord => ({
      keyId,
      version,
      algorithm: 'ecdsa-secp256k1',
      ckaId: h(`cka ${keyId} ${version}`).subarray(0, 16),
      publicKey: randomBytes(65),
      state: 'active',
      createdAt: new Date(T0 + version),
      stateChangedAt: new Date(T0 + version),
      retireAt: null,
      ...over,
    });
    const keys = [
      key('b-key', 1),
      key('a-key', 2, { state: 'verify-only', algorithm: 'ed25519' }),
      key('a-key', 1),
      key('B-key', 1, { state: 'disabled' }),
    ];
    for (const k of keys) await s.insertKey(k, []);
    const listed = await s.listKeys();
    t.same(
      listed.map((k) => [k.keyId, k.version]),
      [
        ['B-key', 1],
        ['a-key', 1],
        ['a-key', 2],
        ['b-key', 1],
      ],
      'ordered by key id (byte order) and version',
    );
    const a2 = listed.find((k) => k.keyId === 'a-key' && k.version === 2)!;
    t.equal(a2.algorithm, 'ed25519');
    t.equal(a2.state, 'verify-only');
    t.equal(hex(a2.ckaId), hex(keys[1]!.ckaId));
    t.equal(hex(a2.publicKey), hex(keys[1]!.publicKey));
    t.equal(a2.createdAt.getTime(), T0 + 2);
    t.ok(a2.createdAt instanceof Date);
    await t.rejects(s.insertKey(key('a-key', 1), []), KeyExistsError, 'same key id and version');
    await t.rejects(s.insertKey(key('c-key', 1, { ckaId: keys[0]!.ckaId }), []), KeyExistsError, 'same CKA_ID');
    t.equal((await s.listKeys()).length, 4);
  });

  t.test(`${name}: key rotation and state changes`, async (t) => {
    const s = await fresh(t);
    const v1: KeyRecord = {
      keyId: 'rot',
      version: 1,
      algorithm: 'ecdsa-secp256k1',
      ckaId: h('cka rot 1').subarray(0, 16),
      publicKey: randomBytes(65),
      state: 'active',
      createdAt: at(0),
      stateChangedAt: at(0),
      retireAt: null,
    };
    const v2: KeyRecord = {
      ...v1,
      version: 2,
      ckaId: h('cka rot 2').subarray(0, 16),
      publicKey: randomBytes(65),
      createdAt: at(1000),
      stateChangedAt: at(1000),
    };
    await s.insertKey(v1, []);
    await s.rotateKey(v2, 1, at(61_000), []);
    const [r1, r2] = await s.listKeys();
    t.same(
      [r1!.state, r1!.stateChangedAt.getTime(), r1!.retireAt?.getTime()],
      ['verify-only', T0 + 1000, T0 + 61_000],
      'the old version is verify-only until retireAt',
    );
    t.same(
      [r2!.version, r2!.state, r2!.stateChangedAt.getTime(), r2!.retireAt],
      [2, 'active', T0 + 1000, null],
      'the new one active',
    );
    const v3 = { ...v2, version: 3, ckaId: h('cka rot 3').subarray(0, 16) };
    const stale = s.rotateKey(v3, 1, at(70_000), []);
    await t.rejects(stale, KeyExistsError, 'rotating from a version that is no longer active');
    await t.rejects(s.rotateKey({ ...v3, version: 2 }, 2, at(70_000), []), KeyExistsError, 'a version that exists');
    t.same(
      (await s.listKeys()).map((k) => [k.version, k.state]),
      [
        [1, 'verify-only'],
        [2, 'active'],
      ],
      'a failed rotation changes nothing',
    );

    t.equal(await s.setKeyState('rot', 1, ['verify-only'], 'disabled', at(61_000), []), true);
    const again = await s.setKeyState('rot', 1, ['verify-only'], 'disabled', at(62_000), []);
    t.equal(again, false, 'not from a state it is not in');
    const missing = await s.setKeyState('rot', 9, ['active'], 'disabled', at(62_000), []);
    t.equal(missing, false, 'not a version that does not exist');
    const [d1] = await s.listKeys();
    t.same([d1!.state, d1!.stateChangedAt.getTime(), d1!.retireAt], ['disabled', T0 + 61_000, null]);
  });

  t.test(`${name}: ceremonies: one per key version; a key change ends its own, in its transaction`, async (t) => {
    const s = await fresh(t);
    const ev = (kind: string) => eventDraft(kind, at(0), 'admin', { keyId: 'tss', keyVersion: 1 });
    const c = (sessionId: string, version = 1): CeremonyRecord => ({
      sessionId,
      keyId: 'tss',
      version,
      kind: 'dkg',
      participants: [1, 2, 3],
      step: 'started',
      plan: '{"op":"create"}',
      startedAt: at(version),
    });
    await s.putCeremony(c('session-a'), [ev('ceremony.start')]);
    await t.rejects(s.putCeremony(c('session-b'), []), KeyExistsError, 'a second ceremony of the key version');
    await s.putCeremony({ ...c('session-a'), step: 'prepared', plan: '{"op":"create","epoch":1}' }, [
      ev('ceremony.prepare'),
    ]);
    await s.putCeremony(c('session-c', 2), []);
    t.same(
      (await s.listCeremonies()).map((r) => [r.sessionId, r.version, r.step, r.plan, r.participants]),
      [
        ['session-a', 1, 'prepared', '{"op":"create","epoch":1}', [1, 2, 3]],
        ['session-c', 2, 'started', '{"op":"create"}', [1, 2, 3]],
      ],
      'stored, the step moved forward in place',
    );
    const key: KeyRecord = {
      keyId: 'tss',
      version: 1,
      algorithm: 'frost-ed25519',
      ckaId: h('cka tss 1').subarray(0, 16),
      publicKey: randomBytes(32),
      state: 'active',
      createdAt: at(0),
      stateChangedAt: at(0),
      retireAt: null,
    };
    const entries = (await readChain(s)).length;
    await t.rejects(s.insertKey(key, [ev('key.create')], 'session-gone'), 'a key change whose ceremony is gone');
    t.same(await s.listKeys(), [], 'changes nothing');
    t.equal((await readChain(s)).length, entries, 'and writes no entry');
    await s.insertKey(key, [ev('key.create')], 'session-a');
    t.same(
      (await s.listCeremonies()).map((r) => r.sessionId),
      ['session-c'],
      'the key and the end of its ceremony commit together',
    );
    t.equal(await s.dropCeremony('session-c', [ev('ceremony.rollback')]), true);
    t.equal(await s.dropCeremony('session-c', [ev('ceremony.rollback')]), false, 'dropped once');
    const kinds = (await readChain(s)).map((e) => e.kind);
    t.same(
      kinds.filter((k) => k.startsWith('ceremony.') || k.startsWith('key.')),
      ['ceremony.start', 'ceremony.prepare', 'key.create', 'ceremony.rollback'],
      'each change with its entry',
    );
  });

  t.test(`${name}: policies keep every version`, async (t) => {
    const s = await fresh(t);
    const p1 = await s.putPolicy('hot', '{"v":1}', 'config', at(0), () => []);
    const p2 = await s.putPolicy('hot', '{"v":2}', 'alice', at(1000), () => []);
    await s.putPolicy('Cold', '{"c":1}', 'config', at(2000), () => []);
    t.same([p1.version, p2.version], [1, 2]);
    t.same(p2, { name: 'hot', version: 2, document: '{"v":2}', updatedAt: at(1000), updatedBy: 'alice' });
    t.same(
      (await s.listPolicies()).map((p) => [p.name, p.version, p.document]),
      [
        ['Cold', 1, '{"c":1}'],
        ['hot', 2, '{"v":2}'],
      ],
    );
    t.same(
      (await s.policyHistory('hot')).map((p) => [p.version, p.updatedBy, p.updatedAt.getTime()]),
      [
        [1, 'config', T0],
        [2, 'alice', T0 + 1000],
      ],
    );
    t.same(await s.policyHistory('none'), []);
  });

  t.test(`${name}: key, policy and lease changes commit with their audit entries, or not at all`, async (t) => {
    const s = await fresh(t);
    const v = (version: number, over: Partial<KeyRecord> = {}): KeyRecord => ({
      keyId: 'aud',
      version,
      algorithm: 'frost-ed25519',
      ckaId: h(`cka aud ${version}`).subarray(0, 16),
      publicKey: h(`pub aud ${version}`),
      state: 'active',
      createdAt: at(version),
      stateChangedAt: at(version),
      retireAt: null,
      threshold: { minSigners: 2, cosigners: [1, 2], epoch: 0, sharesSince: at(0).toISOString(), publicPackage: '{}' },
      ...over,
    });
    const event = (kind: string, intent: Record<string, string> | null = null): AuditDraft =>
      draft(null, { kind, at: at(5), decision: 'done', intent, payloadHash: null, signatureHash: null });
    const bad = (): AuditDraft => ({ ...event('bad'), at: new Date(Number.NaN) });
    const kinds = async () => (await readChain(s)).map((e) => e.kind);
    const states = async () => (await s.listKeys()).map((k) => `v${k.version}:${k.state}:${k.threshold?.epoch}`);

    await s.insertKey(v(1), [event('key.create')]);
    await t.rejects(s.insertKey(v(9), [bad()]), 'an insert whose entry cannot be written fails');
    await t.rejects(s.insertKey(v(1), [event('key.create')]), KeyExistsError, 'an insert that fails writes no entry');
    t.same(await states(), ['v1:active:0'], 'neither inserted anything');
    t.same(await kinds(), ['key.create']);

    await t.rejects(s.rotateKey(v(2), 1, at(60), [bad()]), 'a rotation whose entry cannot be written fails');
    t.same(await states(), ['v1:active:0'], 'and changes nothing');
    await s.rotateKey(v(2), 1, at(60), [event('key.rotate', { previousVersion: '1' })]);
    const lost = s.rotateKey(v(3), 1, at(60), [event('key.rotate')]);
    await t.rejects(lost, KeyExistsError, 'a lost rotation writes no entry');
    t.same(await states(), ['v1:verify-only:0', 'v2:active:0']);

    const info = { ...v(2).threshold!, epoch: 1 };
    await t.rejects(s.updateThreshold('aud', 2, info, [bad()]), 'a refresh whose entry cannot be written fails');
    await t.rejects(s.updateThreshold('aud', 7, info, [event('key.refresh')]), 'a refresh of a missing version fails');
    t.same(await states(), ['v1:verify-only:0', 'v2:active:0'], 'and neither changed the shares');
    await s.updateThreshold('aud', 2, info, [event('key.refresh', { epoch: '1' })]);

    const unaudited = s.setKeyState('aud', 1, ['verify-only'], 'disabled', at(70), [bad()]);
    await t.rejects(unaudited, 'a state change whose entry cannot be written fails');
    const moved = await s.setKeyState('aud', 1, ['active'], 'disabled', at(70), [event('key.disable')]);
    t.equal(moved, false, 'a change that does not apply');
    t.same(await states(), ['v1:verify-only:0', 'v2:active:1'], 'the refresh applied, the failed changes did not');
    t.equal(await s.setKeyState('aud', 1, ['verify-only'], 'disabled', at(70), [event('key.disable')]), true);

    await t.rejects(
      s.putPolicy('p', '{"v":1}', 'alice', at(80), () => [bad()]),
      'a policy without its entry fails',
    );
    t.same(await s.policyHistory('p'), [], 'and is not stored');
    const policyEvent = (version: number) => [event('policy.set', { version: String(version) })];
    const p = await s.putPolicy('p', '{"v":1}', 'alice', at(80), policyEvent);
    t.equal(p.version, 1, 'the version the entry was made for');

    await write(s, request([item('lease')], at(0)), ['insert']);
    const lease = async () => (await peek(s, request([item('lease')], at(1)))).items[0]!.request?.leaseExpired;
    const leased = [{ client: 'engine', requestId: 'lease' }];
    await t.rejects(s.abandon(leased, [bad()]), 'a release without its entry fails');
    t.equal(await lease(), false, 'and keeps the lease');
    await s.abandon(leased, [event('sign.failed')]);
    t.equal(await lease(), true);

    const entries = await readChain(s);
    t.same(
      entries.map((e) => [e.kind, e.intent]),
      [
        ['key.create', null],
        ['key.rotate', { previousVersion: '1' }],
        ['key.refresh', { epoch: '1' }],
        ['key.disable', null],
        ['policy.set', { version: '1' }],
        ['sign.failed', null],
      ],
      'exactly one entry per change that committed, in order',
    );
    checkChain(t, entries);
  });

  t.test(`${name}: audit entries of reserve, complete and appendAudit form one chain 1..N`, async (t) => {
    const s = await fresh(t);
    t.equal(await s.auditHead(), undefined, 'an empty log has no head');
    t.same(await readChain(s), [], 'and no entries');

    const a = item('a', { nonce: claim(1n) });
    const batchDraft = draft('batch-1', {
      kind: 'batch',
      intent: { items: '1', totalValue: '1' },
      signatureHash: null,
    });
    t.equal(
      await s.reserve(request([a], at(0)), () => ({
        outcome: 'reserved',
        writes: [{ index: 0, action: 'insert' }],
        audit: [batchDraft],
      })),
      'reserved',
    );
    // A refusal: entries and no writes.
    await s.reserve(request([item('r')], at(1)), () => ({
      outcome: 'refused',
      writes: [],
      audit: [
        draft('r', { at: at(1), decision: 'refused', reason: 'VELOCITY', signatureHash: null }),
        draft('r2', { at: at(1), decision: 'refused', reason: 'NONCE', signatureHash: null }),
      ],
    }));
    await s.reserve(request([item('quiet')], at(1)), () => ({ outcome: 0, writes: [], audit: [] }));
    await s.complete(
      [{ client: 'engine', requestId: 'a', result: Buffer.from('signed a') }],
      [draft('a', { at: at(2) })],
    );
    await s.complete([], [draft('failed', { at: at(2), decision: 'refused', reason: 'HSM', signatureHash: null })]);
    await s.complete([], []);
    const event: AuditDraft = {
      kind: 'key.create',
      at: new Date(T0 + 3_123),
      client: null,
      keyId: 'k2',
      keyVersion: 3,
      requestId: null,
      payloadHash: null,
      intent: null,
      decision: 'done',
      reason: null,
      signatureHash: null,
    };
    await s.appendAudit([
      event,
      {
        ...event,
        kind: 'policy.set',
        keyId: null,
        keyVersion: null,
        client: 'admin',
        intent: { name: 'hot', version: '2' },
      },
    ]);
    await s.appendAudit([]);

    const entries = await readChain(s);
    t.same(
      entries.map((e) => [e.seq, e.kind, e.requestId, e.decision, e.reason]),
      [
        [1, 'batch', 'batch-1', 'allowed', null],
        [2, 'sign', 'r', 'refused', 'VELOCITY'],
        [3, 'sign', 'r2', 'refused', 'NONCE'],
        [4, 'sign', 'a', 'allowed', null],
        [5, 'sign', 'failed', 'refused', 'HSM'],
        [6, 'key.create', null, 'done', null],
        [7, 'policy.set', null, 'done', null],
      ],
      'every draft, in the order of the calls and within each call',
    );
    checkChain(t, entries);
    t.same(
      entries[3],
      {
        seq: 4,
        at: at(2).toISOString(),
        kind: 'sign',
        client: 'engine',
        keyId: 'k1',
        keyVersion: 1,
        requestId: 'a',
        payloadHash: hex(h('payload a')),
        intent: { kind: 'evm', chainId: '1', nonce: '7', to: '0x00000000000000000000000000000000000000aa', value: '5' },
        decision: 'allowed',
        reason: null,
        signatureHash: hex(h('signature a')),
        prevHash: entries[2]!.hash,
        hash: entries[3]!.hash,
      },
      'a complete entry reads back as drafted',
    );
    t.strictSame(
      { ...entries[5]!, hash: '' },
      {
        seq: 6,
        at: new Date(T0 + 3_123).toISOString(),
        kind: 'key.create',
        client: null,
        keyId: 'k2',
        keyVersion: 3,
        requestId: null,
        payloadHash: null,
        intent: null,
        decision: 'done',
        reason: null,
        signatureHash: null,
        prevHash: entries[4]!.hash,
        hash: '',
      },
      'absent values read back as null',
    );
    t.equal(entries[0]!.prevHash, GENESIS);
    t.same(await s.auditHead(), { seq: 7, hash: entries[6]!.hash }, 'the head is the last entry');
    const v = await peek(s, request([a, item('r')], at(3)));
    t.equal(v.items[0]!.request?.state, 'done', 'the completion committed with its entry');
    t.equal(v.items[1]!.request, undefined, 'the refusal wrote no request');
  });

  t.test(`${name}: a refused or rolled back reservation leaves no audit entry`, async (t) => {
    const s = await fresh(t);
    await write(s, request([item('taken', { nonce: claim(1n) })], at(0)), ['insert']);
    await t.rejects(
      s.reserve(request([item('x')], at(1)), () => {
        throw new Error('decide failed');
      }),
    );
    // The writes fail (nonce 1 is taken): the plan's entry goes with them.
    await t.rejects(
      s.reserve(request([item('clash', { nonce: claim(1n) })], at(1)), () => ({
        outcome: 1,
        writes: [{ index: 0, action: 'insert' }],
        audit: [draft('clash')],
      })),
    );
    t.same(await readChain(s), [], 'nothing appended');
    t.equal(await s.auditHead(), undefined);

    // In one turn (one group transaction, where the store groups): failures take only their own
    // entries with them, and a group retried because of one of them appends the others once.
    const insert = (it: ReserveItem, audit: AuditDraft[]) =>
      s.reserve(request([it], at(2)), () => ({
        outcome: it.requestId,
        writes: [{ index: 0, action: 'insert' as const }],
        audit,
      }));
    const results = await Promise.allSettled([
      insert(item('good-1', { nonce: claim(2n) }), [draft('good-1')]),
      s.reserve(request([item('throws')], at(2)), () => {
        throw new Error('decide failed');
      }),
      insert(item('good-2'), [draft('good-2'), draft('good-2b')]),
      insert(item('clash-2', { nonce: claim(1n) }), [draft('clash-2')]),
      insert(item('bad-draft'), [draft('bad-draft', { at: new Date(Number.NaN) })]),
      s.reserve(request([item('refused')], at(2)), () => ({
        outcome: 'refused',
        writes: [],
        audit: [draft('refused', { decision: 'refused' })],
      })),
      insert(item('good-3', { nonce: claim(3n) }), [draft('good-3')]),
    ]);
    t.same(
      results.map((r) => r.status),
      ['fulfilled', 'rejected', 'fulfilled', 'rejected', 'rejected', 'fulfilled', 'fulfilled'],
    );
    const entries = await readChain(s);
    t.same(
      entries.map((e) => e.requestId),
      ['good-1', 'good-2', 'good-2b', 'refused', 'good-3'],
      'exactly the entries of the reservations that committed, once each, in order',
    );
    checkChain(t, entries);
    const v = await peek(s, request([item('bad-draft')], at(3)));
    t.equal(v.items[0]!.request, undefined, 'a reservation whose entry cannot be written writes nothing');

    // A completion whose entry cannot be written stores no result either.
    await t.rejects(
      s.complete(
        [{ client: 'engine', requestId: 'good-2', result: Buffer.from('sig') }],
        [draft('good-2', { at: new Date(Number.NaN) })],
      ),
    );
    t.equal(
      (await peek(s, request([item('good-2')], at(3)))).items[0]!.request?.state,
      'pending',
      'no result without its entry',
    );
    await t.rejects(s.appendAudit([draft('ok'), draft('bad', { at: new Date(Number.NaN) })]));
    t.equal((await readChain(s)).length, 5, 'appendAudit is all or nothing');
  });

  t.test(`${name}: readAudit reads long ranges in pages`, async (t) => {
    const s = await fresh(t);
    const N = 2500;
    // Five calls in one turn (a store may append them in one transaction), 500 drafts each.
    await Promise.all(
      Array.from({ length: 5 }, (_, c) =>
        s.appendAudit(Array.from({ length: 500 }, (_, k) => draft(`e${c * 500 + k}`, { at: at(c * 500 + k) }))),
      ),
    );
    const entries = await readChain(s);
    t.equal(entries.length, N, `all ${N} entries`);
    checkChain(t, entries);
    // Concurrent calls have no order among themselves; each call's drafts are in order.
    const seqOf = new Map(entries.map((e) => [e.requestId, e.seq]));
    t.equal(seqOf.size, N, 'each draft once');
    t.ok(
      Array.from({ length: N }, (_, i) => i).every(
        (i) => i % 500 === 0 || seqOf.get(`e${i}`) === seqOf.get(`e${i - 1}`)! + 1,
      ),
      "each call's drafts consecutive and in order",
    );
    const within = (from: number, to: number) => readRange(s, from, to);
    t.same(
      (await within(999, 1001)).map((e) => e.seq),
      [999, 1000, 1001],
      'across a page boundary',
    );
    t.same(
      (await within(1000, 2001)).map((e) => e.seq),
      Array.from({ length: 1002 }, (_, i) => 1000 + i),
      'more than a page from the middle',
    );
    t.equal((await within(1500, Number.MAX_SAFE_INTEGER)).length, 1001, 'to the end');
    t.same(await within(N + 1, N + 100), [], 'past the head');
    t.same(await within(10, 9), [], 'an empty range');
    t.same(
      (await within(N, N)).map((e) => e.seq),
      [N],
      'one entry',
    );
    let taken = 0;
    for await (const e of s.readAudit(1, N)) {
      if (++taken === 3) {
        t.equal(e.seq, 3);
        break;
      }
    }
    t.equal(taken, 3, 'a reader may stop early');
  });

  t.test(`${name}: an entry's signed request is stored, read back and hashed with it`, async (t) => {
    const s = await fresh(t);
    const request = {
      message: 'aa'.repeat(40),
      signature: 'bb'.repeat(70),
      signingKey: `spki-sha256:${'cc'.repeat(32)}`,
    };
    await s.appendAudit([draft('plain'), draft('signed', { request }), draft('plain-2')]);
    const entries = await readChain(s);
    checkChain(t, entries);
    t.same(entries[1]!.request, request, 'the request reads back');
    t.notOk('request' in entries[0]! || 'request' in entries[2]!, 'entries without one have no request field');
    const { hash, request: _r, ...without } = entries[1]!;
    t.not(entryHash(without), hash, 'the request is part of the hash');
  });

  t.test(`${name}: auditRange finds the seq range of a time range`, async (t) => {
    const s = await fresh(t);
    t.equal(await s.auditRange(null, null), undefined, 'an empty log');
    await s.appendAudit([at(0), at(0), at(1000), at(2000), at(3000)].map((time, i) => draft(`t${i}`, { at: time })));
    t.same(await s.auditRange(null, null), { first: 1, last: 5 });
    t.same(await s.auditRange(at(1000), at(3000)), { first: 3, last: 4 }, 'from inclusive, to exclusive');
    t.same(await s.auditRange(at(999), at(1001)), { first: 3, last: 3 });
    t.same(await s.auditRange(at(1000), null), { first: 3, last: 5 }, 'open end');
    t.same(await s.auditRange(null, at(1000)), { first: 1, last: 2 }, 'open start');
    t.equal(await s.auditRange(at(3001), null), undefined, 'nothing after');
    t.equal(await s.auditRange(at(1), at(1000)), undefined, 'nothing between');
  });

  t.test(`${name}: checkpoints: the first one of a seq stays`, async (t) => {
    const s = await fresh(t);
    const cp = (seq: number, signature: string): StoredCheckpoint => ({
      seq,
      headHash: hex(h(`head ${seq}`))!,
      at: at(seq).toISOString(),
      auditKey: { keyId: 'audit', version: 2 },
      signature,
    });
    t.same(await s.checkpoints(0, 100), []);
    await s.putCheckpoint(cp(10, 'first'));
    await s.putCheckpoint(cp(10, 'second'));
    await Promise.all([s.putCheckpoint(cp(20, 'a')), s.putCheckpoint(cp(5, 'b')), s.putCheckpoint(cp(20, 'c'))]);
    t.same(
      await s.checkpoints(0, 100),
      [cp(5, 'b'), cp(10, 'first'), cp(20, 'a')],
      'in seq order, a repeated seq ignored',
    );
    t.same(await s.checkpoints(5, 10), [cp(5, 'b'), cp(10, 'first')], 'bounds inclusive');
    t.same(await s.checkpoints(11, 19), []);
  });

  t.test(`${name}: concurrent audit appends on one instance make one chain`, async (t) => {
    const s = await fresh(t);
    const results = await Promise.all([runAuditRace(s, 'one', 150), runAuditRace(s, 'two', 150)]);
    await checkAuditRace(t, s, results);
  });

  t.test(`${name}: concurrent reservations on one instance`, async (t) => {
    const s = await fresh(t);
    const results = await Promise.all([runRace(s, 'one'), runRace(s, 'two')]);
    await checkRace(t, s, results);
  });

  if (opts.twins) {
    const twins = opts.twins;
    t.test(
      `${name}: two instances on one database race: one winner per nonce, request id and velocity slot`,
      async (t) => {
        const [a, b] = await twins();
        t.teardown(async () => {
          await a.close();
          await b.close();
        });
        const results = await Promise.all([runRace(a, 'a'), runRace(b, 'b')]);
        await checkRace(t, a, results);
        await checkRace(t, b, results, { quiet: true });
      },
    );

    t.test(`${name}: two instances racing to take over expired leases and bump fees: one winner each`, async (t) => {
      const [a, b] = await twins();
      t.teardown(async () => {
        await a.close();
        await b.close();
      });
      // 10 expired pending reservations (without a nonce: nothing but the request record
      // orders the retries), each retried 10 times at once; 10 signed nonces, each bumped 10
      // times at once by requests that only replace the original holder.
      const stale = Array.from({ length: 10 }, (_, i) => item(`stale-${i}`));
      const held = Array.from({ length: 10 }, (_, i) => item(`held-${i}`, { nonce: claim(BigInt(100 + i)) }));
      await write(
        a,
        request([...stale, ...held], at(0)),
        [...stale, ...held].map(() => 'insert' as const),
      );
      await a.complete(
        held.map((it) => ({ client: it.client, requestId: it.requestId, result: Buffer.from('signed') })),
        [],
      );
      const later = at(2 * LEASE);
      const takeovers = stale.flatMap((it, i) =>
        Array.from({ length: 10 }, (_, k) =>
          (k % 2 ? a : b).reserve(request([it], later), (view): ReservePlan<string | undefined> => {
            const r = view.items[0]!.request;
            return r?.state === 'pending' && r.leaseExpired
              ? { outcome: `${i}`, writes: [{ index: 0, action: 'resume' }] }
              : { outcome: undefined, writes: [] };
          }),
        ),
      );
      // Apart from the bumps: in a store that groups reservations into one transaction, the
      // bumps' key lock would cover the takeovers too and hide a missing row lock.
      const took = (await Promise.all(takeovers)).filter((x) => x !== undefined);
      const bumps = held.flatMap((it, i) =>
        Array.from({ length: 10 }, (_, k) =>
          (k % 2 ? a : b).reserve(
            request(
              [item(`bump-${i}-${k}`, { nonce: claim(BigInt(100 + i), { maxFeePerGas: 200n + BigInt(k) }) })],
              later,
            ),
            (view): ReservePlan<string | undefined> =>
              view.items[0]!.nonce?.requestId === it.requestId
                ? { outcome: `${i}/${k}`, writes: [{ index: 0, action: 'replaceNonce' }] }
                : { outcome: undefined, writes: [] },
          ),
        ),
      );
      const bumped = (await Promise.all(bumps)).filter((x) => x !== undefined);
      t.same(
        took.sort(),
        Array.from({ length: 10 }, (_, i) => `${i}`).sort(),
        'each expired reservation is taken over exactly once',
      );
      t.same(
        bumped.map((x) => x!.split('/')[0]).sort(),
        Array.from({ length: 10 }, (_, i) => `${i}`).sort(),
        'each nonce is bumped exactly once',
      );
      const v = await peek(
        b,
        request(
          held.map((it) => item('check', { nonce: it.nonce! })),
          later,
        ),
      );
      t.ok(
        v.items.every(
          (x, i) => x.nonce?.requestId === `bump-${bumped.find((w) => w!.startsWith(`${i}/`))!.replace('/', '-')}`,
        ),
        'the nonce is held by the winning bump',
      );
      if (opts.replacements) {
        const archived = await Promise.all(
          held.map((it) => opts.replacements!(a, it.nonce!.account, 1n, it.nonce!.nonce)),
        );
        t.ok(
          archived.every((rows) => rows.length === 1),
          'one archived claim per nonce',
        );
      }
    });

    t.test(`${name}: retries in opposite orders on two instances: no lock cycle, one takeover each`, async (t) => {
      const [a, b] = await twins();
      t.teardown(async () => {
        await a.close();
        await b.close();
      });
      const ids = Array.from({ length: 20 }, (_, i) => `retry-${i}`);
      await write(
        a,
        request(
          ids.map((id) => item(id)),
          at(0),
        ),
        ids.map(() => 'insert' as const),
      );
      const later = at(2 * LEASE);
      const retry = (s: TestStore, id: string) =>
        s.reserve(
          request([item(id)], later),
          (view): ReservePlan<number> =>
            view.items[0]!.request?.leaseExpired
              ? { outcome: 1, writes: [{ index: 0, action: 'resume' }] }
              : { outcome: 0, writes: [] },
        );
      const started = Date.now();
      const took = await Promise.all([
        ...ids.map((id) => retry(a, id)),
        ...[...ids].reverse().map((id) => retry(b, id)),
      ]);
      const ms = Date.now() - started;
      t.equal(
        took.reduce((x, y) => x + y, 0),
        20,
        'each expired reservation taken over once',
      );
      // A lock cycle is only broken by PostgreSQL's deadlock detector (deadlock_timeout, 1 s).
      t.ok(ms < 1000, `done in ${ms} ms, without waiting for a deadlock to be detected`);
    });

    t.test(`${name}: two instances appending to the audit log at once make one chain`, async (t) => {
      const [a, b] = await twins();
      t.teardown(async () => {
        await a.close();
        await b.close();
      });
      const results = await Promise.all([runAuditRace(a, 'a'), runAuditRace(b, 'b')]);
      await checkAuditRace(t, a, results);
      t.same(await readChain(b), await readChain(a), 'both instances read the same chain');
      const cps = Array.from({ length: 10 }, (_, i) => ({
        seq: 1,
        headHash: hex(h(`head ${i}`))!,
        at: RACE_NOW.toISOString(),
        auditKey: { keyId: 'audit', version: 1 },
        signature: `sig-${i}`,
      }));
      await Promise.all(cps.map((c, i) => (i % 2 ? a : b).putCheckpoint(c)));
      t.equal((await b.checkpoints(1, 1)).length, 1, 'one checkpoint per seq, whoever wrote first');
    });

    t.test(`${name}: two instances rotating one key at once: one rotation wins`, async (t) => {
      const [a, b] = await twins();
      t.teardown(async () => {
        await a.close();
        await b.close();
      });
      const version = (v: number, state: KeyRecord['state'] = 'active'): KeyRecord => ({
        keyId: 'rot',
        version: v,
        algorithm: 'ed25519',
        ckaId: h(`cka rot ${v}`).subarray(0, 16),
        publicKey: randomBytes(32),
        state,
        createdAt: at(v),
        stateChangedAt: at(v),
        retireAt: null,
      });
      await a.insertKey(version(1), []);
      const rotated = (v: number) => draft(null, { kind: 'key.rotate', keyId: 'rot', keyVersion: v, decision: 'done' });
      const rotate = (i: number) => (i % 2 ? a : b).rotateKey(version(2 + i), 1, at(60_000), [rotated(2 + i)]);
      const tries = await Promise.allSettled(Array.from({ length: 10 }, (_, i) => rotate(i)));
      t.equal(tries.filter((r) => r.status === 'fulfilled').length, 1, 'one rotation');
      t.ok(
        tries.every((r) => r.status === 'fulfilled' || r.reason instanceof KeyExistsError),
        'the others are told another replica rotated first',
      );
      const winner = 2 + tries.findIndex((r) => r.status === 'fulfilled');
      t.same(
        (await b.listKeys()).map((k) => [k.version, k.state]),
        [
          [1, 'verify-only'],
          [winner, 'active'],
        ],
        'the old version verify-only, only the winner inserted',
      );
      const entries = await readChain(b);
      t.same(
        entries.map((e) => [e.kind, e.keyVersion]),
        [['key.rotate', winner]],
        "one entry: the winner's",
      );
    });

    t.test(`${name}: two instances setting one policy get distinct versions`, async (t) => {
      const [a, b] = await twins();
      t.teardown(async () => {
        await a.close();
        await b.close();
      });
      const set = (i: number) => (v: number) => [
        draft(`admin-${i}`, { kind: 'policy.set', intent: { version: String(v) } }),
      ];
      const put = (i: number) => (i % 2 ? a : b).putPolicy('p', `{"i":${i}}`, `admin-${i}`, at(i), set(i));
      const puts = await Promise.all(Array.from({ length: 20 }, (_, i) => put(i)));
      t.same(
        puts.map((p) => p.version).sort((x, y) => x - y),
        Array.from({ length: 20 }, (_, i) => i + 1),
      );
      const history = await a.policyHistory('p');
      t.equal(history.length, 20);
      for (const p of puts)
        t.equal(history[p.version - 1]!.document, p.document, `version ${p.version} is what its put returned`);
      // Each put's entry once, made for the version that committed (a retried put appends once).
      const entries = await readChain(a);
      t.same(
        entries.map((e) => `${e.requestId}:${e.intent!.version}`).sort(),
        puts.map((p) => `${p.updatedBy}:${p.version}`).sort(),
        'one entry per put, naming the version it got',
      );
      checkChain(t, entries);
    });

    t.test(`${name}: two instances racing batches: all or nothing, disjoint winners`, async (t) => {
      const [a, b] = await twins();
      t.teardown(async () => {
        await a.close();
        await b.close();
      });
      // 40 batches of 4 nonces out of 0..19, overlapping at random.
      const batches = Array.from({ length: 40 }, (_, i) => {
        const nonces = new Set<bigint>();
        while (nonces.size < 4) nonces.add(BigInt(Math.floor(Math.random() * 20)));
        return { i, nonces: [...nonces] };
      });
      const won = await Promise.all(
        batches.map(({ i, nonces }) =>
          (i % 2 ? a : b).reserve(
            request(
              nonces.map((n, j) => item(`batch${i}-${j}`, { nonce: claim(n), payloadHash: h(`batch ${i} item ${j}`) })),
              RACE_NOW,
              { batch: { client: 'engine', batchId: `batch${i}` } },
            ),
            (view) => {
              const plan = takeIfFree(view);
              return plan.outcome ? { ...plan, batch: { batchId: `batch${i}`, itemsHash: h(`batch ${i}`) } } : plan;
            },
          ),
        ),
      );
      const winners = batches.filter((_, i) => won[i]);
      const claimed = winners.flatMap((w) => w.nonces.map(String));
      t.ok(winners.length >= 1, `${winners.length} of 40 batches won`);
      t.equal(new Set(claimed).size, claimed.length, 'no nonce is claimed by two winning batches');
      for (const { i, nonces } of batches) {
        const v = await peek(
          a,
          request(
            nonces.map((n, j) => item(`batch${i}-${j}`, { nonce: claim(n) })),
            RACE_NOW,
            { batch: { client: 'engine', batchId: `batch${i}` } },
          ),
        );
        if (won[i]) {
          t.ok(
            v.items.every((x, j) => x.request && x.nonce?.requestId === `batch${i}-${j}`),
            `batch ${i}: every item holds its nonce`,
          );
          t.equal(hex(v.batch?.itemsHash), hex(h(`batch ${i}`)));
        } else {
          t.ok(v.items.every((x) => !x.request) && !v.batch, `batch ${i}: nothing of it was written`);
        }
      }
    });
  }
}

/**
 * Checks the outcome of {@link runRace} by several participants: exactly one winner per nonce
 * and per request id, exactly `velocityLimit` velocity winners, and the store holds exactly the
 * winners' payloads.
 */
export async function checkRace(t: Test, store: ReplayStore, results: RaceResult[], { quiet = false } = {}) {
  const wins = results.flatMap((r) => r.wins);
  const byNonce = new Map<string, string[]>();
  const byRequest = new Map<string, string[]>();
  for (const w of wins) {
    if (w.nonce !== undefined) byNonce.set(w.nonce, [...(byNonce.get(w.nonce) ?? []), w.payloadHash]);
    else byRequest.set(w.requestId, [...(byRequest.get(w.requestId) ?? []), w.payloadHash]);
  }
  const attempts = results.reduce((n, r) => n + r.attempts, 0);
  const decides = results.reduce((n, r) => n + r.decideCalls, 0);
  if (!quiet) {
    t.comment(`${attempts} reservations by ${results.length} participants, decide ran ${decides} times`);
    t.equal(byNonce.size, 50, 'every nonce 0..49 was won');
    t.ok(
      [...byNonce.values()].every((w) => w.length === 1),
      'exactly one winner per nonce',
    );
    t.equal(byRequest.size, 50, 'every request id r0..r49 was won');
    t.ok(
      [...byRequest.values()].every((w) => w.length === 1),
      'exactly one winner per request id',
    );
    t.equal(
      results.reduce((n, r) => n + r.velocityWins, 0),
      RACE.velocityLimit,
      `exactly ${RACE.velocityLimit} reservations within the velocity limit`,
    );
    t.ok(decides >= attempts, 'decide ran at least once per reservation');
  }

  // What the store holds agrees with the winners.
  const nonceView = await peek(
    store,
    request(
      Array.from({ length: 50 }, (_, n) =>
        item(`check-${n}`, {
          client: RACE.client,
          keyId: RACE.key,
          nonce: claim(BigInt(n), { chainId: RACE.chainId }),
        }),
      ),
      RACE_NOW,
    ),
  );
  t.ok(
    nonceView.items.every((v, n) => v.nonce && hex(v.nonce.payloadHash) === byNonce.get(String(n))?.[0]),
    'each nonce is held by its winner',
  );
  t.equal(nonceView.items[0]!.nextNonce, 50n);
  const requestView = await peek(
    store,
    request(
      Array.from({ length: 50 }, (_, n) => item(`r${n}`, { client: RACE.client, keyId: RACE.key })),
      RACE_NOW,
      { velocity: [{ scope: 'key', subject: RACE.velocityKey, windowSeconds: 3600 }] },
    ),
  );
  t.ok(
    requestView.items.every((v, n) => v.request && hex(v.request.payloadHash) === byRequest.get(`r${n}`)?.[0]),
    'each request id holds its winner',
  );
  t.same(
    requestView.velocity,
    [{ count: RACE.velocityLimit, value: BigInt(RACE.velocityLimit) }],
    'velocity counted the winners only',
  );
}

/** Entries [from, to] through readAudit. */
async function readRange(store: AuditStore, from: number, to: number): Promise<AuditEntry[]> {
  const out: AuditEntry[] = [];
  for await (const e of store.readAudit(from, to)) out.push(e);
  return out;
}

/**
 * Checks the outcome of {@link runAuditRace} by several participants: the whole log is one
 * chain (seq 1..N, links, hashes) of exactly the drafts of the calls that succeeded, each call's
 * drafts consecutive and in order, each once; one winner per shared reservation.
 */
export async function checkAuditRace(t: Test, store: AuditStore, results: AuditRaceResult[]) {
  const failures = results.flatMap((r) => r.failures);
  t.same(failures, [], 'every call succeeded');
  const calls = results.flatMap((r) => r.calls);
  const submitted = calls.reduce((n, c) => n + c.length, 0);
  const entries = await readChain(store);
  const reservations = results.reduce((n, r) => n + r.reservations, 0);
  const decides = results.reduce((n, r) => n + r.decideCalls, 0);
  t.comment(
    `${calls.length} calls by ${results.length} participants appended ${entries.length} entries; ${reservations} reservations, decide ran ${decides} times`,
  );
  t.equal(entries.length, submitted, `N = ${submitted}, the drafts of the calls that succeeded`);
  checkChain(t, entries);
  t.same(
    await store.auditHead(),
    entries.length ? { seq: entries.length, hash: entries.at(-1)!.hash } : undefined,
    'the head is the last entry',
  );
  const position = new Map<string, number>();
  const duplicates = entries.filter((e) => position.has(e.requestId!) || !position.set(e.requestId!, e.seq - 1));
  t.same(
    duplicates.map((e) => e.requestId),
    [],
    'no draft appended twice (a retried transaction appends once)',
  );
  const split = calls.filter((c) => c.some((label, k) => position.get(label) !== position.get(c[0]!)! + k));
  t.same(split, [], "each call's drafts are consecutive and in order");
  // How often the chain passes from one participant's entries to another's (a store that
  // groups a turn's calls into one transaction interleaves them in large blocks).
  const owner = entries.map((e) => e.requestId!.split('/')[0]);
  t.comment(
    `the chain passes between participants ${owner.filter((o, i) => i > 0 && o !== owner[i - 1]).length} times`,
  );
  const won = results.flatMap((r) => r.won);
  t.equal(new Set(won).size, won.length, 'each shared reservation won once');
  t.equal(entries.filter((e) => e.requestId!.endsWith('/won')).length, won.length, 'one "won" entry per win');
  t.equal(entries.filter((e) => e.requestId!.endsWith('/signed')).length, won.length, 'one completion entry per win');
}

/**
 * Races `participants` separate processes (harness/store-race-worker.ts), each with a
 * store of its own on `target` (`postgres://...` or `sqlite:/path`). Resolves to their results.
 */
export async function raceProcesses(target: string, participants: number): Promise<RaceResult[]>;
export async function raceProcesses(target: string, participants: number, mode: 'audit'): Promise<AuditRaceResult[]>;
export async function raceProcesses(
  target: string,
  participants: number,
  mode: 'replay' | 'audit' = 'replay',
): Promise<unknown[]> {
  const tsx = `${repoRoot}/node_modules/.bin/tsx`;
  const workers = Array.from({ length: participants }, (_, i) => {
    const child = spawn(tsx, ['harness/store-race-worker.ts', target, `p${i}`, mode], {
      cwd: repoRoot,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const lines = createInterface({ input: child.stdout });
    const next: Array<(line: string) => void> = [];
    const queued: string[] = [];
    lines.on('line', (l) => (next.length ? next.shift()!(l) : queued.push(l)));
    const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
    const line = () =>
      Promise.race([
        new Promise<string>((resolve) => (queued.length ? resolve(queued.shift()!) : next.push(resolve))),
        exited.then((code) => {
          throw new Error(`race worker p${i} exited with ${code}: ${stderr}`);
        }),
      ]);
    return { child, line, exited };
  });
  try {
    for (const w of workers) {
      const l = await w.line();
      if (l !== 'ready') throw new Error(`race worker said ${l}`);
    }
    for (const w of workers) w.child.stdin.write('go\n');
    const results = await Promise.all(workers.map(async (w) => JSON.parse(await w.line()) as unknown));
    await Promise.all(workers.map((w) => w.exited));
    return results;
  } finally {
    for (const w of workers) if (w.child.exitCode === null) w.child.kill();
  }
}
