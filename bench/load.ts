/**
 * The one load generator. Closed loop: `concurrency` workers each keep one operation in flight.
 * After a warm-up, operations that complete inside the measurement window are counted and their
 * latency (from issue to completion, queueing included) recorded. An operation resolves to the
 * number of signatures it produced (1, or a batch's size).
 */
import { performance } from 'node:perf_hooks';

/** The operation a point drives; `seq` is unique per call within one loop. */
export type Op = (seq: number) => Promise<number>;

export interface LoadOptions {
  concurrency: number;
  warmupMs: number;
  durationMs: number;
  /**
   * The window stays open past `durationMs` until this many operations completed in it (default
   * max(20, concurrency)), for at most a minute more: a starved window measures nothing.
   */
  minOps?: number;
  /** Called when the measurement window opens and closes (synchronously, from a timer). */
  onWindowStart?: () => void;
  onWindowEnd?: () => void;
}

export interface LoadResult {
  concurrency: number;
  /** Actual length of the measurement window. */
  seconds: number;
  /** The measurement window, in ms since the epoch (comparable across processes). */
  window: { start: number; end: number };
  ops: number;
  /** Signatures produced by the operations counted in `ops`. */
  units: number;
  unitsPerSec: number;
  errors: number;
  firstError?: string;
  p50Ms: number;
  p99Ms: number;
  meanMs: number;
}

/**
 * Errors beyond this many, when they also outnumber the operations that succeeded, abort the
 * point: a bench that mostly fails measures nothing. Fewer are counted and reported with it.
 */
const MAX_ERRORS = 100;

export async function closedLoop(op: Op, o: LoadOptions): Promise<LoadResult> {
  let phase: 'warmup' | 'measure' | 'done' = 'warmup';
  let windowStart = 0;
  let windowEnd = 0;
  const latencies: number[] = [];
  let units = 0;
  let errors = 0;
  let firstError: unknown;
  let seq = 0;
  /** Operations that succeeded, warm-up included. */
  let done = 0;

  const minOps = o.minOps ?? Math.max(20, o.concurrency);
  const opened = setTimeout(() => {
    phase = 'measure';
    windowStart = performance.now();
    o.onWindowStart?.();
  }, o.warmupMs);
  const close = () => {
    if (latencies.length < minOps && performance.now() - windowStart < o.durationMs + 60_000) {
      closed = setTimeout(close, 20);
      return;
    }
    phase = 'done';
    windowEnd = performance.now();
    o.onWindowEnd?.();
  };
  let closed = setTimeout(close, o.warmupMs + o.durationMs);

  const worker = async () => {
    while (phase !== 'done') {
      const t0 = performance.now();
      let n: number;
      try {
        n = await op(seq++);
      } catch (e) {
        firstError ??= e;
        if (++errors > MAX_ERRORS && errors > done) throw new Error(`${errors} errors; first: ${describe(firstError)}`);
        continue;
      }
      done++;
      if (phase === 'measure') {
        latencies.push(performance.now() - t0);
        units += n;
      }
    }
  };
  try {
    await Promise.all(Array.from({ length: o.concurrency }, worker));
  } finally {
    phase = 'done'; // when one worker threw, the others stop too
    clearTimeout(opened);
    clearTimeout(closed);
  }

  const seconds = (windowEnd - windowStart) / 1000;
  const sorted = Float64Array.from(latencies).sort();
  return {
    concurrency: o.concurrency,
    seconds,
    window: { start: performance.timeOrigin + windowStart, end: performance.timeOrigin + windowEnd },
    ops: sorted.length,
    units,
    unitsPerSec: units / seconds,
    errors,
    ...(firstError === undefined ? {} : { firstError: describe(firstError) }),
    p50Ms: percentile(sorted, 0.5),
    p99Ms: percentile(sorted, 0.99),
    meanMs: sorted.reduce((a, b) => a + b, 0) / (sorted.length || 1),
  };
}

/**
 * Exactly `count` operations, `concurrency` at a time, unmeasured: a warm-up by request count
 * (JIT, caches, pools), so that every signer has served the same work before its first point.
 * Errors are counted, not thrown (a loaded machine may miss a deadline), unless none succeeded.
 */
export async function runCount(op: Op, count: number, concurrency: number) {
  let seq = 0;
  let errors = 0;
  let firstError: unknown;
  const worker = async () => {
    while (seq < count) {
      await op(seq++).catch((e: unknown) => {
        errors++;
        firstError ??= e;
      });
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
  if (errors && errors === count) throw new Error(`all ${count} requests failed; first: ${describe(firstError)}`);
  return { errors, ...(errors ? { firstError: describe(firstError) } : {}) };
}

/** Nearest-rank percentile of an ascending array. */
export function percentile(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
}

export function median(xs: number[]): number {
  const s = Float64Array.from(xs).sort();
  if (s.length === 0) return NaN;
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

function describe(e: unknown): string {
  const err = e as { code?: unknown; details?: unknown; message?: unknown };
  if (typeof err?.details === 'string') return `gRPC ${String(err.code)}: ${err.details}`;
  return String(err?.message ?? e);
}
