/**
 * Hot-wallet latency while big batches are signed: hot Sign (EVM transfers, one hot key) at a
 * modest concurrency on an idle signer, then the same load while a separate process
 * (bench/batch-driver.ts) signs N-item batches back to back on a payout key of the same signer.
 * The HSM pool serves hot waiters first; what the batch still costs the hot path shows as the
 * busy/idle p99.
 */
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type * as grpc from '@grpc/grpc-js';
import type { DriverBatch, DriverInit, FromDriver, ToDriver } from './batch-driver.js';
import { sampleCpu } from './cpu.js';
import type { Noise } from './noise.js';
import { type Nonces, signEvmOp } from './ops.js';
import { measureOnce, type Side } from './point.js';
import type { BenchSigner } from './signers.js';

export interface PriorityPoint {
  concurrency: number;
  hotKey: string;
  batchKey: string;
  batchItems: number;
  idle: Side;
  busy: Side;
  batches: {
    /** Batches that overlapped the busy window. */
    count: number;
    /** Items of the batches that overlapped the window, per second of their span. */
    itemsPerSec: number;
    /** Share of the busy window during which a batch was in flight. */
    coverage: number;
    medianWallMs: number;
    /** Batches the service refused during the window (not counted above), and the first reason. */
    refused: number;
    firstRefusal?: string;
  };
  /** busy p99 / idle p99 */
  ratio: number;
}

export interface BatchDriver {
  pid: number;
  go(): void;
  stop(): Promise<DriverBatch[]>;
  close(): Promise<void>;
}

export async function startBatchDriver(repoRoot: string, init: Omit<DriverInit, 'type'>): Promise<BatchDriver> {
  const child = fork(fileURLToPath(new URL('./batch-driver.ts', import.meta.url)), [], {
    cwd: repoRoot,
    execArgv: ['--import', 'tsx'],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const reap = () => child.exitCode === null && child.signalCode === null && child.kill('SIGKILL');
  process.once('exit', reap);
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const message = () =>
    new Promise<FromDriver>((resolve, reject) => {
      const onExit = () => reject(new Error('the batch driver exited'));
      child.once('exit', onExit);
      child.once('message', (m: FromDriver) => {
        child.off('exit', onExit);
        resolve(m);
      });
    });
  const send = (m: ToDriver) => child.send(m);
  const ready = message();
  send({ type: 'init', ...init });
  if ((await ready).type !== 'ready') throw new Error('batch driver: expected ready');
  return {
    pid: child.pid!,
    go: () => send({ type: 'go' }),
    async stop() {
      const done = message();
      send({ type: 'stop' });
      const m = await done;
      if (m.type !== 'done') throw new Error('batch driver: expected done');
      if (m.error) throw new Error(`batch driver: ${m.error}`);
      return m.batches;
    },
    async close() {
      if (child.connected) send({ type: 'exit' });
      const timer = setTimeout(reap, 5000);
      await exited;
      clearTimeout(timer);
      process.removeListener('exit', reap);
    },
  };
}

export async function measurePriority(
  noise: Noise,
  o: {
    signers: grpc.Client[];
    signer: BenchSigner;
    hotKey: string;
    hotNonces: Nonces;
    driver: BatchDriver;
    batchKey: string;
    batchItems: number;
    concurrency: number;
    seconds: number;
    warmup: number;
  },
): Promise<PriorityPoint> {
  const hot = () =>
    measureOnce(noise, signEvmOp(o.signers, o.hotKey, o.hotNonces), {
      ...o,
      watch: { client: process.pid, signer: o.signer.pid },
      metrics: { url: o.signer.metricsUrl, algorithm: 'ecdsa-secp256k1' },
    });
  noise.watch('batch-driver', () => sampleCpu(o.driver.pid).total);
  try {
    const label = `hot Sign c=${o.concurrency}`;
    const idle = await noise.quiet(`${label}, signer otherwise idle (${o.seconds}s)`, hot);
    const during = `while ${o.batchItems}-item batches are signed back to back`;
    const { batches, ...busy } = await noise.quiet(`${label}, ${during} (${o.seconds}s)`, async () => {
      o.driver.go();
      const h = await hot();
      return { ...h, batches: batchStats(await o.driver.stop(), h.window) };
    });
    const { concurrency, hotKey, batchKey, batchItems } = o;
    return { concurrency, hotKey, batchKey, batchItems, idle, busy, batches, ratio: busy.p99Ms / idle.p99Ms };
  } finally {
    noise.unwatch('batch-driver');
  }
}

/** The batches that overlapped the hot window `win`. */
function batchStats(all: DriverBatch[], win: { start: number; end: number }): PriorityPoint['batches'] {
  const overlapping = all.filter((x) => x.end > win.start && x.start < win.end);
  const failed = overlapping.filter((x) => x.error);
  const batches = overlapping.filter((x) => !x.error);
  const overlap = batches.reduce((s, x) => s + Math.min(x.end, win.end) - Math.max(x.start, win.start), 0);
  const span = batches.length ? batches[batches.length - 1]!.end - batches[0]!.start : NaN;
  const walls = batches.map((x) => x.end - x.start).sort((x, y) => x - y);
  return {
    count: batches.length,
    itemsPerSec: (batches.reduce((s, x) => s + x.items, 0) / span) * 1000,
    coverage: overlap / (win.end - win.start),
    medianWallMs: walls.length ? walls[Math.floor((walls.length - 1) / 2)]! : NaN,
    refused: failed.length,
    ...(failed[0]?.error ? { firstRefusal: failed[0].error } : {}),
  };
}
