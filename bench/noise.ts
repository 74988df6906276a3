/**
 * Noise detection on a shared machine: how much CPU processes other than the bench's own (the
 * bench, the signer children, PostgreSQL, the batch driver) used during a window; waiting for a
 * quiet moment; measuring again when a window was disturbed. Waiting and measuring again are
 * paid from one time budget per run, so a busy machine makes a run noisier, not endless.
 */
import { performance } from 'node:perf_hooks';
import { type CpuSource, type SystemSample, sampleCpu, sampleSystem } from './cpu.js';

/** What the rest of the machine did during a window, in cores (noise if other work ran). */
export interface Elsewhere {
  otherCores?: number;
  stealCores?: number;
}

/** Above this many cores used by other processes during a point, the point is flagged as noisy. */
export const NOISY_CORES = 0.15;
/** True when other processes used more than NOISY_CORES during a window. */
export const isNoisy = (e: Elsewhere | undefined) => (e?.otherCores ?? 0) > NOISY_CORES;

export interface Snapshot {
  sys: SystemSample;
  /** CPU seconds of every watched source together (undefined if any is unknown). */
  ours?: number;
}

const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

export class Noise {
  private readonly sources = new Map<string, CpuSource>();
  /** Seconds spent waiting for quiet and re-measuring. */
  private spent = 0;
  private warned = false;

  constructor(private readonly o: { budgetSeconds: number; retries: number; log: (s: string) => void }) {
    this.watch('bench', () => sampleCpu(process.pid).total);
  }

  /** Counts a process (tree) as the bench's own from now on. */
  watch(name: string, source: CpuSource): void {
    this.sources.set(name, source);
  }

  unwatch(name: string): void {
    this.sources.delete(name);
  }

  snapshot(): Snapshot {
    const values = [...this.sources.values()].map((f) => f());
    return {
      sys: sampleSystem(),
      ours: values.some((v) => v === undefined) ? undefined : values.reduce<number>((a, b) => a + b!, 0),
    };
  }

  /** Cores the rest of the machine used between two snapshots, and hypervisor steal. */
  static elsewhere(a: Snapshot, b: Snapshot, seconds: number): Elsewhere {
    if (a.sys.busy === undefined || b.sys.busy === undefined || a.ours === undefined || b.ours === undefined) return {};
    return {
      otherCores: (b.sys.busy - a.sys.busy - (b.ours - a.ours)) / seconds,
      stealCores: (b.sys.steal! - a.sys.steal!) / seconds,
    };
  }

  get budget() {
    return { budgetSeconds: this.o.budgetSeconds, spentSeconds: Math.round(this.spent * 10) / 10 };
  }

  private get left(): number {
    const left = this.o.budgetSeconds - this.spent;
    if (left <= 0 && !this.warned) {
      this.warned = true;
      this.o.log(
        `noise budget (${this.o.budgetSeconds}s) used up: no more waiting or re-measuring; noisy points stay flagged "!"`,
      );
    }
    return left;
  }

  /** Waits (up to 15 s, and the budget) for half a second in which other processes use at most NOISY_CORES. */
  async calm(): Promise<void> {
    const t0 = performance.now();
    try {
      for (;;) {
        const a = this.snapshot();
        await pause(500);
        const other = Noise.elsewhere(a, this.snapshot(), 0.5).otherCores;
        if (other === undefined || other <= NOISY_CORES) return;
        const waited = (performance.now() - t0) / 1000;
        if (waited > 15 || waited - 0.5 >= this.left) {
          this.o.log(`machine still busy (other processes ${other.toFixed(2)} cores); measuring anyway`);
          return;
        }
      }
    } finally {
      // The first half-second look is part of every point; only waiting beyond it is charged.
      this.spent += Math.max(0, (performance.now() - t0) / 1000 - 0.5);
    }
  }

  /**
   * Measures until a window passes in which other processes stayed under NOISY_CORES, at most
   * 1 + retries times and while the budget lasts; keeps the least disturbed attempt. With
   * `settle: false` the first attempt starts without waiting for quiet (the caller did).
   */
  async quiet<P extends { machine: Elsewhere }>(
    label: string,
    measure: () => Promise<P>,
    o: { settle?: boolean } = {},
  ): Promise<P> {
    let best: P | undefined;
    for (let attempt = 0; attempt <= this.o.retries; attempt++) {
      if (attempt > 0 && this.left <= 0) break;
      this.o.log(
        attempt ? `${label}, again: other processes used ${best!.machine.otherCores!.toFixed(2)} cores` : label,
      );
      if (attempt > 0 || o.settle !== false) await this.calm();
      const t0 = performance.now();
      const p = await measure();
      await pause(200);
      if (attempt > 0) this.spent += (performance.now() - t0) / 1000;
      if (!best || (p.machine.otherCores ?? 0) < (best.machine.otherCores ?? 0)) best = p;
      if ((best.machine.otherCores ?? 0) <= NOISY_CORES) break;
    }
    return best!;
  }
}
