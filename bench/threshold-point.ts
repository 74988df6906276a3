/**
 * One closed-loop point of threshold `Signer.Sign` against the signer child, with the CPU the
 * bench client, the signer (coordinator) and each cosigner used in the window, the signer's own
 * handler latency, and a sample of the returned signatures checked with noble's verifiers.
 */
import { randomBytes } from 'node:crypto';
import type * as grpc from '@grpc/grpc-js';
import { ed25519 } from '@noble/curves/ed25519.js';
import { schnorr } from '@noble/curves/secp256k1.js';
import { call, nowTimestamp } from '../src/client/client.js';
import type { ThresholdAlgorithm } from '../src/core/frost/suites.js';
import { cpuDelta, sampleCpu, type CpuSample } from './cpu.js';
import { closedLoop, type LoadResult } from './load.js';
import { cpuUse } from './measure.js';
import { Noise, type Snapshot } from './noise.js';
import type { CpuUse, Elsewhere } from './report.js';
import { scrape, serverWindow, type HistogramDelta, type Scrape } from './scrape.js';
import { KIND } from './threshold-local.js';
import type { ThresholdKey } from './threshold-service.js';

export interface ThresholdServicePoint extends LoadResult {
  suite: ThresholdAlgorithm;
  cpu: {
    client: CpuUse;
    /** The signer child: coordinator, policy, replay guard, store, gRPC both ways. */
    signer: CpuUse;
    /** The three cosigners together (two shares and their nonce commitments per signature). */
    cosigners: CpuUse;
    /** Each cosigner; `jsThread` near 1 means that cosigner is saturated. */
    perCosigner: CpuUse[];
  };
  /** signer_sign_duration_seconds over the window: the signer's own view of a Sign. */
  handler?: HistogramDelta;
  /** Returned signatures checked with ed25519.verify (RFC 8032 strict) / schnorr.verify. */
  verified: number;
  machine: Elsewhere;
}

/** Checks a returned signature with noble's chain verifier, not with the FROST code. */
export function verifies(suite: ThresholdAlgorithm, signature: Uint8Array, payload: Uint8Array, publicKey: Uint8Array): boolean {
  try {
    return suite === 'frost-ed25519' ? ed25519.verify(signature, payload, publicKey, { zip215: false }) : schnorr.verify(signature, payload, publicKey);
  } catch {
    return false;
  }
}

/** Every `SAMPLE_EVERY`th signature is kept (up to `SAMPLE_MAX`) and verified after the window. */
const SAMPLE_EVERY = 7;
const SAMPLE_MAX = 300;

export async function measureThresholdPoint(
  noise: Noise,
  o: {
    suite: ThresholdAlgorithm;
    key: ThresholdKey;
    signers: grpc.Client[];
    payloads: Buffer[];
    signerPid: number;
    cosignerPids: number[];
    metricsUrl: string;
    concurrency: number;
    seconds: number;
    warmup: number;
  },
): Promise<ThresholdServicePoint> {
  const kind = KIND[o.suite];
  // Unique per attempt: a re-measured point must not reuse the request ids of the first.
  const run = randomBytes(4).toString('hex');
  const sample: Array<[Uint8Array, Uint8Array]> = [];
  const op = async (seq: number) => {
    const payload = o.payloads[seq % o.payloads.length]!;
    const res = await call<{ signature: Buffer }>(
      o.signers[seq % o.signers.length]!,
      'Sign',
      { keyId: o.key.keyId, requestId: `tb-${run}-${seq}`, clientTime: nowTimestamp(), [kind]: payload },
      30_000,
    );
    if (seq % SAMPLE_EVERY === 0 && sample.length < SAMPLE_MAX) sample.push([res.signature, payload]);
    return 1;
  };

  interface Snap {
    own: CpuSample;
    signer: CpuSample;
    cosigners: CpuSample[];
    all: Snapshot;
    metrics: Promise<Scrape>;
  }
  const snap = (): Snap => ({
    own: sampleCpu(process.pid),
    signer: sampleCpu(o.signerPid),
    cosigners: o.cosignerPids.map((pid) => sampleCpu(pid)),
    all: noise.snapshot(),
    metrics: scrape(o.metricsUrl),
  });
  let a: Snap | undefined;
  let b: Snap | undefined;
  const load = await closedLoop(op, {
    concurrency: o.concurrency,
    warmupMs: o.warmup * 1000,
    durationMs: o.seconds * 1000,
    onWindowStart: () => (a = snap()),
    onWindowEnd: () => (b = snap()),
  });
  const [ma, mb] = await Promise.all([a!.metrics, b!.metrics]);
  const handler = serverWindow(ma, mb, o.suite).handler;

  const bad = sample.filter(([sig, payload]) => !verifies(o.suite, sig, payload, o.key.publicKey)).length;
  if (bad > 0) throw new Error(`${o.suite}: ${bad} of ${sample.length} sampled signatures do not verify under the key's public key`);
  if (load.ops > 0 && sample.length === 0) throw new Error(`${o.suite}: no signature was sampled for verification`);

  const perCosigner = o.cosignerPids.map((_, i) => cpuUse(cpuDelta(a!.cosigners[i]!, b!.cosigners[i]!), load.seconds, load.units));
  const cosignersTotal = perCosigner.every((c) => c.usPerSign !== undefined)
    ? cpuUse({ total: o.cosignerPids.reduce((s, _, i) => s + cpuDelta(a!.cosigners[i]!, b!.cosigners[i]!).total!, 0) }, load.seconds, load.units)
    : {};
  return {
    suite: o.suite,
    ...load,
    cpu: {
      client: cpuUse(cpuDelta(a!.own, b!.own), load.seconds, load.units),
      signer: cpuUse(cpuDelta(a!.signer, b!.signer), load.seconds, load.units),
      cosigners: cosignersTotal,
      perCosigner,
    },
    ...(handler ? { handler } : {}),
    verified: sample.length,
    machine: Noise.elsewhere(a!.all, b!.all, load.seconds),
  };
}
