import { startPostgres } from './postgres.js';
import { PostgresStore } from '../../src/store/postgres.js';
const p = await startPostgres();
try {
  const s = await PostgresStore.open(p.url);
  const now = new Date(1_800_000_000_000);
  const item = { client: 'c', requestId: 'r1', keyId: 'k', payloadHash: Buffer.from('aa', 'hex'), value: 5n,
    nonce: { chainId: 1n, nonce: 7n, intentHash: Buffer.from('bb', 'hex'), maxFeePerGas: 2n ** 255n, maxPriorityFeePerGas: 3n } };
  const req = { items: [item], velocity: [{ scope: 'key' as const, subject: 'k', windowSeconds: 60 }], leaseMs: 1000, now };
  const r1 = await s.reserve(req, (v) => { console.log('view1', v); return { outcome: 'ok', writes: [{ index: 0, action: 'insert' as const }] }; });
  console.log(r1);
  await s.reserve(req, (v) => { console.log('view2', JSON.stringify(v, (k, x) => typeof x === 'bigint' ? x.toString() : x)); return { outcome: 'x', writes: [] }; });
  await s.complete([{ client: 'c', requestId: 'r1', result: Buffer.from('cc', 'hex') }]);
  await s.reserve(req, (v) => { console.log('view3', v.items[0]); return { outcome: 'x', writes: [] }; });
  console.log(await s.putPolicy('p', '{}', 'me', now), await s.putPolicy('p', '{"a":1}', 'me', now), await s.listPolicies());
  console.log(await s.pruneRequests(new Date(now.getTime() + 1)));
  await s.close();
} finally { await p.stop(); }
