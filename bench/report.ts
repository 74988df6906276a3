/** The machine a run happened on, and the tables it prints. */
import { execFileSync } from 'node:child_process';
import { cpus, release, totalmem } from 'node:os';
import type { BatchPoint } from './batch.js';
import type { LoadResult } from './load.js';
import type { PriorityPoint } from './priority.js';
import type { ServerWindow } from './scrape.js';

export interface Machine {
  nproc: number;
  cpuModel: string;
  memGiB: number;
  kernel: string;
  node: string;
  softhsm: string;
  uvThreadpoolSize: string;
}

function tryRun(cmd: string, args: string[]): string | undefined {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return undefined;
  }
}

export function machine(): Machine {
  return {
    nproc: Number(tryRun('nproc', [])) || cpus().length,
    cpuModel: cpus()[0]?.model.trim() ?? 'unknown',
    memGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    kernel: release(),
    node: process.version,
    softhsm: tryRun('softhsm2-util', ['--version']) ?? 'unknown',
    uvThreadpoolSize: process.env.UV_THREADPOOL_SIZE ?? '4 (default)',
  };
}

/** CPU over a measurement window: per sign, and as a share of one core. */
export interface CpuUse {
  /** Whole process, µs of CPU per completed sign. */
  usPerSign?: number;
  /** Whole process, cores busy on average (1 = one core). */
  cores?: number;
  /** The JavaScript thread alone: share of the window it was on a CPU (1 = saturated). */
  jsThread?: number;
}

/** What the rest of the machine did during the window, in cores (noise if other work ran). */
export interface Elsewhere {
  otherCores?: number;
  stealCores?: number;
}

export interface RawPoint extends LoadResult {
  cpu: CpuUse;
  machine: Elsewhere;
}

export interface ServicePoint extends LoadResult {
  channels: number;
  /** Items per SignBatch call; absent for Sign. */
  batch?: number;
  server: ServerWindow & { cpu: CpuUse };
  client: CpuUse;
  /** The store's own processes (PostgreSQL), when separate from the signer. */
  store?: CpuUse;
  machine: Elsewhere;
}

export interface Row {
  algorithm: string;
  /** Shown instead of the algorithm (e.g. EVM payloads, another store). */
  label?: string;
  concurrency: number;
  raw?: RawPoint;
  service: ServicePoint;
  /** service / raw throughput */
  ratio?: number;
  note?: string;
}

/** Above this many cores used by other processes during a point, the point is flagged as noisy. */
export const NOISY_CORES = 0.15;
const name = (r: Row) => (r.label ?? r.algorithm).padEnd(15);
/** True when other processes used more than NOISY_CORES during a window. */
export const isNoisy = (e: Elsewhere | undefined) => (e?.otherCores ?? 0) > NOISY_CORES;
export const noisy = (r: Row) => isNoisy(r.raw?.machine) || isNoisy(r.service.machine);

const f = (n: number | undefined, digits: number, width: number) =>
  (n === undefined || !Number.isFinite(n) ? '-' : n.toFixed(digits)).padStart(width);
const pct = (n: number | undefined, width: number) => (n === undefined ? '-' : `${Math.round(n * 100)}%`).padStart(width);

export function throughputTable(rows: Row[]): string {
  const head =
    'algorithm        c  ch |  raw sign/s  p50 ms  p99 ms | svc sign/s  p50 ms  p99 ms | svc/raw';
  const lines = rows.map((r) =>
    [
      `${name(r)} ${String(r.concurrency).padStart(3)} ${String(r.service.channels).padStart(3)} |`,
      `${f(r.raw?.unitsPerSec, 0, 11)} ${f(r.raw?.p50Ms, 2, 7)} ${f(r.raw?.p99Ms, 2, 7)} |`,
      `${f(r.service.unitsPerSec, 0, 10)} ${f(r.service.p50Ms, 2, 7)} ${f(r.service.p99Ms, 2, 7)} |`,
      `${pct(r.ratio, 7)}${noisy(r) ? ' !' : '  '}${r.note ? ` ${r.note}` : ''}`,
      errorsNote(r),
    ]
      .join(' ')
      .trimEnd(),
  );
  return [head, '-'.repeat(head.length), ...lines, ...legend(rows.some(noisy), ' (see "other cores" below)')].join('\n');
}

const legend = (any: boolean, where = '') =>
  any ? [`! other processes used more than ${NOISY_CORES} cores during this row${where}: its figures are disturbed`] : [];

