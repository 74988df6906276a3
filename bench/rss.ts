/**
 * The signer's resident memory under full load: hot EVM Sign (policy, replay guard, audit) at the
 * EVM concurrency for --rss-seconds (the target's definition: 10 minutes), RSS read from
 * /proc/<pid>/status every few seconds. "Flat" means no growth beyond warm-up: RSS at the end is
 * at most 10% above RSS at a quarter of the window (allocators and V8 settle in the first minutes;
 * a leak keeps growing to the end).
 */
import { readFileSync } from 'node:fs';
import { closedLoop, type Op } from './load.js';
import { type Elsewhere, Noise } from './noise.js';

/** Growth over the last three quarters of the window that still counts as flat. */
export const FLAT_GROWTH = 0.1;
export const RSS_LIMIT_MB = 250;

export interface RssPoint {
  seconds: number;
  concurrency: number;
  intervalSeconds: number;
  /** [seconds since the window opened, MB] */
  samples: Array<[number, number]>;
  startMb: number;
  peakMb: number;
  endMb: number;
  /** RSS at a quarter of the window: the baseline of "flat". */
  quarterMb: number;
  /** (end - quarter) / quarter */
  growth: number;
  flat: boolean;
  signs: number;
  unitsPerSec: number;
  errors: number;
  machine: Elsewhere;
}

/** VmRSS of `pid` in MB (10^6 bytes); NaN once the process is gone. */
export function rssMb(pid: number): number {
  try {
    const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? (Number(m[1]) * 1024) / 1e6 : Number.NaN;
  } catch {
    return Number.NaN;
  }
}

export async function measureRss(
  noise: Noise,
  o: { pid: number; op: Op; seconds: number; concurrency: number; warmup: number },
): Promise<RssPoint> {
  const intervalSeconds = Math.min(5, Math.max(0.5, o.seconds / 120));
  const samples: Array<[number, number]> = [];
  let t0 = 0;
  let timer: NodeJS.Timeout | undefined;
  const sample = () => samples.push([(performance.now() - t0) / 1000, rssMb(o.pid)]);
  let a = noise.snapshot();
  let b = a;
  const load = await closedLoop(o.op, {
    concurrency: o.concurrency,
    warmupMs: o.warmup * 1000,
    durationMs: o.seconds * 1000,
    onWindowStart: () => {
      t0 = performance.now();
      a = noise.snapshot();
      sample();
      timer = setInterval(sample, intervalSeconds * 1000);
    },
    onWindowEnd: () => {
      clearInterval(timer);
      sample();
      b = noise.snapshot();
    },
  });
  const mb = samples.map(([, m]) => m);
  const quarter = samples.find(([t]) => t >= load.seconds / 4)?.[1] ?? mb[0]!;
  const endMb = mb.at(-1)!;
  const growth = (endMb - quarter) / quarter;
  return {
    seconds: load.seconds,
    concurrency: o.concurrency,
    intervalSeconds,
    samples: samples.map(([t, m]) => [Math.round(t * 10) / 10, Math.round(m * 10) / 10]),
    startMb: mb[0]!,
    peakMb: Math.max(...mb),
    endMb,
    quarterMb: quarter,
    growth,
    flat: growth <= FLAT_GROWTH,
    signs: load.units,
    unitsPerSec: load.unitsPerSec,
    errors: load.errors,
    machine: Noise.elsewhere(a, b, load.seconds),
  };
}
