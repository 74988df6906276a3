/** Tables and targets of the threshold bench. */
import type { ThresholdAlgorithm } from '../src/core/frost/suites.js';
import { isNoisy, NOISY_CORES } from './report.js';
import type { LocalPoint } from './threshold-local.js';
import type { ThresholdServicePoint } from './threshold-point.js';
import type { CosignerProbe } from './threshold-probe.js';

export interface SuiteResult {
  suite: ThresholdAlgorithm;
  keyId: string;
  local: LocalPoint;
  /** c=1 first, then the throughput concurrencies. */
  service: ThresholdServicePoint[];
  /** One cosigner called directly, SignShare after SignShare. */
  probe?: CosignerProbe;
  targets: ThresholdTarget[];
}

export interface ThresholdTarget {
  what: string;
  value?: number;
  met?: boolean;
  /** Other processes disturbed a measurement it rests on. */
  noisy?: boolean;
  text: string;
}

/** Issue targets: p50 at c=1 at most 1.5x in-process; sig/s (best concurrency) above in-process. */
export const P50_TARGET = 1.5;

export function thresholdTargets(suite: ThresholdAlgorithm, local: LocalPoint, service: ThresholdServicePoint[]): ThresholdTarget[] {
  const c1 = service.find((p) => p.concurrency === 1);
  const loaded = service.filter((p) => p.concurrency > 1);
  const best = loaded.reduce<ThresholdServicePoint | undefined>((x, p) => (!x || p.unitsPerSec > x.unitsPerSec ? p : x), undefined);
  const t = (what: string, value: number | undefined, disturbed: boolean, met: (v: number) => boolean, show: (v: number) => string): ThresholdTarget => {
    if (value === undefined || !Number.isFinite(value)) return { what, text: `target (${what}): not measured` };
    const note = disturbed ? ', disturbed by other processes' : '';
    return { what, value, met: met(value), noisy: disturbed, text: `target (${what}): ${met(value) ? 'met' : 'NOT met'} (${show(value)}${note})` };
  };
  return [
    t(
      `${suite} p50 at c=1 <= ${P50_TARGET}x in-process`,
      c1 && c1.p50Ms / local.p50Ms,
      isNoisy(local.machine) || isNoisy(c1?.machine),
      (v) => v <= P50_TARGET,
      (v) => `${v.toFixed(2)}x: ${c1!.p50Ms.toFixed(1)} vs ${local.p50Ms.toFixed(1)} ms`,
    ),
    t(
      `${suite} sig/s above in-process`,
      best && best.unitsPerSec / local.sigPerSec,
      isNoisy(local.machine) || isNoisy(best?.machine),
      (v) => v > 1,
      (v) => `${v.toFixed(2)}x: ${best!.unitsPerSec.toFixed(1)}/s at c=${best!.concurrency} vs ${local.sigPerSec.toFixed(1)}/s`,
    ),
  ];
}

const f = (n: number | undefined, digits: number, width: number) => (n === undefined || !Number.isFinite(n) ? '-' : n.toFixed(digits)).padStart(width);
const pct = (n: number | undefined, width: number) => (n === undefined || !Number.isFinite(n) ? '-' : `${Math.round(n * 100)}%`).padStart(width);
const flag = (noisy: boolean) => (noisy ? ' !' : '  ');

/** Latency and throughput: the in-process row, then one row per service concurrency. */
export function thresholdTable(results: SuiteResult[]): string {
  const head = 'suite               where            c |   sig/s  p50 ms  p99 ms mean ms | p50 / in-process  sig/s / in-process | errors verified';
  const lines: string[] = [];
  for (const r of results) {
    const l = r.local;
    lines.push(
      `${r.suite.padEnd(19)} ${'in-process'.padEnd(14)} ${f(1, 0, 3)} | ${f(l.sigPerSec, 1, 7)} ${f(l.p50Ms, 2, 7)} ${f(l.p99Ms, 2, 7)} ${f(l.meanMs, 2, 7)} |` +
        `${' '.repeat(38)}|${flag(isNoisy(l.machine))}`,
    );
    for (const p of r.service) {
      lines.push(
        [
          `${r.suite.padEnd(19)} ${'service (gRPC)'.padEnd(14)} ${f(p.concurrency, 0, 3)} |`,
          `${f(p.unitsPerSec, 1, 7)} ${f(p.p50Ms, 2, 7)} ${f(p.p99Ms, 2, 7)} ${f(p.meanMs, 2, 7)} |`,
          `${f(p.p50Ms / l.p50Ms, 2, 15)}x ${f(p.unitsPerSec / l.sigPerSec, 2, 19)}x |`,
          `${String(p.errors).padStart(6)} ${String(p.verified).padStart(8)}${flag(isNoisy(p.machine))}`,
          p.errors ? ` first error: ${p.firstError}` : '',
        ].join(' ').trimEnd(),
      );
    }
  }
  const noisy = results.some((r) => isNoisy(r.local.machine) || r.service.some((p) => isNoisy(p.machine)));
  return [head, '-'.repeat(head.length), ...lines, ...(noisy ? [`! other processes used more than ${NOISY_CORES} cores during this row: its figures are disturbed`] : [])].join('\n');
}