function errorsNote(r: Row): string {
  const e = [r.raw?.errors ? `raw errors ${r.raw.errors} (${r.raw.firstError})` : '', r.service.errors ? `svc errors ${r.service.errors} (${r.service.firstError})` : ''];
  return e.filter(Boolean).join('; ');
}

/** Sampling jitter can make a near-zero difference slightly negative. */
const clamp = (n: number | undefined) => (n === undefined ? undefined : Math.max(0, n));

export function cpuTable(rows: Row[]): string {
  const head =
    'algorithm        c  ch | raw µs/sign cores  JS | server µs/sign cores  JS | client µs/sign cores  JS | handler ms hsm-held ms | other cores raw/svc';
  const lines = rows.map((r) =>
    [
      `${name(r)} ${String(r.concurrency).padStart(3)} ${String(r.service.channels).padStart(3)} |`,
      `${f(r.raw?.cpu.usPerSign, 0, 11)} ${f(r.raw?.cpu.cores, 2, 5)} ${pct(r.raw?.cpu.jsThread, 4)} |`,
      `${f(r.service.server.cpu.usPerSign, 0, 14)} ${f(r.service.server.cpu.cores, 2, 5)} ${pct(r.service.server.cpu.jsThread, 4)} |`,
      `${f(r.service.client.usPerSign, 0, 14)} ${f(r.service.client.cores, 2, 5)} ${pct(r.service.client.jsThread, 4)} |`,
      `${f(r.service.server.handler?.meanMs, 2, 10)} ${f(r.service.server.hsm?.meanMs, 2, 11)} |`,
      `${f(clamp(r.raw?.machine.otherCores), 2, 11)} / ${f(clamp(r.service.machine.otherCores), 2, 4)}`,
    ].join(' '),
  );
  return [head, '-'.repeat(head.length), ...lines].join('\n');
}

/** Large SignBatch calls against the same number of raw signs issued at once (medians). */
export function batchTable(points: BatchPoint[]): string {
  const head = 'SignBatch          items runs | raw items/s wall ms | svc items/s wall ms  min ms  max ms server µs/item | svc/raw';
  const lines = points.map((p) => {
    const walls = p.service.runs.map((r) => r.wallMs);
    return [
      `${`evm, ${p.keyId}`.padEnd(18)} ${String(p.items).padStart(5)} ${String(p.service.runs.length).padStart(4)} |`,
      `${f(p.raw.itemsPerSec, 0, 11)} ${f(p.raw.wallMs, 0, 7)} |`,
      `${f(p.service.itemsPerSec, 0, 11)} ${f(p.service.wallMs, 0, 7)} ${f(Math.min(...walls), 0, 7)} ${f(Math.max(...walls), 0, 7)} ${f(p.service.serverUsPerItem, 0, 14)} |`,
      `${pct(p.ratio, 7)}${p.noisy ? ' !' : ''}`,
    ].join(' ');
  });
  return [head, '-'.repeat(head.length), ...lines, ...legend(points.some((p) => p.noisy))].join('\n');
}

/** Hot Sign latency on an idle signer and while batches are signed on another key. */
export function priorityTable(points: PriorityPoint[]): string {
  const head =
    'hot Sign (evm)   c | idle sign/s p50 ms p99 ms loop p99/max ms | busy sign/s p50 ms p99 ms loop p99/max ms | p99 busy/idle | batches: n items/s in-flight';
  const loop = (w: PriorityPoint['idle']) => `${f(w.eventLoop.p99Ms, 0, 0)}/${f(w.eventLoop.maxMs, 0, 0)}`.padStart(15);
  const lines = points.map((p) =>
    [
      `${p.hotKey.padEnd(15)} ${String(p.concurrency).padStart(2)} |`,
      `${f(p.idle.unitsPerSec, 0, 11)} ${f(p.idle.p50Ms, 2, 6)} ${f(p.idle.p99Ms, 2, 6)} ${loop(p.idle)} |`,
      `${f(p.busy.unitsPerSec, 0, 11)} ${f(p.busy.p50Ms, 2, 6)} ${f(p.busy.p99Ms, 2, 6)} ${loop(p.busy)} |`,
      `${f(p.ratio, 2, 12)}x |`,
      `${String(p.batches.count).padStart(11)} ${f(p.batches.itemsPerSec, 0, 7)} ${pct(p.batches.coverage, 9)}`,
      isNoisy(p.idle.machine) || isNoisy(p.busy.machine) ? '!' : '',
    ].join(' ').trimEnd(),
  );
  return [head, '-'.repeat(head.length), ...lines, ...legend(points.some((p) => isNoisy(p.idle.machine) || isNoisy(p.busy.machine)))].join('\n');
}
