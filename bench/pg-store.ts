/**
 * What a hot EVM Sign costs PostgreSQL, without the rest of the service: the store's calls of one
 * sign (a reservation of one item with a nonce claim, the key and policy check, then the
 * completion with its audit entry) at a concurrency, against a throwaway cluster. Prints signs/s,
 * PostgreSQL's CPU per sign (postmaster and backends, from /proc), statements, transactions and
 * WAL per sign: the figures behind the bench's "PostgreSQL CPU per sign" target.
 *
 *   npx tsx bench/pg-store.ts [--signs 20000] [--concurrency 64] [--runs 3]
 */
import { createHash } from 'node:crypto';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { startPostgres } from '../harness/postgres.js';
import type { AuditDraft } from '../src/core/audit/draft.js';
import type { ReserveItem } from '../src/core/replay/records.js';
import { PostgresStore } from '../src/infra/store/postgres.js';
import { findPostmaster, sampleTree } from './cpu.js';

const { values: a } = parseArgs({
  options: {
    signs: { type: 'string', default: '20000' },
    concurrency: { type: 'string', default: '64' },
    runs: { type: 'string', default: '3' },
  },
});
const [signs, c, runs] = [Number(a.signs), Number(a.concurrency), Number(a.runs)];

// Every statement the store sends goes through Client.query: counted here.
let statements = 0;
const query = pg.Client.prototype.query;
pg.Client.prototype.query = function (this: pg.Client, ...args: unknown[]) {
  statements++;
  return (query as (...x: unknown[]) => unknown).apply(this, args);
} as typeof query;

const server = await startPostgres();
const postmaster = findPostmaster(Number(new URL(server.url).port));
const pgCpu = () => (postmaster === undefined ? Number.NaN : (sampleTree(postmaster) ?? Number.NaN));
const store = await PostgresStore.open(server.url);
const stats = new pg.Client({ connectionString: server.url });
await stats.connect();
const counters = async () => {
  const db = await stats.query<{ x: string; r: string }>(
    'SELECT xact_commit::text AS x, xact_rollback::text AS r FROM pg_stat_database WHERE datname = current_database()',
  );
  const wal = await stats.query<{ b: string; s: string }>(
    'SELECT wal_bytes::text AS b, wal_sync::text AS s FROM pg_stat_wal',
  );
  return {
    commits: Number(db.rows[0]!.x),
    rollbacks: Number(db.rows[0]!.r),
    walBytes: Number(wal.rows[0]!.b),
    walSyncs: Number(wal.rows[0]!.s),
  };
};

const h = (s: string) => createHash('sha256').update(s).digest();
let nonce = 0n;
async function sign(id: string): Promise<void> {
  const n = nonce++;
  const it: ReserveItem = {
    client: 'payment-engine',
    requestId: id,
    keyId: 'hot-evm-pg',
    payloadHash: h(id),
    value: 10n ** 15n,
    nonce: {
      account: 'hot-evm-pg@v1',
      chainId: 1n,
      nonce: n,
      intentHash: h(`i${id}`),
      maxFeePerGas: 10n ** 10n,
      maxPriorityFeePerGas: 10n ** 9n,
    },
  };
  const attempt = `a-${id}`;
  const now = new Date();
  await store.reserve(
    {
      items: [it],
      velocity: [],
      leaseMs: 30_000,
      now,
      attempt,
      check: { keyId: it.keyId, version: 1, policies: true },
    },
    () => ({ outcome: null, writes: [{ index: 0, action: 'insert' }] }),
  );
  const draft: AuditDraft = {
    kind: 'sign',
    at: now,
    client: it.client,
    keyId: it.keyId,
    keyVersion: 1,
    requestId: id,
    payloadHash: it.payloadHash,
    intent: { kind: 'evm', chainId: '1', nonce: n.toString(), to: `0x${'ab'.repeat(20)}`, value: it.value.toString() },
    decision: 'allowed',
    reason: null,
    signatureHash: h(`s${id}`),
  };
  await store.complete([{ client: it.client, requestId: id, result: Buffer.alloc(180, 7), attempt }], [draft]);
}

async function measure(label: string, count: number): Promise<void> {
  let next = 0;
  const [s0, c0, cpu0, t0, own0] = [statements, await counters(), pgCpu(), performance.now(), process.cpuUsage()];
  const worker = async () => {
    while (next < count) await sign(`${label}-${next++}`);
  };
  await Promise.all(Array.from({ length: c }, worker));
  const seconds = (performance.now() - t0) / 1000;
  const [c1, cpu1, own] = [await counters(), pgCpu(), process.cpuUsage(own0)];
  const per = (x: number) => (x / count).toFixed(2);
  console.log(
    `${label}: ${count} signs at c=${c}: ${(count / seconds).toFixed(0)}/s; per sign: PostgreSQL CPU ` +
      `${(((cpu1 - cpu0) / count) * 1e6).toFixed(0)} µs, store client CPU ${((own.user + own.system) / count).toFixed(0)} µs,` +
      ` statements ${per(statements - s0)}, commits ${per(c1.commits - c0.commits)},` +
      ` rollbacks ${per(c1.rollbacks - c0.rollbacks)},` +
      ` WAL ${per(c1.walBytes - c0.walBytes)} bytes, WAL syncs ${per(c1.walSyncs - c0.walSyncs)}`,
  );
}

try {
  await measure('warm-up', Math.min(2000, signs));
  for (let r = 1; r <= runs; r++) await measure(`run ${r}`, signs);
} finally {
  await stats.end();
  await store.close();
  await server.stop();
}
