/**
 * What the stores do for fail-closed policies, per-token velocity and lease takeovers, on SQLite
 * and PostgreSQL alike: a late completion after a takeover is dropped (a replay returns exactly
 * the signature the client got), token usage is counted per (scope, subject, token), and the key
 * state and policy version are read inside the reservation's transaction.
 */
import { createHash, randomBytes } from 'node:crypto';
import { chmod, mkdir, stat } from 'node:fs/promises';
import t, { type Test } from 'tap';
import { startSchemaServer } from '../harness/postgres.js';
import { tempDir } from '../harness/token.js';
import type { ReplayStore, ReserveItem, ReserveRequest, ReserveView } from '../src/core/replay/records.js';
import { VELOCITY_BUCKET_MS } from '../src/core/replay/velocity.js';
import type { AuditStore } from '../src/infra/store/audit.js';
import { PostgresStore } from '../src/infra/store/postgres.js';
import { SqliteStore } from '../src/infra/store/sqlite.js';
import type { KeyRecord, Store } from '../src/infra/store/store.js';

type S = Store & ReplayStore & AuditStore;

const T0 = Math.ceil(Date.UTC(2030, 5, 1) / VELOCITY_BUCKET_MS) * VELOCITY_BUCKET_MS;
const at = (ms: number) => new Date(T0 + ms);
const LEASE = 30_000;
const h = (s: string) => createHash('sha256').update(s).digest();
const TOKEN = '0x00000000000000000000000000000000000a11ce';
const OTHER = '0x0000000000000000000000000000000000000b0b';

function item(requestId: string, over: Partial<ReserveItem> = {}): ReserveItem {
  return {
    client: 'engine',
    requestId,
    keyId: 'k1',
    payloadHash: h(`payload ${requestId}`),
    value: 1n,
    nonce: {
      account: 'k1@v1',
      chainId: 1n,
      nonce: BigInt(requestId.length),
      intentHash: h(`intent ${requestId}`),
      maxFeePerGas: 1n,
      maxPriorityFeePerGas: 1n,
    },
    ...over,
  };
}
const req = (items: ReserveItem[], now: Date, over: Partial<ReserveRequest> = {}): ReserveRequest => ({
  items,
  velocity: [],
  leaseMs: LEASE,
  now,
  ...over,
});
const peek = (s: ReplayStore, r: ReserveRequest) => s.reserve(r, (view) => ({ outcome: view, writes: [] }));
const write = (s: ReplayStore, r: ReserveRequest, action: 'insert' | 'resume') =>
  s.reserve(r, (view: ReserveView) => ({ outcome: view, writes: r.items.map((_, index) => ({ index, action })) }));
const text = (b: Uint8Array | undefined) => (b ? Buffer.from(b).toString() : undefined);

function key(state: KeyRecord['state'] = 'active'): KeyRecord {
  return {
    keyId: 'k1',
    version: 1,
    algorithm: 'ecdsa-secp256k1',
    ckaId: randomBytes(16),
    publicKey: randomBytes(65),
    state,
    createdAt: at(0),
    stateChangedAt: at(0),
    retireAt: null,
  };
}

