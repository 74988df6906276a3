/**
 * The profiled pass: after the measured points, the same loads run for a few seconds against
 * processes started with `--cpu-prof` (a separate, warmed-up set, so that the measured figures
 * stay unprofiled). Each window is cut out of the process's profile by time and its JavaScript
 * thread's busy time attributed to phases (bench/phases.ts); /proc gives what the process's other
 * threads (the libuv pool where SoftHSM signs and the WAL is synced, workers) used meanwhile.
 */
import { mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { type CpuSample, cpuDelta, sampleCpu } from './cpu.js';
import { closedLoop, type LoadResult, type Op } from './load.js';
import { attribute, type CpuProfile, type Phase } from './phases.js';
import type { Row } from './point.js';

/** One process's profile over one point's window. */
export interface ProfiledPoint {
  /** The measured row it explains: point name, cpus, concurrency (bench/point.ts). */
  point: string;
  cpus: Row['cpus'];
  concurrency: number;
  /** `signer`, `cosigner-1`, ... */
  process: string;
  seconds: number;
  /** Signatures made in the window (a batch's items; hot signs and batch items during batches). */
  signs: number;
  /** Where the window started, seconds after the process was started (start-up and warm-up cut). */
  fromSeconds: number;
  /** Profile samples in the window. */
  samples: number;
  /**
   * The profile file (kept with --keep) and the window in seconds since the profile started:
   * `npx tsx bench/cpuprofile.ts <file> --from <from> --to <to>` shows it by module and function.
   */
  file: string;
  from: number;
  to: number;
  /** The JavaScript thread: busy µs per signature, share of the window busy, and by phase. */
  js: { usPerSign: number; busy: number; phases: Array<{ phase: Phase; usPerSign: number }> };
  /** CPU of the process's other threads per signature, from /proc (total minus the JS thread). */
  otherThreadsUsPerSign?: number;
  note?: string;
}

/** The row a ProfiledPoint explains. */
export type PointKey = Pick<ProfiledPoint, 'point' | 'cpus' | 'concurrency'>;

interface Watched {
  /** What the report calls it: `signer`, `cosigner-1`. */
  label: string;
  pid: number;
  dir: string;
  startedUs: number;
}
interface Window {
  key: PointKey;
  name: string;
  fromUs: number;
  toUs: number;
  cpu: CpuSample;
  signs: number;
  seconds: number;
  note?: string;
}

const nowUs = () => Number(process.hrtime.bigint() / 1000n);

export class ProfileSession {
  private readonly watched = new Map<string, Watched>();
  private readonly windows: Window[] = [];
  readonly points: ProfiledPoint[] = [];

  constructor(
    private readonly root: string,
    private readonly log: (s: string) => void,
  ) {}

  /** Node flags for a process `name` to be profiled (its own directory: one main-thread file to find). */
  nodeArgs(name: string): string[] {
    const dir = join(this.root, name);
    mkdirSync(dir, { recursive: true });
    return ['--cpu-prof', `--cpu-prof-dir=${dir}`];
  }

  /** When a process is about to start (`started` then says when a window begins after it). */
  now(): number {
    return nowUs();
  }

  /** `name` (started at `startedUs`, from now()) is running as `pid`; the report calls it `label`. */
  started(name: string, pid: number, startedUs: number, label = name): void {
    this.watched.set(name, { label, pid, dir: join(this.root, name), startedUs });
  }

  /**
   * Runs `op` in a closed loop and records the window for each of `names`. `extra(window)` adds
   * signatures made in the window by something else (batches during the priority point).
   */
  async measure(
    key: PointKey,
    names: string[],
    op: Op,
    o: {
      seconds: number;
      warmup: number;
      minOps?: number;
      extra?: (w: LoadResult['window']) => Promise<number>;
    },
  ): Promise<LoadResult> {
    const procs = names.map((n) => [n, this.watched.get(n)!] as const);
    let a: Array<{ t: number; cpu: CpuSample }> = [];
    let b: typeof a = [];
    const snap = () => procs.map(([, w]) => ({ t: nowUs(), cpu: sampleCpu(w.pid) }));
    const load = await closedLoop(op, {
      concurrency: key.concurrency,
      warmupMs: o.warmup * 1000,
      durationMs: o.seconds * 1000,
      ...(o.minOps ? { minOps: o.minOps } : {}),
      onWindowStart: () => (a = snap()),
      onWindowEnd: () => (b = snap()),
    });
    const extra = o.extra ? await o.extra(load.window) : 0;
    const signs = load.units + extra;
    const note = extra ? `${load.units} hot signs and ${Math.round(extra)} batch items` : undefined;
    procs.forEach(([name], i) => {
      const w = { key, name, fromUs: a[i]!.t, toUs: b[i]!.t, signs, seconds: load.seconds };
      this.windows.push({ ...w, cpu: cpuDelta(a[i]!.cpu, b[i]!.cpu), ...(note ? { note } : {}) });
    });
    this.log(`profiled: ${key.point} c=${key.concurrency}: ${signs.toFixed(0)} signs in ${load.seconds.toFixed(1)}s`);
    return load;
  }

  /** After `name` exited (its profile is written at exit): attributes each of its windows. */
  finish(name: string): void {
    const w = this.watched.get(name);
    if (!w) return;
    const mine = this.windows.filter((x) => x.name === name);
    const file = mainThreadFile(w);
    if (!file) {
      this.log(`profiled: no profile of ${name} (pid ${w.pid}) in ${w.dir}`);
      return;
    }
    const profile = JSON.parse(readFileSync(join(w.dir, file), 'utf8')) as CpuProfile;
    for (const x of mine) this.points.push(summarise(profile, x, w, join(w.dir, file)));
  }
}

/** The main thread's profile: thread id 0 in `CPU.<date>.<time>.<pid>.<tid>.<seq>.cpuprofile`. */
function mainThreadFile(w: Watched): string | undefined {
  return readdirSync(w.dir).find((f) => {
    const parts = f.split('.');
    return parts[3] === String(w.pid) && parts[4] === '0' && f.endsWith('.cpuprofile');
  });
}

function summarise(profile: CpuProfile, x: Window, w: Watched, file: string): ProfiledPoint {
  const p = attribute(profile, x.fromUs, x.toUs);
  const per = (us: number) => us / x.signs;
  const total = x.cpu.total;
  const main = x.cpu.main;
  return {
    ...x.key,
    process: w.label,
    seconds: x.seconds,
    signs: x.signs,
    fromSeconds: (x.fromUs - w.startedUs) / 1e6,
    samples: p.samples,
    file,
    from: (x.fromUs - profile.startTime) / 1e6,
    to: (x.toUs - profile.startTime) / 1e6,
    js: {
      usPerSign: per(p.busyUs),
      busy: p.busyUs / (p.busyUs + p.idleUs || 1),
      phases: p.phases.map((f) => ({ phase: f.phase, usPerSign: per(f.us) })),
    },
    ...(total === undefined || main === undefined ? {} : { otherThreadsUsPerSign: ((total - main) / x.signs) * 1e6 }),
    ...(x.note ? { note: x.note } : {}),
  };
}

/** The profiled points of a row (one per process), or none. */
export const profilesOf = (all: ProfiledPoint[], k: PointKey | undefined) =>
  k ? all.filter((p) => p.point === k.point && p.cpus === k.cpus && p.concurrency === k.concurrency) : [];

const us = (v: number) => `${Math.round(v).toLocaleString('en-US')} µs`;

/** "JS thread 2,310 µs a sign: store 710 µs, HSM calls 400 µs, ... (profiled pass, N signs); other threads ..." */
export function profileWhy(p: ProfiledPoint, top = 5): string {
  const phases = p.js.phases
    .slice(0, top)
    .map((f) => `${f.phase} ${us(f.usPerSign)}`)
    .join(', ');
  const other =
    p.otherThreadsUsPerSign === undefined
      ? ''
      : `; other threads ${us(p.otherThreadsUsPerSign)} (HSM signing on the libuv pool, fsync, workers)`;
  const who = p.process === 'signer' ? 'JS thread' : `${p.process} JS thread`;
  return `${who} ${us(p.js.usPerSign)} a sign: ${phases} (profiled pass, ${Math.round(p.signs)} signs)${other}`;
}
