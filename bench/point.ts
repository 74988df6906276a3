/**
 * The one point runner: a closed loop (bench/load.ts) of some operation, raw pkcs11js, the FROST
 * computation in this process, or a call to the service, with the CPU of every process that
 * served it, the signer's own histograms, and what the rest of the machine did meanwhile.
 */

import { type CpuSample, type CpuSource, cpuDelta, sampleCpu } from './cpu.js';
import { closedLoop, type LoadResult, type Op } from './load.js';
import { type Elsewhere, isNoisy, Noise } from './noise.js';
import { type ServerWindow, scrape, serverWindow } from './scrape.js';

/** CPU over a window: per signature, and as a share of one core. */
export interface CpuUse {
  /** Whole process, µs of CPU per completed signature. */
  usPerSign?: number;
  /** Whole process, cores busy on average (1 = one core). */
  cores?: number;
  /** The JavaScript thread alone: share of the window it was on a CPU (1 = saturated). */
  jsThread?: number;
}

/** One side of a point. */
export interface Side extends LoadResult {
  /** CPU by process: `raw`, `in-process`, `client` (this process), `signer`, `postgres`, `cosigner-1`... */
  cpu: Record<string, CpuUse>;
  /** The signer's metrics over the window (service sides). */
  server?: ServerWindow;
  machine: Elsewhere;
}

/** A row of the report: the service at one concurrency against its baseline. */
export interface Row {
  /** What is signed, e.g. "secp256k1 digest Sign". */
  point: string;
  /** `one`: the signer (and raw) pinned to one CPU, the load generator on another; `all`: unpinned. */
  cpus: 'one' | 'all';
  concurrency: number;
  /** Raw pkcs11js, or the same FROST computation in one process; absent when not measured. */
  base?: Side & { name: string };
  service: Side;
  note?: string;
}

export interface PointOptions {
  concurrency: number;
  seconds: number;
  warmup: number;
  /** Processes whose CPU the point reports: a pid (total and JS thread) or a source (total). */
  watch: Record<string, number | CpuSource>;
  /** The signer's Prometheus endpoint, and the algorithm label of its handler histogram. */
  metrics?: { url: string; algorithm: string };
}

const cpuUse = (d: CpuSample, seconds: number, units: number): CpuUse => ({
  ...(d.total === undefined ? {} : { usPerSign: (d.total / units) * 1e6, cores: d.total / seconds }),
  ...(d.main === undefined ? {} : { jsThread: d.main / seconds }),
});

/**
 * Measures until the machine was quiet (Noise.quiet); `op` is called per attempt, so a point
 * measured again never replays the request ids of the attempt before.
 */
export function measurePoint(noise: Noise, label: string, op: () => Op, o: PointOptions): Promise<Side> {
  return noise.quiet(`${label} c=${o.concurrency} (${o.seconds}s)`, () => measureOnce(noise, op(), o));
}

/** One attempt, whatever the machine did (Noise.quiet decides whether to measure again). */
export async function measureOnce(noise: Noise, op: Op, o: PointOptions): Promise<Side> {
  const snap = () => ({
    cpu: Object.entries(o.watch).map(([, w]): CpuSample => (typeof w === 'number' ? sampleCpu(w) : { total: w() })),
    all: noise.snapshot(),
    metrics: o.metrics ? scrape(o.metrics.url) : undefined,
  });
  let a: ReturnType<typeof snap> | undefined;
  let b: typeof a;
  const load = await closedLoop(op, {
    concurrency: o.concurrency,
    warmupMs: o.warmup * 1000,
    durationMs: o.seconds * 1000,
    onWindowStart: () => (a = snap()),
    onWindowEnd: () => (b = snap()),
  });
  const names = Object.keys(o.watch);
  const use = (i: number) => cpuUse(cpuDelta(a!.cpu[i]!, b!.cpu[i]!), load.seconds, load.units);
  const cpu = Object.fromEntries(names.map((n, i) => [n, use(i)]));
  const [ma, mb] = await Promise.all([a!.metrics, b!.metrics]);
  return {
    ...load,
    cpu,
    ...(ma && mb ? { server: serverWindow(ma, mb, o.metrics!.algorithm) } : {}),
    machine: Noise.elsewhere(a!.all, b!.all, load.seconds),
  };
}

/** Service throughput over the baseline's, and p50 latency over the baseline's. */
export const ratios = (r: Row) => ({
  throughput: r.base ? r.service.unitsPerSec / r.base.unitsPerSec : undefined,
  p50: r.base ? r.service.p50Ms / r.base.p50Ms : undefined,
});

/** Service CPU per signature beyond what the HSM (raw pkcs11js) spends on one, in µs. */
export const beyondHsm = (r: Row) => {
  const svc = r.service.cpu.signer?.usPerSign;
  const raw = r.base?.cpu.raw?.usPerSign;
  return svc === undefined || raw === undefined ? undefined : svc - raw;
};

export const noisyRow = (r: Row) => isNoisy(r.base?.machine) || isNoisy(r.service.machine);
