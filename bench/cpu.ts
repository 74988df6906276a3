/**
 * CPU time of processes and threads from /proc (Linux), and CPU pinning with taskset
 * (util-linux). Elsewhere only the bench's own process total is known (process.cpuUsage).
 */
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

export interface CpuSample {
  /** Seconds of CPU, all threads. */
  total?: number;
  /** Seconds of CPU of the thread running JavaScript (its tid is the pid). */
  main?: number;
}

/** Cumulative CPU seconds of something the bench runs; undefined when unknown. */
export type CpuSource = () => number | undefined;

function run(cmd: string, args: string[]): string | undefined {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return undefined;
  }
}

let ticks: number | undefined;
const clockTicks = () => (ticks ??= Number(run('getconf', ['CLK_TCK'])) || 100);

/** The fields of a /proc stat file after "(comm)": [0] state, [1] ppid, [11] utime, [12] stime... */
function statFields(file: string): string[] | undefined {
  try {
    const s = readFileSync(file, 'utf8');
    return s.slice(s.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined; // no /proc, or the process is gone
  }
}

const statSeconds = (file: string) => {
  const f = statFields(file);
  return f && (Number(f[11]) + Number(f[12])) / clockTicks();
};

export function sampleCpu(pid: number): CpuSample {
  const own = pid === process.pid;
  const usage = process.cpuUsage();
  const total = own ? (usage.user + usage.system) / 1e6 : statSeconds(`/proc/${pid}/stat`);
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
  let line: string;
  try {
    line = readFileSync('/proc/stat', 'utf8').split('\n')[0]!;
  } catch {
    return {};
  }
  // cpu user nice system idle iowait irq softirq steal guest guest_nice
  const v = line.trim().split(/\s+/).slice(1).map(Number);
  return { busy: (v[0]! + v[1]! + v[2]! + v[5]! + v[6]!) / clockTicks(), steal: v[7]! / clockTicks() };
}

const pids = () => {
  try {
    return readdirSync('/proc')
      .filter((d) => /^\d+$/.test(d))
      .map(Number);
  } catch {
    return [];
  }
};

/**
 * CPU of a process tree, in seconds: every live process under `root` (itself included) with
 * what it used itself and what its reaped children used (cutime + cstime), so a process that
 * exits moves its time into its parent's count instead of dropping out.
 */
export function sampleTree(root: number): number | undefined {
  const children = new Map<number, number[]>();
  const used = new Map<number, number>();
  for (const pid of pids()) {
    const f = statFields(`/proc/${pid}/stat`);
    if (!f) continue;
    used.set(pid, Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]));
    children.set(Number(f[1]), [...(children.get(Number(f[1])) ?? []), pid]);
  }
  if (!used.has(root)) return undefined;
  let sum = 0;
  for (const todo = [root]; todo.length; ) {
    const pid = todo.pop()!;
    sum += used.get(pid) ?? 0;
    todo.push(...(children.get(pid) ?? []));
  }
  return sum / clockTicks();
}

/** The pid of the PostgreSQL postmaster started with `-p <port>` (pg_ctl -o "-p <port>"). */
export function findPostmaster(port: number): number | undefined {
  return pids().find((pid) => {
    let argv: string[];
    try {
      argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    } catch {
      return false;
    }
    const p = argv.indexOf('-p');
    return argv[0]?.endsWith('/postgres') && p > 0 && argv[p + 1] === String(port);
  });
}

/** Two CPUs of this process's affinity: the signer's and the load generator's; or why not. */
export type Pinning = { signer: string; load: string; all: string } | { skipped: string };

/** "0-2,5" -> ["0", "1", "2", "5"] */
const expand = (list: string) =>
  list.split(',').flatMap((part) => {
    const [a, b = a] = part.split('-').map(Number);
    return Array.from({ length: b! - a! + 1 }, (_, i) => String(a! + i));
  });

export function planPinning(): Pinning {
  const out = run('taskset', ['-p', '-c', String(process.pid)]);
  if (out === undefined) return { skipped: 'taskset (util-linux) is not available' };
  const all = out.slice(out.lastIndexOf(':') + 1).trim();
  const cpus = expand(all);
  if (cpus.length < 2) return { skipped: `the bench may use ${cpus.length} CPU (${all}); pinning needs two` };
  // Setting the mask it already has tells whether this process may set masks at all.
  if (run('taskset', ['-a', '-p', '-c', all, String(process.pid)]) === undefined) {
    return { skipped: 'taskset may not set CPU affinity here' };
  }
  return { signer: cpus[0]!, load: cpus[1]!, all };
}

/** Moves every thread of `pid` onto `cpus` (threads it starts later inherit the mask). */
export function pin(pid: number, cpus: string): void {
  execFileSync('taskset', ['-a', '-p', '-c', cpus, String(pid)], { stdio: 'ignore' });
}
