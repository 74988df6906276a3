/** The machine a run happened on, and what it prints: one set of tables for every kind of point. */
import { execFileSync } from 'node:child_process';
import { cpus, release, totalmem } from 'node:os';
import type { BatchPoint } from './batch.js';
import type { Pinning } from './cpu.js';
import { isNoisy, NOISY_CORES } from './noise.js';
import type { Options } from './options.js';
import { beyondHsm, type CpuUse, noisyRow, type Row, ratios, type Side } from './point.js';
import type { PriorityPoint } from './priority.js';
import type { ProfiledPoint } from './profiled.js';
import { FLAT_GROWTH, type RssPoint } from './rss.js';
import type { Target } from './targets.js';

/** Everything a run measured (also its JSON file). */
export interface RunResult {
  date: string;
  machine: Machine;
  argv: string[];
  options: Options;
  pinning: Pinning;
  rows: Row[];
  batches: BatchPoint[];
  priority: PriorityPoint[];
  rss: RssPoint[];
  targets: Target[];
  /** The profiled pass (bench/profiled.ts): one entry per point and process. */
  profiles: ProfiledPoint[];
  notes: string[];
}

export interface Machine {
  nproc: number;
  cpuModel: string;
  memGiB: number;
  kernel: string;
  node: string;
  softhsm: string;
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
  };
}

/** A number right-aligned in `width`, '-' when unknown. */
const f = (n: number | undefined, digits: number, width: number) =>
  (n === undefined || !Number.isFinite(n) ? '-' : n.toFixed(digits)).padStart(width);
const pct = (n: number | undefined, width: number) =>
  (n === undefined || !Number.isFinite(n) ? '-' : `${Math.round(n * 100)}%`).padStart(width);
const flag = (noisy: boolean) => (noisy ? ' !' : '');
const table = (head: string, lines: string[], noisy: boolean) => [
  head,
  '-'.repeat(head.length),
  ...lines,
  ...(noisy ? [`! other processes used more than ${NOISY_CORES} cores during this row: figures disturbed`] : []),
];
const name = (r: Row, width: number) => r.point.padEnd(width).slice(0, width);

/**
 * The headline: the service pinned to one CPU against raw pkcs11js pinned to the same CPU, the
 * service's CPU per signature beyond raw's (what the service adds to the HSM's work), and
 * latency against raw's.
 */
export function headlineTable(rows: Row[]): string[] {
  const head =
    'point                                      c |  raw /s  svc /s svc/raw |' +
    ' raw µs/sign svc µs/sign beyond HSM µs | raw p50/p99 ms | svc p50/p99 ms';
  const lines = rows.map((r) =>
    [
      `${name(r, 40)} ${String(r.concurrency).padStart(3)} |`,
      `${f(r.base?.unitsPerSec, 0, 7)} ${f(r.service.unitsPerSec, 0, 7)} ${pct(ratios(r).throughput, 7)} |`,
      `${f(r.base?.cpu.raw?.usPerSign, 0, 11)} ${f(r.service.cpu.signer?.usPerSign, 0, 11)}`,
      `${f(beyondHsm(r), 0, 13)} |`,
      `${`${f(r.base?.p50Ms, 2, 0)} / ${f(r.base?.p99Ms, 2, 0)}`.padStart(14)} |`,
      `${`${f(r.service.p50Ms, 2, 0)} / ${f(r.service.p99Ms, 2, 0)}`.padStart(14)}${flag(noisyRow(r))}`,
    ].join(' '),
  );
  return table(head, lines, rows.some(noisyRow));
}