function suite(name: string, open: () => Promise<S>, twins: () => Promise<[S, S]>) {
  const fresh = async (t: Test) => {
    const s = await open();
    t.teardown(() => s.close());
    return s;
  };

  t.test(`${name}: a late completion after a lease takeover is dropped; the replay is the taker's`, async (t) => {
    const s = await fresh(t);
    const it = item('r1');
    // Attempt A reserves, then stalls past its lease (a crash, a GC pause, a partition).
    await write(s, req([it], at(0), { attempt: 'A' }), 'insert');
    const expired = await peek(s, req([it], at(LEASE + 1)));
    t.equal(expired.items[0]!.request?.leaseExpired, true, "A's lease expired");
    // The client retries; attempt B takes the request over and signs.
    await write(s, req([it], at(LEASE + 1), { attempt: 'B' }), 'resume');
    // A wakes up first: its completion must not finish B's record.
    const early = await s.complete([{ ...done(it, 'signature A'), attempt: 'A' }], []);
    t.same(early.dropped, [{ client: 'engine', requestId: 'r1' }], "A's completion is dropped");
    let v = await peek(s, req([it], at(LEASE + 2)));
    t.equal(v.items[0]!.request?.state, 'pending', 'B still owns the pending record');
    // A's failure path must not end B's lease either.
    await s.abandon([{ client: 'engine', requestId: 'r1', attempt: 'A' }], []);
    v = await peek(s, req([it], at(LEASE + 2)));
    t.equal(v.items[0]!.request?.leaseExpired, false, "A's abandon does not end B's lease");
    t.equal(v.items[0]!.nonce?.leaseExpired, false, "nor the nonce claim's");
    const b = await s.complete([{ ...done(it, 'signature B'), attempt: 'B' }], []);
    t.same(b.dropped, [], "B's completion applies");
    // And A, later still: the record is done, so it stays B's.
    const late = await s.complete([{ ...done(it, 'signature A'), attempt: 'A' }], []);
    t.same(late.dropped, [{ client: 'engine', requestId: 'r1' }], 'a completion of a done record is dropped');
    v = await peek(s, req([it], at(LEASE + 3)));
    t.equal(text(v.items[0]!.request?.result), 'signature B', 'the replay returns what B returned');
    t.equal(text(v.items[0]!.nonce?.result), 'signature B', 'and so does the nonce claim');
    // Even a completion that names no attempt cannot overwrite a finished record.
    await s.complete([done(it, 'signature C')], []);
    v = await peek(s, req([it], at(LEASE + 4)));
    t.equal(text(v.items[0]!.request?.result), 'signature B');
  });

  t.test(`${name}: a completion in one call with the taker's is dropped alone`, async (t) => {
    const s = await fresh(t);
    const [a, b] = [item('x1'), item('x22')];
    await write(s, req([a, b], at(0), { attempt: 'A' }), 'insert');
    await write(s, req([a], at(LEASE + 1), { attempt: 'B' }), 'resume');
    const r = await s.complete([done(b, 'b by A'), { ...done(a, 'a by A'), attempt: 'A' }].map(withA), []);
    t.same(r.dropped, [{ client: 'engine', requestId: 'x1' }], 'only the taken-over item is dropped');
    const v = await peek(s, req([a, b], at(LEASE + 2)));
    t.equal(v.items[0]!.request?.state, 'pending');
    t.equal(text(v.items[1]!.request?.result), 'b by A', 'the other item completes');
  });

  t.test(`${name}: token usage per scope, subject and token over the window`, async (t) => {
    const s = await fresh(t);
    const tok = (id: string, contract: string, amount: bigint, over: Partial<ReserveItem> = {}) =>
      item(id, { nonce: undefined as never, token: { contract, amount }, ...over });
    const big = 2n ** 200n; // ERC-20 amounts go far past 64 bits
    await write(s, req([tok('t1', TOKEN, 5n), tok('t2', TOKEN, big)], at(0)), 'insert');
    await write(s, req([tok('t3', OTHER, 7n), tok('t4', TOKEN, 1n, { client: 'other' })], at(1000)), 'insert');
    await write(s, req([item('plain', { nonce: undefined as never })], at(2000)), 'insert');
    const query = (scope: 'key' | 'client', subject: string, windowSeconds: number) => ({
      scope,
      subject,
      windowSeconds,
      tokens: [TOKEN, OTHER],
    });
    const v = await peek(
      s,
      req([], at(VELOCITY_BUCKET_MS * 2), {
        velocity: [
          query('key', 'k1', 3600),
          query('client', 'engine', 3600),
          query('client', 'other', 3600),
          { scope: 'key', subject: 'k1', windowSeconds: 3600 },
        ],
      }),
    );
    const tokens = (i: number) => Object.fromEntries([...(v.velocity[i]!.tokens ?? new Map())]);
    t.same(tokens(0), { [TOKEN]: { count: 3, amount: big + 6n }, [OTHER]: { count: 1, amount: 7n } }, 'per key');
    t.same(tokens(1), { [TOKEN]: { count: 2, amount: big + 5n }, [OTHER]: { count: 1, amount: 7n } }, 'per client');
    t.same(tokens(2), { [TOKEN]: { count: 1, amount: 1n }, [OTHER]: { count: 0, amount: 0n } }, 'another client');
    t.equal(v.velocity[3]!.tokens, undefined, 'a rule without token limits reads none');
    t.same(
      { count: v.velocity[0]!.count, value: v.velocity[0]!.value },
      { count: 5, value: 5n },
      'native still counts',
    );
    const later = await peek(
      s,
      req([], at(3600_000 + VELOCITY_BUCKET_MS * 2), { velocity: [query('key', 'k1', 3600)] }),
    );
    t.same(tokens.call(null, 0) && Object.fromEntries([...later.velocity[0]!.tokens!]), {
      [TOKEN]: { count: 0, amount: 0n },
      [OTHER]: { count: 0, amount: 0n },
    });
    await s.prune({ requests: at(0), velocity: at(3600_000) });
    const pruned = await peek(s, req([], at(VELOCITY_BUCKET_MS * 2), { velocity: [query('key', 'k1', 3600)] }));
    t.same(pruned.velocity[0]!.tokens?.get(TOKEN), { count: 0, amount: 0n }, 'prune removes old token usage');
  });

  t.test(`${name}: key state and policy version are read in the transaction, from any instance`, async (t) => {
    const [a, b] = await twins();
    t.teardown(async () => {
      await a.close();
      await b.close();
    });
    await a.insertKey(key(), []);
    await a.putPolicy('hot', '{}', 'config', at(0), () => []);
    const check = { keyId: 'k1', version: 1, policies: true };
    let v = await peek(b, req([item('q1')], at(1), { check }));
    t.equal(v.keyState, 'active');
    t.equal(v.policyEpoch, 1);
    t.ok(await a.setKeyState('k1', 1, ['active'], 'disabled', at(2), []));
    await a.putPolicy('hot', '{"v":2}', 'admin', at(2), () => []);
    await a.putPolicy('new', '{}', 'admin', at(2), () => []);
    v = await peek(b, req([item('q1')], at(3), { check }));
    t.equal(v.keyState, 'disabled', "the other instance's disable is seen by the next reservation");
    t.equal(v.policyEpoch, 3, 'and so are a new version and a new policy');
    v = await peek(b, req([item('q1')], at(3), { check: { keyId: 'k1', version: 9 } }));
    t.equal(v.keyState, null, 'a version that does not exist');
    t.equal(v.policyEpoch, undefined, 'the epoch is read only when asked for');
    v = await peek(b, req([item('q1')], at(3)));
    t.equal(v.keyState, undefined, 'nothing is read without a check');
  });
}

