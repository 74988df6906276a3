/**
 * Where a threshold signature's time goes on a cosigner: the bench calls one cosigner directly,
 * as the coordinator would (its client certificate), one `SignShare` at a time, and reads that
 * cosigner's CPU from /proc. Compared with `signShare` alone in process, the difference is the
 * cosigner's own work per share (unsealing and re-checking the share and public package, the
 * replay claim, gRPC and TLS). The commitments come from one `Commit` call per cosigner, as the
 * coordinator fetches them, timed apart.
 */
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { call } from '../src/client/client.js';
import type { ThresholdAlgorithm } from '../src/core/frost/suites.js';
import { cosignerClient } from '../harness/cosigners.js';
import type { Pki } from '../harness/pki.js';
import { sampleCpu } from './cpu.js';
import { percentile } from './load.js';
import { Noise } from './noise.js';
import type { Elsewhere } from './report.js';
import { KIND } from './threshold-local.js';

export interface CosignerProbe {
  suite: ThresholdAlgorithm;
  shares: number;
  /** SignShare round trip from this process, sequential (ms). */
  p50Ms: number;
  meanMs: number;
  /** CPU of the cosigner per SignShare (µs). */
  usPerShare?: number;
  /** CPU of the cosigner per commitment, from one Commit of `shares` commitments (µs). */
  usPerCommit?: number;
  machine: Elsewhere;
}

interface Commitment {
  id: string;
  cosignerId: number;
  hiding: Buffer;
  binding: Buffer;
}

/**
 * `shares` sequential SignShare calls on cosigner `a` (its partner `b` only lends commitments,
 * whose nonces then sit unused in its pool until the pool's cap drops them).
 */
export async function probeCosigner(
  noise: Noise,
  o: { suite: ThresholdAlgorithm; keyId: string; pki: Pki; a: { id: number; address: string; pid: number }; b: { id: number; address: string }; payloads: Buffer[]; shares: number },
): Promise<CosignerProbe> {
  const [ca, cb] = [cosignerClient(o.pki, o.a.address), cosignerClient(o.pki, o.b.address)];
  try {
    type Commits = { commitments: Commitment[]; epoch: number };
    await call(ca, 'Info', {}, 10_000);
    const c0 = sampleCpu(o.a.pid).total;
    const mine = await call<Commits>(ca, 'Commit', { keyId: o.keyId, keyVersion: 1, count: o.shares }, 30_000);
    const c1 = sampleCpu(o.a.pid).total;
    const partner = await call<Commits>(cb, 'Commit', { keyId: o.keyId, keyVersion: 1, count: o.shares }, 30_000);
    const run = randomBytes(4).toString('hex');
    const latencies: number[] = [];
    const a = { cpu: sampleCpu(o.a.pid).total, all: noise.snapshot() };
    const start = performance.now();
    for (let i = 0; i < o.shares; i++) {
      const t0 = performance.now();
      await call(ca, 'SignShare', {
        keyId: o.keyId,
        keyVersion: 1,
        epoch: mine.epoch,
        requestId: `probe-${run}-${i}`,
        payloadKind: KIND[o.suite],
        payload: o.payloads[i % o.payloads.length]!,
        replayScope: null,
        nonceId: mine.commitments[i]!.id,
        commitments: [mine.commitments[i]!, partner.commitments[i]!],
      }, 30_000);
      latencies.push(performance.now() - t0);
    }
    const seconds = (performance.now() - start) / 1000;
    const b = { cpu: sampleCpu(o.a.pid).total, all: noise.snapshot() };
    const sorted = Float64Array.from(latencies).sort();
    const us = (x?: number, y?: number, n = o.shares) => (x === undefined || y === undefined ? undefined : ((y - x) / n) * 1e6);
    const perShare = us(a.cpu, b.cpu);
    const perCommit = us(c0, c1);
    return {
      suite: o.suite,
      shares: o.shares,
      p50Ms: percentile(sorted, 0.5),
      meanMs: sorted.reduce((x, y) => x + y, 0) / sorted.length,
      ...(perShare === undefined ? {} : { usPerShare: perShare }),
      ...(perCommit === undefined ? {} : { usPerCommit: perCommit }),
      machine: Noise.elsewhere(a.all, b.all, seconds),
    };
  } finally {
    ca.close();
    cb.close();
  }
}