/** Every point, single-key and threshold: the service against its baseline. */
export function throughputTable(rows: Row[]): string[] {
  const head =
    'point                                 cpus   c | baseline        /s  p50 ms  p99 ms |' +
    '      /s  p50 ms  p99 ms | svc/base p50 x | note';
  const side = (s: Side | undefined) => `${f(s?.unitsPerSec, 0, 7)} ${f(s?.p50Ms, 2, 7)} ${f(s?.p99Ms, 2, 7)}`;
  const lines = rows.map((r) => {
    const x = ratios(r);
    const errors = [r.base, r.service].filter((s) => s?.errors).map((s) => `${s!.errors} errors (${s!.firstError})`);
    return [
      `${name(r, 37)} ${r.cpus.padEnd(4)} ${String(r.concurrency).padStart(3)} |`,
      `${(r.base?.name ?? '').padEnd(10)} ${side(r.base)} |`,
      `${side(r.service)} |`,
      `${pct(x.throughput, 8)} ${f(x.p50, 2, 4)}x |`,
      [r.note, ...errors].filter(Boolean).join('; ') + flag(noisyRow(r)),
    ]
      .join(' ')
      .trimEnd();
  });
  return table(head, lines, rows.some(noisyRow));
}

/** CPU by process per signature, the signer's own latency, and what other processes used. */
export function cpuTable(rows: Row[]): string[] {
  const head =
    'point                                 cpus   c | µs per signature by process (cores busy, JS thread busy) |' +
    ' handler / HSM held ms | other cores base/svc';
  const use = (cpu: Record<string, CpuUse>) =>
    Object.entries(cpu)
      .map(([n, u]) => `${n} ${f(u.usPerSign, 0, 0)} (${f(u.cores, 2, 0)}, ${pct(u.jsThread, 0)})`)
      .join(', ');
  const lines = rows.map((r) => {
    const s = r.service.server;
    return [
      `${name(r, 37)} ${r.cpus.padEnd(4)} ${String(r.concurrency).padStart(3)} |`,
      `${[r.base && use(r.base.cpu), use(r.service.cpu)].filter(Boolean).join('; ')} |`,
      `${f(s?.handler?.meanMs, 2, 7)} / ${f(s?.hsm?.meanMs, 2, 6)} |`,
      `${f(clamp(r.base?.machine.otherCores), 2, 4)} / ${f(clamp(r.service.machine.otherCores), 2, 4)}`,
    ].join(' ');
  });
  return table(head, lines, false);
}

/** Sampling jitter can make a near-zero difference slightly negative. */
const clamp = (n: number | undefined) => (n === undefined ? undefined : Math.max(0, n));

/** Large SignBatch calls against the same number of raw signs issued at once (medians). */
export function batchTable(points: BatchPoint[]): string[] {
  const head =
    'SignBatch          items runs | raw items/s wall ms |' +
    ' svc items/s wall ms  min ms  max ms server µs/item | svc/raw';
  const lines = points.map((p) => {
    const walls = p.service.runs.map((r) => r.wallMs);
    return [
      `${`evm, ${p.keyId}`.padEnd(18)} ${String(p.items).padStart(5)} ${String(p.service.runs.length).padStart(4)} |`,
      `${f(p.raw.itemsPerSec, 0, 11)} ${f(p.raw.wallMs, 0, 7)} |`,
      `${f(p.service.itemsPerSec, 0, 11)} ${f(p.service.wallMs, 0, 7)} ${f(Math.min(...walls), 0, 7)}`,
      `${f(Math.max(...walls), 0, 7)} ${f(p.service.serverUsPerItem, 0, 14)} |`,
      `${pct(p.ratio, 7)}${flag(p.noisy)}`,
    ].join(' ');
  });
  return table(
    head,
    lines,
    points.some((p) => p.noisy),
  );
}