const done = (it: ReserveItem, result: string) => ({
  client: it.client,
  requestId: it.requestId,
  result: Buffer.from(result),
});
const withA = (d: ReturnType<typeof done> & { attempt?: string }) => ({ ...d, attempt: 'A' });

const { freshSchema } = await startSchemaServer(t, 'policy');
const tmp = await tempDir('store-policy-');
t.teardown(() => tmp.cleanup());
let n = 0;
suite(
  'sqlite',
  async () => new SqliteStore(`${tmp.path}/s-${n++}.db`),
  async () => {
    const path = `${tmp.path}/s-${n++}.db`;
    return [new SqliteStore(path), new SqliteStore(path)];
  },
);

t.test('sqlite: database, WAL and SHM files are owner-only, whatever the umask', async (t) => {
  const dir = `${tmp.path}/modes`;
  await mkdir(dir, { mode: 0o700 });
  const old = process.umask(0o000); // the most permissive umask: SQLite would create 0644/0666
  let s: SqliteStore;
  try {
    s = new SqliteStore(`${dir}/signer.db`);
    await s.putPolicy('p', '{}', 'config', at(0), () => []); // the WAL and SHM exist now
  } finally {
    process.umask(old);
  }
  for (const f of ['signer.db', 'signer.db-wal', 'signer.db-shm']) {
    t.equal((await stat(`${dir}/${f}`)).mode & 0o777, 0o600, `${f} is 0600`);
  }
  await s.close();
});

t.test('sqlite: a database left readable by an older release is tightened at open', async (t) => {
  const dir = `${tmp.path}/old`;
  await mkdir(dir, { mode: 0o700 });
  await new SqliteStore(`${dir}/signer.db`).close();
  await chmod(`${dir}/signer.db`, 0o644);
  const s = new SqliteStore(`${dir}/signer.db`);
  t.teardown(() => s.close());
  t.equal((await stat(`${dir}/signer.db`)).mode & 0o777, 0o600);
});

t.test('sqlite: a world-writable directory is refused before anything is created', async (t) => {
  const dir = `${tmp.path}/open`;
  await mkdir(dir);
  await chmod(dir, 0o777);
  t.throws(() => new SqliteStore(`${dir}/signer.db`), /world-writable/);
  await t.rejects(stat(`${dir}/signer.db`), { code: 'ENOENT' }, 'no database file was created');
  await chmod(dir, 0o1777); // sticky, like /tmp: still anyone can plant files there
  t.throws(() => new SqliteStore(`${dir}/signer.db`), /world-writable/);
});

const freshUrl = async () => (await freshSchema()).url;
suite(
  'postgres',
  async () => PostgresStore.open(await freshUrl()),
  async () => {
    const url = await freshUrl();
    return Promise.all([PostgresStore.open(url), PostgresStore.open(url)]);
  },
);
