/**
 * Large batches: one Signer.SignBatch of N EVM payouts (contiguous nonces, fresh batch id each
 * time) against N raw C_SignAsync issued at once on the same pool, alternating, several times;
 * medians. A batch's wall time is the client's view: request out, all N results back.
 */
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type * as grpc from '@grpc/grpc-js';
import { cpuDelta, sampleCpu } from './cpu.js';
import { median } from './load.js';
import { type Elsewhere, isNoisy, Noise } from './noise.js';
import { evmTransfers, type Nonces, payload, signBatch } from './ops.js';
import type { RawKey, RawToken } from './raw.js';

export interface BatchRun {
  wallMs: number;
  itemsPerSec: number;
  /** Signer child CPU per item (service runs). */
  serverUsPerItem?: number;
  machine: Elsewhere;
}

export interface BatchSide {
  /** Medians over the runs. */
  wallMs: number;
  itemsPerSec: number;
  serverUsPerItem?: number;
  runs: BatchRun[];
}

export interface BatchPoint {
  items: number;
  keyId: string;
  raw: BatchSide;
  service: BatchSide;
  /** service / raw items per second (medians) */
  ratio: number;
  noisy: boolean;
}

async function timed(noise: Noise, pid: number | undefined, work: () => Promise<number>): Promise<BatchRun> {
  const a = { all: noise.snapshot(), child: pid ? sampleCpu(pid) : undefined, t: performance.now() };
  const n = await work();
  const b = { t: performance.now(), all: noise.snapshot(), child: pid ? sampleCpu(pid) : undefined };
  const seconds = (b.t - a.t) / 1000;
  const child = a.child && b.child ? cpuDelta(a.child, b.child).total : undefined;
  return {
    wallMs: b.t - a.t,
    itemsPerSec: n / seconds,
    ...(child === undefined ? {} : { serverUsPerItem: (child / n) * 1e6 }),
    machine: Noise.elsewhere(a.all, b.all, seconds),
  };
}

function side(runs: BatchRun[]): BatchSide {
  const us = runs.map((r) => r.serverUsPerItem).filter((x): x is number => x !== undefined);
  return {
    wallMs: median(runs.map((r) => r.wallMs)),
    itemsPerSec: median(runs.map((r) => r.itemsPerSec)),
    ...(us.length ? { serverUsPerItem: median(us) } : {}),
    runs,
  };
}

export async function measureBatches(
  noise: Noise,
  o: {
    raw: RawToken;
    rawKey: RawKey;
    signer: grpc.Client;
    svcPid: number;
    keyId: string;
    nonces: Nonces;
    items: number;
    runs: number;
  },
): Promise<BatchPoint> {
  const run = randomBytes(4).toString('hex');
  let seq = 0;
  const rawBatch = () =>
    timed(noise, undefined, async () => {
      await Promise.all(Array.from({ length: o.items }, (_, i) => o.raw.sign(o.rawKey, payload(i))));
      return o.items;
    });
  const svcBatch = () => {
    // Built before the clock starts: the client's encoding cost is not the service's.
    const items = evmTransfers(o.nonces.take(o.items), o.items);
    return timed(noise, o.svcPid, () => signBatch(o.signer, o.keyId, `payout-${run}-${seq++}`, items));
  };

  await noise.calm();
  await rawBatch(); // warm-up, both sides
  await svcBatch();
  const raw: BatchRun[] = [];
  const svc: BatchRun[] = [];
  for (let i = 0; i < o.runs; i++) {
    // Alternating, so drift on a shared machine hits both sides alike.
    raw.push(await noise.quiet(`SignBatch ${o.items}: raw run ${i + 1}/${o.runs}`, rawBatch, { settle: false }));
    svc.push(await noise.quiet(`SignBatch ${o.items}: service run ${i + 1}/${o.runs}`, svcBatch, { settle: false }));
  }
  const r = side(raw);
  const s = side(svc);
  return {
    items: o.items,
    keyId: o.keyId,
    raw: r,
    service: s,
    ratio: s.itemsPerSec / r.itemsPerSec,
    noisy: [...raw, ...svc].some((x) => isNoisy(x.machine)),
  };
}
