/**
 * One closed-loop point, raw or through the service, with the CPU each side used and what the
 * rest of the machine did meanwhile.
 */
import { cpuDelta, sampleCpu, type CpuSample } from './cpu.js';
import { closedLoop, type LoadOptions } from './load.js';
import { Noise, type CpuSource, type Snapshot } from './noise.js';
import type { RawKey, RawToken } from './raw.js';
import type { CpuUse, RawPoint, ServicePoint } from './report.js';
import { scrape, serverWindow, type Scrape } from './scrape.js';

/** A signer child the bench drives. */
export interface Service {
  pid: number;
  metricsUrl: string;
  /** The store's own processes when they are separate (PostgreSQL), counted apart from the signer. */
  storeCpu?: CpuSource;
}

export interface PointOptions {
  concurrency: number;
  seconds: number;
  warmup: number;
}

export const cpuUse = (d: CpuSample, seconds: number, ops: number): CpuUse => ({
  usPerSign: d.total === undefined ? undefined : (d.total / ops) * 1e6,
  cores: d.total === undefined ? undefined : d.total / seconds,
  jsThread: d.main === undefined ? undefined : d.main / seconds,
});

const loadOptions = (o: PointOptions, hooks: Pick<LoadOptions, 'onWindowStart' | 'onWindowEnd'>): LoadOptions => ({
  concurrency: o.concurrency,
  warmupMs: o.warmup * 1000,
  durationMs: o.seconds * 1000,
  ...hooks,
});

/** `concurrency` sign loops straight on pkcs11js. */
export async function measureRaw(noise: Noise, raw: RawToken, key: RawKey, payload: (seq: number) => Buffer, o: PointOptions): Promise<RawPoint> {
  const snap = () => ({ own: sampleCpu(process.pid), all: noise.snapshot() });
  let a: ReturnType<typeof snap> | undefined;
  let b: ReturnType<typeof snap> | undefined;
  const load = await closedLoop(
    (seq) => raw.sign(key, payload(seq)).then(() => 1),
    loadOptions(o, { onWindowStart: () => (a = snap()), onWindowEnd: () => (b = snap()) }),
  );
  const own = cpuDelta(a!.own, b!.own);
  return { ...load, cpu: cpuUse(own, load.seconds, load.units), machine: Noise.elsewhere(a!.all, b!.all, load.seconds) };
}

/**
 * `concurrency` calls of `op` in flight against a signer child; `op` resolves to the signatures
 * it produced. `algorithm` selects the server-side handler histogram.
 */
export async function measureService(
  noise: Noise,
  svc: Service,
  op: (seq: number) => Promise<number>,
  o: PointOptions & { algorithm: string; channels: number; batch?: number },
): Promise<ServicePoint> {
  interface Snap {
    own: CpuSample;
    child: CpuSample;
    store?: number;
    all: Snapshot;
    metrics: Promise<Scrape>;
  }
  const snap = (): Snap => ({
    own: sampleCpu(process.pid),
    child: sampleCpu(svc.pid),
    store: svc.storeCpu?.(),
    all: noise.snapshot(),
    metrics: scrape(svc.metricsUrl),
  });
  let a: Snap | undefined;
  let b: Snap | undefined;
  const load = await closedLoop(op, loadOptions(o, { onWindowStart: () => (a = snap()), onWindowEnd: () => (b = snap()) }));
  const [ma, mb] = await Promise.all([a!.metrics, b!.metrics]);
  const win = serverWindow(ma, mb, o.algorithm);
  const child = cpuDelta(a!.child, b!.child);
  // /proc when there is one; otherwise the service's own process_cpu_seconds_total.
  const serverCpu = cpuUse({ total: child.total ?? win.cpuSeconds, main: child.main }, load.seconds, load.units);
  const store = a!.store === undefined || b!.store === undefined ? undefined : cpuUse({ total: b!.store - a!.store }, load.seconds, load.units);
  return {
    machine: Noise.elsewhere(a!.all, b!.all, load.seconds),
    ...load,
    channels: o.channels,
    batch: o.batch,
    server: { ...win, cpu: serverCpu },
    client: cpuUse(cpuDelta(a!.own, b!.own), load.seconds, load.units),
    ...(store ? { store } : {}),
  };
}
