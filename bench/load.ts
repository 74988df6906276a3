/**
 * Closed-loop load: `concurrency` workers each keep one operation in flight. After a warm-up,
 * operations that complete inside the measurement window are counted and their latency (from
 * issue to completion, queueing included) recorded. An operation resolves to the number of
 * signatures it produced (1, or a batch's size).
 */
import { performance } from 'node:perf_hooks';

export interface LoadOptions {
  concurrency: number;
  warmupMs: number;
  durationMs: number;
  /** Called when the measurement window opens and closes (synchronously, from a timer). */
  onWindowStart?: () => void;
  onWindowEnd?: () => void;
}

export interface LoadResult {
  concurrency: number;
  /** Actual length of the measurement window. */
  seconds: number;
  ops: number;
  opsPerSec: number;
  /** Signatures produced by the operations counted in `ops`. */
  units: number;
  unitsPerSec: number;
  errors: number;
  firstError?: string;
  p50Ms: number;
  p99Ms: number;
  meanMs: number;
  maxMs: number;
}

/** Errors beyond this many abort the point: a bench that mostly fails measures nothing. */
const MAX_ERRORS = 100;

export async function closedLoop(op: (seq: number) => Promise<number>, o: LoadOptions): Promise<LoadResult> {
  let phase: 'warmup' | 'measure' | 'done' = 'warmup';
  let windowStart = 0;
  let windowEnd = 0;
  const latencies: number[] = [];
  let units = 0;
  let errors = 0;
  let firstError: unknown;
  let seq = 0;

  const opened = setTimeout(() => {
    phase = 'measure';
    windowStart = performance.now();
    o.onWindowStart?.();
  }, o.warmupMs);
  const closed = setTimeout(() => {
    phase = 'done';
    windowEnd = performance.now();
    o.onWindowEnd?.();
  }, o.warmupMs + o.durationMs);

  const worker = async () => {
    while (phase !== 'done') {
      const t0 = performance.now();
      let n: number;
      try {
        n = await op(seq++);
      } catch (e) {
        firstError ??= e;
        if (++errors > MAX_ERRORS) throw new Error(`more than ${MAX_ERRORS} errors; first: ${describe(firstError)}`);
        continue;
      }
      if (phase === 'measure') {
        latencies.push(performance.now() - t0);
        units += n;
      }
    }
  };
  try {
    await Promise.all(Array.from({ length: o.concurrency }, worker));
  } finally {
    clearTimeout(opened);
    clearTimeout(closed);
  }

  const seconds = (windowEnd - windowStart) / 1000;
  const sorted = Float64Array.from(latencies).sort();
  return {
    concurrency: o.concurrency,
    seconds,
    ops: sorted.length,
    opsPerSec: sorted.length / seconds,
    units,
    unitsPerSec: units / seconds,
    errors,
    firstError: firstError === undefined ? undefined : describe(firstError),
    p50Ms: percentile(sorted, 0.5),
    p99Ms: percentile(sorted, 0.99),
    meanMs: sorted.reduce((a, b) => a + b, 0) / (sorted.length || 1),
    maxMs: sorted.length ? sorted[sorted.length - 1]! : NaN,
  };
}

/** Nearest-rank percentile of an ascending array. */
export function percentile(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
}

function describe(e: unknown): string {
  const err = e as { code?: unknown; details?: unknown; message?: unknown };
  if (typeof err?.details === 'string') return `gRPC ${String(err.code)}: ${err.details}`;
  return String(err?.message ?? e);
}