/** Where the time goes: CPU per signature by process, and the in-process steps. */
export function thresholdCpuTable(results: SuiteResult[]): string {
  const head =
    'suite               where            c | µs/sig: client  signer cosigners  total | cores | signer JS | cosigner JS 1/2/3 | signer handler ms | other cores';
  const lines: string[] = [];
  for (const r of results) {
    const l = r.local;
    lines.push(
      `${r.suite.padEnd(19)} ${'in-process'.padEnd(14)} ${f(1, 0, 3)} | ${f(l.usPerSign, 0, 14)} ${f(undefined, 0, 7)} ${f(undefined, 0, 9)} ${f(l.usPerSign, 0, 6)} |` +
        ` ${f(l.usPerSign === undefined ? undefined : (l.usPerSign * l.signatures) / l.seconds / 1e6, 2, 5)} |${' '.repeat(11)}|${' '.repeat(19)}|${' '.repeat(19)}| ${f(Math.max(0, l.machine.otherCores ?? NaN), 2, 11)}`,
    );
    for (const p of r.service) {
      const c = p.cpu;
      const total = [c.client.usPerSign, c.signer.usPerSign, c.cosigners.usPerSign].reduce<number | undefined>((s, v) => (s === undefined || v === undefined ? undefined : s + v), 0);
      const cores = [c.client.cores, c.signer.cores, c.cosigners.cores].reduce<number | undefined>((s, v) => (s === undefined || v === undefined ? undefined : s + v), 0);
      lines.push(
        [
          `${r.suite.padEnd(19)} ${'service (gRPC)'.padEnd(14)} ${f(p.concurrency, 0, 3)} |`,
          `${f(c.client.usPerSign, 0, 14)} ${f(c.signer.usPerSign, 0, 7)} ${f(c.cosigners.usPerSign, 0, 9)} ${f(total, 0, 6)} |`,
          `${f(cores, 2, 5)} |`,
          `${pct(c.signer.jsThread, 9)} |`,
          `${c.perCosigner.map((x) => pct(x.jsThread, 4).trim()).join('/').padStart(17)} |`,
          `${f(p.handler?.meanMs, 2, 17)} |`,
          `${f(Math.max(0, p.machine.otherCores ?? NaN), 2, 11)}`,
        ].join(' '),
      );
    }
  }
  const steps = results.map(
    (r) =>
      `${r.suite}: in-process steps per signature (ms): 2 x commit ${r.local.stepsMs.commit.toFixed(2)}, 2 x signShare ${r.local.stepsMs.signShare.toFixed(2)}, aggregate (with independent verification) ${r.local.stepsMs.aggregate.toFixed(2)}`,
  );
  return [head, '-'.repeat(head.length), ...lines, ...steps].join('\n');
}

const ms = (n: number | undefined, digits = 1) => (n === undefined || !Number.isFinite(n) ? '-' : n.toFixed(digits));

/**
 * Where the time goes, from the figures of the run (means, so that the parts add up): the
 * client's view against the signer's handler, the handler against one cosigner round trip and
 * the in-process aggregate; CPU per share on a cosigner against `signShare` alone; CPU per
 * signature of each process against the in-process steps.
 */
export function whereTimeGoes(r: SuiteResult): string[] {
  const c1 = r.service.find((p) => p.concurrency === 1);
  const top = r.service.filter((p) => p.concurrency > 1).reduce<ThresholdServicePoint | undefined>((x, p) => (!x || p.unitsPerSec > x.unitsPerSec ? p : x), undefined);
  const s = r.local.stepsMs;
  const out = [`${r.suite}:`];
  if (c1?.handler) {
    const h = c1.handler.meanMs;
    const rtt = r.probe?.meanMs;
    const rest = rtt === undefined ? undefined : h - rtt - s.aggregate;
    out.push(
      `  c=1, mean ms: client ${ms(c1.meanMs)} = signer handler ${ms(h)} + client and gRPC to the signer ${ms(c1.meanMs - h)};` +
        ` handler = one cosigner SignShare round trip ${ms(rtt)} (direct, sequential; signShare alone ${ms(s.signShare / 2)} in process)` +
        ` + aggregate ${ms(s.aggregate)} (in process) + the rest ${ms(rest)} (policy, replay guard and result in SQLite, audit, gRPC to two cosigners and waiting for the slower, nonce refills)`,
    );
    out.push(`  in process the same signature takes ${ms(r.local.meanMs)} ms: 2 commits ${ms(s.commit)} + 2 signShares ${ms(s.signShare)} + aggregate ${ms(s.aggregate)}; the service precomputes the commits and runs the two shares in parallel`);
  }
  if (r.probe) {
    out.push(
      `  cosigner CPU per share (µs): SignShare ${ms(r.probe.usPerShare, 0)} vs signShare alone ${ms((s.signShare / 2) * 1000, 0)} in process;` +
        ` per commitment (Commit of ${r.probe.shares}) ${ms(r.probe.usPerCommit, 0)} vs commit alone ${ms((s.commit / 2) * 1000, 0)}`,
    );
  }
  if (top) {
    const c = top.cpu;
    const all = (c.signer.usPerSign ?? NaN) + (c.cosigners.usPerSign ?? NaN) + (c.client.usPerSign ?? NaN);
    const ratio = all / (r.local.usPerSign ?? NaN);
    const cores = (c.signer.cores ?? NaN) + (c.cosigners.cores ?? NaN) + (c.client.cores ?? NaN);
    out.push(
      `  CPU per signature at c=${top.concurrency} (ms): signer ${ms((c.signer.usPerSign ?? NaN) / 1000)} (aggregate alone ${ms(s.aggregate)}),` +
        ` cosigners ${ms((c.cosigners.usPerSign ?? NaN) / 1000)} (2 commits + 2 signShares alone ${ms(s.commit + s.signShare)}), client ${ms((c.client.usPerSign ?? NaN) / 1000)};` +
        ` in all ${ms(all / 1000)} vs ${ms((r.local.usPerSign ?? NaN) / 1000)} in process (${ms(ratio, 2)}x), so ${ms(cores, 2)} busy cores give ${ms(cores / ratio, 2)}x one thread's rate`,
    );
  }
  return out;
}