/** Hot Sign latency on an idle signer and while batches are signed on another key. */
export function priorityTable(points: PriorityPoint[]): string[] {
  const head =
    'hot Sign (evm)   c | idle sign/s p50 ms p99 ms loop p99/max ms | busy sign/s p50 ms p99 ms loop p99/max ms |' +
    ' p99 busy/idle | batches: n items/s in-flight';
  const loop = (w: Side) => `${f(w.server?.eventLoop.p99Ms, 0, 0)}/${f(w.server?.eventLoop.maxMs, 0, 0)}`.padStart(15);
  const window = (w: Side) => `${f(w.unitsPerSec, 0, 11)} ${f(w.p50Ms, 2, 6)} ${f(w.p99Ms, 2, 6)} ${loop(w)} |`;
  const noisy = (p: PriorityPoint) => isNoisy(p.idle.machine) || isNoisy(p.busy.machine);
  const lines = points.map((p) =>
    [
      `${p.hotKey.padEnd(15)} ${String(p.concurrency).padStart(2)} |`,
      window(p.idle),
      window(p.busy),
      `${f(p.ratio, 2, 12)}x |`,
      `${String(p.batches.count).padStart(11)} ${f(p.batches.itemsPerSec, 0, 7)}`,
      `${pct(p.batches.coverage, 9)}${flag(noisy(p))}`,
    ].join(' '),
  );
  return table(head, lines, points.some(noisy));
}

/** The signer's RSS under full load: start, peak, end, and the growth that decides "flat". */
export function rssTable(points: RssPoint[]): string[] {
  const head = 'RSS (MB)        c  seconds | signs/s | start  peak   end | quarter growth | samples every';
  const lines = points.map((p) =>
    [
      `${'hot EVM Sign'.padEnd(14)} ${String(p.concurrency).padStart(2)} ${f(p.seconds, 0, 8)} |`,
      `${f(p.unitsPerSec, 0, 7)} |`,
      `${f(p.startMb, 0, 5)} ${f(p.peakMb, 0, 5)} ${f(p.endMb, 0, 5)} |`,
      `${f(p.quarterMb, 0, 7)} ${`${(p.growth * 100).toFixed(1)}%`.padStart(6)} |`,
      `${p.intervalSeconds} s${flag(isNoisy(p.machine))}`,
    ].join(' '),
  );
  return table(
    head,
    lines,
    points.some((p) => isNoisy(p.machine)),
  );
}

/**
 * The profiled pass, one row per point and process: the JS thread's busy time per signature and
 * its largest phases, what the other threads used. Rows are numbered: a target's why names its row.
 */
export function profileTable(points: ProfiledPoint[], top = 6): string[] {
  const head =
    ' #  point                                 cpus   c  process     signs | JS µs/sign busy |' +
    ' largest phases, µs a sign | other threads µs/sign';
  const lines = points.map((p, i) =>
    [
      `${String(i + 1).padStart(2)}  ${p.point.padEnd(37).slice(0, 37)} ${p.cpus.padEnd(4)} ${String(p.concurrency).padStart(3)}`,
      ` ${p.process.padEnd(10)} ${f(p.signs, 0, 6)} |`,
      `${f(p.js.usPerSign, 0, 10)} ${pct(p.js.busy, 4)} |`,
      `${p.js.phases
        .slice(0, top)
        .map((x) => `${x.phase} ${x.usPerSign.toFixed(0)}`)
        .join(', ')} |`,
      `${f(p.otherThreadsUsPerSign, 0, 0)}${p.note ? ` (${p.note})` : ''}`,
    ].join(' '),
  );
  return table(head, lines, false);
}

/** What was done about each target (bench/tried.ts): kept, and tried and dropped. */
export function triedLines(targets: Target[]): string[] {
  const seen = new Set<string>();
  return targets.flatMap((t) => {
    const k = `${t.key}:${t.tried ?? ''}`;
    if (!t.tried || seen.has(k)) return [];
    seen.add(k);
    return [`- ${t.point} (${t.goal}): ${t.tried}`];
  });
}

/**
 * The run's verdict, one line per target of issue 14: measured, met or not, and for a miss where
 * the time goes (the profiled pass's figures, or the measured run's CPU figures without it).
 */
