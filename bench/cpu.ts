/**
 * CPU time of a process and of its main (JavaScript) thread, from /proc on Linux. Elsewhere only
 * the bench's own process total is known (process.cpuUsage).
 */
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

export interface CpuSample {
  /** Seconds of CPU, all threads. */
  total?: number;
  /** Seconds of CPU of the thread running JavaScript (its tid is the pid). */
  main?: number;
}

let ticks: number | undefined;
function clockTicks(): number {
  if (ticks === undefined) {
    try {
      ticks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      ticks = 100;
    }
  }
  return ticks;
}

/** utime + stime (seconds) from a /proc stat file, or undefined when there is none. */
function statSeconds(file: string): number | undefined {
  let s: string;
  try {
    s = readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
  // Fields after "(comm)": state is field 3, utime 14, stime 15.
  const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / clockTicks();
}

export function sampleCpu(pid: number): CpuSample {
  const own = pid === process.pid;
  const total = own ? (({ user, system }) => (user + system) / 1e6)(process.cpuUsage()) : statSeconds(`/proc/${pid}/stat`);
  return { total, main: statSeconds(`/proc/${pid}/task/${pid}/stat`) };
}

/** CPU used between two samples, in seconds (undefined when either side is unknown). */
export function cpuDelta(a: CpuSample, b: CpuSample): CpuSample {
  const d = (x?: number, y?: number) => (x === undefined || y === undefined ? undefined : y - x);
  return { total: d(a.total, b.total), main: d(a.main, b.main) };
}

/** Whole-machine CPU from /proc/stat: busy (user+nice+system+irq+softirq) and steal, in seconds. */
export interface SystemSample {
  busy?: number;
  steal?: number;
}

export function sampleSystem(): SystemSample {
  let line: string | undefined;
  try {
    line = readFileSync('/proc/stat', 'utf8').split('\n')[0];
  } catch {
    return {};
  }
  // cpu user nice system idle iowait irq softirq steal guest guest_nice
  const v = line!.trim().split(/\s+/).slice(1).map(Number);
  const t = clockTicks();
  return { busy: (v[0]! + v[1]! + v[2]! + v[5]! + v[6]!) / t, steal: v[7]! / t };
}

/**
 * CPU of a process tree, in seconds: every live process under `root` (itself included) with
 * what it used itself and what its reaped children used (cutime + cstime), so a process that
 * exits moves its time into its parent's count instead of dropping out.
 */
export function sampleTree(root: number): number | undefined {
  let pids: string[];
  try {
    pids = readdirSync('/proc').filter((d) => /^\d+$/.test(d));
  } catch {
    return undefined;
  }
  const children = new Map<number, number[]>();
  const used = new Map<number, number>();
  for (const d of pids) {
    let s: string;
    try {
      s = readFileSync(`/proc/${d}/stat`, 'utf8');
    } catch {
      continue; // gone meanwhile
    }
    // After "(comm)": ppid is index 1, utime 11, stime 12, cutime 13, cstime 14.
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    const pid = Number(d);
    const ppid = Number(f[1]);
    used.set(pid, Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]));
    children.set(ppid, [...(children.get(ppid) ?? []), pid]);
  }
  if (!used.has(root)) return undefined;
  let ticksUsed = 0;
  for (const todo = [root]; todo.length; ) {
    const pid = todo.pop()!;
    ticksUsed += used.get(pid) ?? 0;
    todo.push(...(children.get(pid) ?? []));
  }
  return ticksUsed / clockTicks();
}

/** The pid of the PostgreSQL postmaster started with `-p <port>` (pg_ctl -o "-p <port>"). */
export function findPostmaster(port: number): number | undefined {
  let pids: string[];
  try {
    pids = readdirSync('/proc').filter((d) => /^\d+$/.test(d));
  } catch {
    return undefined;
  }
  for (const d of pids) {
    let argv: string[];
    try {
      argv = readFileSync(`/proc/${d}/cmdline`, 'utf8').split('\0');
    } catch {
      continue;
    }
    const p = argv.indexOf('-p');
    if (argv[0]?.endsWith('/postgres') && p > 0 && argv[p + 1] === String(port)) return Number(d);
  }
  return undefined;
}
