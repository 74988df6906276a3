/**
 * The in-process baseline of the threshold bench: the FROST computation of one 2-of-3 signature,
 * every participant in this process on this one JavaScript thread, exactly the work the
 * distributed path does per signature (two `commit`s, two `signShare`s, `aggregate` with its
 * independent verification), through the same wrappers (src/core/frost/participant.ts) and keys
 * made by the same DKG (src/core/frost/dkg.ts). Nothing else: no gRPC, no HSM, no store.
 */
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type { NonceCommitments } from '@noble/curves/abstract/frost.js';
import { dkgRound1, dkgRound2, dkgRound3 } from '../src/core/frost/dkg.js';
import { aggregate, commit, signShare, type Key } from '../src/core/frost/participant.js';
import { SUITES, type ThresholdAlgorithm } from '../src/core/frost/suites.js';
import { sampleCpu } from './cpu.js';
import { percentile } from './load.js';
import { Noise } from './noise.js';
import type { Elsewhere } from './report.js';

/** What one signature is made of: a 32-byte digest (BIP340) or a 32..64-byte message (Ed25519). */
export type ThresholdKind = 'digest' | 'message';
export const KIND: Record<ThresholdAlgorithm, ThresholdKind> = { 'frost-ed25519': 'message', 'frost-secp256k1-tr': 'digest' };

/** Random payloads of a suite, reused round-robin by the baseline and the service alike. */
export function payloads(suite: ThresholdAlgorithm, n = 1024): Buffer[] {
  return Array.from({ length: n }, () => randomBytes(KIND[suite] === 'digest' ? 32 : 32 + Math.floor(Math.random() * 33)));
}

export interface LocalPoint {
  suite: ThresholdAlgorithm;
  /** Sequential signatures on one thread, after a warm-up. */
  signatures: number;
  seconds: number;
  sigPerSec: number;
  p50Ms: number;
  p99Ms: number;
  meanMs: number;
  /** Mean ms per signature of each step (two commits, two shares, one aggregate). */
  stepsMs: { commit: number; signShare: number; aggregate: number };
  /** CPU of this process per signature (µs): one thread, so about meanMs * 1000. */
  usPerSign?: number;
  machine: Elsewhere;
}

/** A 2-of-3 key of `suite`, made by running the DKG for all three participants here. */
export function localKeys(suite: ThresholdAlgorithm): Key[] {
  const s = SUITES[suite];
  const signers = { min: 2, max: 3 };
  const ids = [1, 2, 3].map((n) => s.frost.Identifier.fromNumber(n));
  const r1 = ids.map((id) => dkgRound1(s, id, signers));
  const others = (i: number) => r1.filter((_, j) => j !== i).map((r) => r.public);
  const r2 = r1.map((r, i) => dkgRound2(s, r.secret, others(i)));
  return ids.map((me, i) => dkgRound3(s, r1[i]!.secret, others(i), ids.flatMap((_, j) => (j === i ? [] : [r2[j]![me]!]))));
}

/**
 * One signature by participants `seq % 3` and `(seq + 1) % 3` (the coordinator also rotates),
 * with the time each step took added to `steps`.
 */
export function signLocally(suite: ThresholdAlgorithm, keys: Key[], message: Uint8Array, seq: number, steps = { commit: 0, signShare: 0, aggregate: 0 }): Uint8Array {
  const s = SUITES[suite];
  const signers = [keys[seq % 3]!, keys[(seq + 1) % 3]!];
  const t0 = performance.now();
  const rounds = signers.map((key) => ({ key, ...commit(s, key.secret) }));
  const t1 = performance.now();
  const list: NonceCommitments[] = rounds.map((r) => r.commitments).sort((a, b) => (a.identifier < b.identifier ? -1 : 1));
  const shares: Record<string, Uint8Array> = {};
  for (const r of rounds) shares[r.key.secret.identifier] = signShare(s, r.key, r.nonces, list, message);
  const t2 = performance.now();
  const signature = aggregate(s, keys[0]!.public, list, message, shares);
  const t3 = performance.now();
  steps.commit += t1 - t0;
  steps.signShare += t2 - t1;
  steps.aggregate += t3 - t2;
  return signature;
}

const yieldNow = () => new Promise<void>((r) => setImmediate(r));

/**
 * Signs sequentially for `warmup` then `seconds` seconds (one signature at a time, so the
 * latency of each is its whole cost and sig/s is one thread's rate). Yields to the event loop
 * between signatures so timers and signals still run; that costs microseconds, outside the
 * timed part.
 */
export async function measureLocal(noise: Noise, suite: ThresholdAlgorithm, keys: Key[], messages: Buffer[], o: { seconds: number; warmup: number }): Promise<LocalPoint> {
  let seq = 0;
  const until = performance.now() + o.warmup * 1000;
  while (performance.now() < until) {
    signLocally(suite, keys, messages[seq % messages.length]!, seq);
    seq++;
    await yieldNow();
  }
  const latencies: number[] = [];
  const steps = { commit: 0, signShare: 0, aggregate: 0 };
  const a = { own: sampleCpu(process.pid), all: noise.snapshot() };
  const start = performance.now();
  const end = start + o.seconds * 1000;
  for (let now = start; now < end; ) {
    signLocally(suite, keys, messages[seq % messages.length]!, seq, steps);
    seq++;
    const t = performance.now();
    latencies.push(t - now);
    await yieldNow();
    now = performance.now();
  }
  const seconds = (performance.now() - start) / 1000;
  const b = { own: sampleCpu(process.pid), all: noise.snapshot() };
  const sorted = Float64Array.from(latencies).sort();
  const n = sorted.length;
  const cpu = a.own.total === undefined || b.own.total === undefined ? undefined : ((b.own.total - a.own.total) / n) * 1e6;
  return {
    suite,
    signatures: n,
    seconds,
    sigPerSec: n / seconds,
    p50Ms: percentile(sorted, 0.5),
    p99Ms: percentile(sorted, 0.99),
    meanMs: sorted.reduce((x, y) => x + y, 0) / (n || 1),
    stepsMs: { commit: steps.commit / n, signShare: steps.signShare / n, aggregate: steps.aggregate / n },
    ...(cpu === undefined ? {} : { usPerSign: cpu }),
    machine: Noise.elsewhere(a.all, b.all, seconds),
  };
}
