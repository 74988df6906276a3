import { createHash } from 'node:crypto';
import { startPostgres } from './postgres.js';
import { PostgresStore } from '../../src/store/postgres.js';
import { SqliteStore } from '../../src/store/sqlite.js';
import type { ReplayStore } from '../../src/store/replay.js';
const h = (s: string) => createHash('sha256').update(s).digest();
async function bench(name: string, s: ReplayStore, clients: number, conc: number, total: number) {
  let next = 0; const lat: number[] = [];
  const t0 = performance.now();
  await Promise.all(Array.from({ length: conc }, async () => {
    while (next < total) {
      const j = next++;
      const a = performance.now();
      const client = `c${j % clients}`;
      await s.reserve({ items: [{ client, requestId: `${name}-${j}`, keyId: `${name}-k${j % clients}`, payloadHash: h(`${j}`), value: 1n,
        nonce: { chainId: 1n, nonce: BigInt(j), intentHash: h('i'), maxFeePerGas: 1n, maxPriorityFeePerGas: 1n } }],
        velocity: [{ scope: 'key', subject: `${name}-k${j % clients}`, windowSeconds: 60 }, { scope: 'client', subject: client, windowSeconds: 60 }], leaseMs: 1000, now: new Date() },
        (v) => ({ outcome: 1, writes: v.items[0]!.request ? [] : [{ index: 0, action: 'insert' }] }));
      await s.complete([{ client, requestId: `${name}-${j}`, result: h('r') }]);
      lat.push(performance.now() - a);
    }
  }));
  const secs = (performance.now() - t0) / 1000;
  lat.sort((x, y) => x - y);
  console.log(`${name}: clients=${clients} conc=${conc} ${(total / secs).toFixed(0)} reserve+complete/s p50=${lat[lat.length >> 1]!.toFixed(2)}ms p99=${lat[Math.floor(lat.length * 0.99)]!.toFixed(2)}ms`);
}
const p = { url: 'postgres://postgres@127.0.0.1:54401/postgres', stop: async () => {} };
try {
  const s = await PostgresStore.open(p.url, { poolSize: 16 });
  await bench('pg-warm', s, 1, 16, 500);
  await bench('pg-1client', s, 1, 32, 3000);
  await bench('pg-8clients', s, 8, 32, 3000);
  await bench('pg-serial', s, 1, 1, 500);
  await s.close();
  const q = new SqliteStore('/tmp/pgbench-x/x.db');
  await bench('sqlite-1client', q, 1, 32, 3000);
  await q.close();
} finally { await p.stop(); }
