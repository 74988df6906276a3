import { createHash } from 'node:crypto';
import { PostgresStore } from '../../src/store/postgres.js';
const h = (s: string) => createHash('sha256').update(s).digest();
const url = 'postgres://postgres@127.0.0.1:54401/postgres';
const s = await PostgresStore.open(url, { poolSize: 4 });
const tag = `t${Date.now()}`;
const lr: number[] = [], lc: number[] = [];
for (let j = 0; j < 400; j++) {
  const a = performance.now();
  await s.reserve({ items: [{ client: 'c', requestId: `${tag}-${j}`, keyId: tag, payloadHash: h(`${j}`), value: 1n,
    nonce: { chainId: 1n, nonce: BigInt(j), intentHash: h('i'), maxFeePerGas: 1n, maxPriorityFeePerGas: 1n } }],
    velocity: [{ scope: 'key', subject: tag, windowSeconds: 60 }], leaseMs: 1000, now: new Date() },
    (v) => ({ outcome: 1, writes: [{ index: 0, action: 'insert' }] }));
  const b = performance.now();
  await s.complete([{ client: 'c', requestId: `${tag}-${j}`, result: h('r') }]);
  lr.push(b - a); lc.push(performance.now() - b);
}
const p = (l: number[], q: number) => [...l].sort((x, y) => x - y)[Math.floor(l.length * q)]!.toFixed(3);
console.log('reserve p50', p(lr, 0.5), 'p90', p(lr, 0.9), ' complete p50', p(lc, 0.5), 'p90', p(lc, 0.9));
await s.close();