export function targetsTable(targets: Target[]): string[] {
  const verdict = (t: Target) => (t.met === undefined ? 'not measured' : t.met ? 'met' : 'NOT met') + flag(!!t.noisy);
  const cols = targets.map((t) => [t.point, t.goal, t.measured, verdict(t)]);
  const width = [0, 1, 2, 3].map((i) =>
    Math.max(...cols.map((c) => c[i]!.length), ['point', 'target', 'measured', 'verdict'][i]!.length),
  );
  const cells = (c: string[]) => c.map((x, i) => x.padEnd(width[i]!)).join(' | ');
  const head = `${cells(['point', 'target', 'measured', 'verdict'])} | why (a miss: where the time goes)`;
  const lines = targets.map((t, i) => `${cells(cols[i]!)} | ${t.met === false ? (t.why ?? '') : ''}`.trimEnd());
  return table(
    head,
    lines,
    targets.some((t) => t.noisy),
  );
}

/**
 * The whole stdout report: setup, the headline, every point, batches, priority, RSS, CPU, then the
 * targets, where the time goes (the profiled pass) and what was tried.
 */
export function report(r: RunResult): string {
  const { options: o, machine: m, pinning: p } = r;
  const headline = r.rows.filter((x) => x.cpus === 'one');
  const where =
    'skipped' in p ? `NOT pinned (${p.skipped})` : `signer on CPU ${p.signer}, load generator on CPU ${p.load}`;
  const section = (title: string, lines: string[]) => (lines.length > 2 ? ['', title, ...lines] : []);
  return [
    `hsm-signer bench, ${r.date}${o.quick ? ' (quick: every point briefly, figures rough)' : ''}`,
    `machine: ${m.cpuModel}, nproc ${m.nproc}, ${m.memGiB} GiB, Linux ${m.kernel}, node ${m.node},` +
      ` SoftHSM ${m.softhsm}`,
    `setup: one fresh SoftHSM token; raw pkcs11js (C_SignInit + C_SignAsync) and every signer:` +
      ` ${o.sessions} sessions;` +
      ` signers warmed up by ${o.warmupRequests} requests of each kind, then ${o.warmup}s before each point;` +
      ` ${o.seconds}s per point (P-256/Ed25519 ${o.extraSeconds}s, threshold ${o.thresholdSeconds}s)`,
    'service: the signer as a child process; Signer.Sign over mTLS from this process (the load generator); policy,' +
      ' replay guard and audit on every call; SQLite unless noted. cpus "one": pinned with taskset; "all": shared',
    ...section(
      `One-core efficiency: ${where}; raw pkcs11js on the signer's CPU; beyond HSM = signer CPU per sign - raw's:`,
      headlineTable(headline),
    ),
    ...section(
      'Every point against its baseline (raw pkcs11js; threshold: the same FROST computation in this process, c=1):',
      throughputTable(r.rows),
    ),
    ...section(
      `SignBatch of ${o.batchItems} EVM payouts vs as many raw signs at once (medians):`,
      batchTable(r.batches),
    ),
    ...section(
      `Hot Sign, signer idle vs ${o.batchItems}-item batches signed back to back on another key` +
        " (loop: the signer's event-loop delay; in-flight: share of the window with a batch running):",
      priorityTable(r.priority),
    ),
    ...section(
      `The signer's RSS under full load (flat: end <= quarter + ${FLAT_GROWTH * 100}%), sampled from /proc:`,
      rssTable(r.rss),
    ),
    ...section('CPU by process ("client" is this process; "raw" and "in-process" are baselines):', cpuTable(r.rows)),
    '',
    ...r.notes,
    ...section('Targets of issue 14 (the same run):', targetsTable(r.targets)),
    ...section(
      'Where the time goes (profiled pass: the same loads on separate, warmed-up processes started with' +
        ' --cpu-prof, start-up and warm-up cut out by time; JS thread busy time by phase, bench/phases.ts):',
      profileTable(r.profiles),
    ),
    ...(r.options.profile ? [] : ['', 'Where the time goes: not profiled (--no-profile)']),
    ...(r.targets.some((t) => t.tried)
      ? ['', 'What was tried, per target (bench/tried.ts):', ...triedLines(r.targets)]
      : []),
  ].join('\n');
}
