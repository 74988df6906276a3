/**
 * The targets of issue 14, checked against one run: each is met, NOT met, or not measured (its
 * point was skipped). For each, the figures of the same run that say where the time (or memory)
 * goes, and for the ones whose work is done, what was tried. Figures resting on a disturbed
 * measurement say so.
 */
import type { BatchPoint } from './batch.js';
import { isNoisy } from './noise.js';
import { beyondHsm, noisyRow, type Row, ratios } from './point.js';
import type { PriorityPoint } from './priority.js';
import { type PointKey, type ProfiledPoint, profilesOf, profileWhy } from './profiled.js';
import { FLAT_GROWTH, RSS_LIMIT_MB, type RssPoint } from './rss.js';
import { type TargetKey, triedText } from './tried.js';

export interface Target {
  /** Which target (bench/tried.ts keys what was tried by it). */
  key: TargetKey;
  /** The point, e.g. "hot EVM Sign, PostgreSQL vs SQLite, c=64". */
  point: string;
  /** The target, e.g. ">= 80%". */
  goal: string;
  value?: number;
  met?: boolean;
  /** Other processes disturbed a measurement it rests on. */
  noisy?: boolean;
  /** The measured figure as printed ("-" when not measured). */
  measured: string;
  /** For a miss: the profiled pass's figures (else the measured run's CPU figures): where the time goes. */
  why?: string;
  /** The profiled pass's points this target rests on (JS thread phases per process). */
  profile?: ProfiledPoint[];
  /** What was done about it (changes kept in the code, and tried and dropped): bench/tried.ts. */
  tried?: string;
  /** One line: "target (<point> <goal>): met (...)". */
  text: string;
}

type Check = (v: number) => boolean;
type Show = (v: number) => string;

interface Spec {
  key: TargetKey;
  point: string;
  goal: string;
  value: number | undefined;
  met: Check;
  show: Show;
  noisy: boolean | undefined;
  why?: string | undefined;
  /** The profiled pass's word on it (profiledWhy), preferred to `why`. */
  profiled?: Profiled;
  tried?: string;
}

type Profiled = { why?: string; profile?: ProfiledPoint[] };

/**
 * The profile sentence of a row: the signer's JS thread (each cosigner's too, threshold), with
 * the row number of the "Where the time goes" table (1-based: `profiles` in the report's order).
 */
function profiledWhy(profiles: ProfiledPoint[], k: PointKey | undefined): Profiled {
  const mine = profilesOf(profiles, k);
  if (!mine.length) return {};
  const rows = mine.map((p) => `#${profiles.indexOf(p) + 1}`).join(', ');
  const text = mine.map((p) => profileWhy(p, p.process === 'signer' ? 5 : 3)).join('. ');
  return { why: `${text} [Where the time goes ${rows}]`, profile: mine };
}

function target(s: Spec): Target {
  const what = `${s.point} ${s.goal}`;
  const tried = s.tried ?? triedText(s.key);
  const base = { key: s.key, point: s.point, goal: s.goal, ...(tried ? { tried } : {}) };
  if (s.value === undefined || !Number.isFinite(s.value)) {
    return { ...base, measured: '-', text: `target (${what}): not measured` };
  }
  const measured = s.show(s.value);
  const note = s.noisy ? ', disturbed by other processes' : '';
  const met = s.met(s.value);
  const p = s.profiled ?? {};
  const why = p.why ?? s.why;
  return {
    ...base,
    value: s.value,
    met,
    noisy: !!s.noisy,
    measured,
    ...(why ? { why } : {}),
    ...(p.profile ? { profile: p.profile } : {}),
    text: `target (${what}): ${met ? 'met' : 'NOT met'} (${measured}${note})`,
  };
}

const pct: Show = (v) => `${Math.round(v * 100)}%`;
const ms: Show = (v) => `${v.toFixed(2)} ms`;
const us = (v: number | undefined) => (v === undefined || !Number.isFinite(v) ? '-' : `${v.toFixed(0)} µs`);
const share = (v: number | undefined) => (v === undefined ? '-' : `${Math.round(v * 100)}%`);

/** Row names the targets look for (bench/bench.ts makes the rows). */
export const POINTS = {
  digest: 'secp256k1 digest Sign',
  evmSqlite: 'hot EVM Sign, SQLite',
  evmPostgres: 'hot EVM Sign, PostgreSQL',
  /** Base: a signer with rollback.mark off; service: the SQLite signer, mark on (issue 10, point 6). */
  evmMark: 'hot EVM Sign, SQLite, rollback mark on vs off',
  /** Profiled pass only (bench/profiled-single.ts): SignBatch back to back, hot Sign during batches. */
  batch: 'SignBatch (EVM)',
  priorityBusy: 'hot EVM Sign during batches',
};

/** Where a service row's CPU goes, per signature, from the same run. */
function cpuWhy(r: Row | undefined): string | undefined {
  if (!r) return undefined;
  const c = r.service.cpu;
  const parts = [
    `signer ${us(c.signer?.usPerSign)} a sign (JS thread ${share(c.signer?.jsThread)} busy)`,
    r.base?.cpu.raw ? `raw ${us(r.base.cpu.raw.usPerSign)}, beyond the HSM ${us(beyondHsm(r))}` : undefined,
    c.postgres ? `PostgreSQL ${us(c.postgres.usPerSign)}` : undefined,
    r.service.server?.hsm ? `HSM session held ${r.service.server.hsm.meanMs.toFixed(1)} ms` : undefined,
    r.service.server?.handler ? `handler ${r.service.server.handler.meanMs.toFixed(1)} ms` : undefined,
    r.service.machine.otherCores !== undefined
      ? `other processes ${r.service.machine.otherCores.toFixed(2)} cores`
      : undefined,
  ];
  return parts.filter(Boolean).join('; ');
}

export function checkTargets(r: {
  rows: Row[];
  batches: BatchPoint[];
  priority: PriorityPoint[];
  rss: RssPoint[];
  profiles?: ProfiledPoint[];
}): Target[] {
  const { rows, batches, priority, rss } = r;
  const profiled = (k: PointKey | undefined) => profiledWhy(r.profiles ?? [], k);
  const key = (x: Row | undefined): PointKey | undefined =>
    x && { point: x.point, cpus: x.cpus, concurrency: x.concurrency };
  const find = (point: string, cpus: Row['cpus'], c?: number) =>
    rows.find((x) => x.point === point && x.cpus === cpus && (c === undefined || x.concurrency === c));
  const efficiency = (x: Row | undefined) => x && ratios(x).throughput;
  const noisy = (x: Row | undefined) => x && noisyRow(x);
  const digest = rows.find((x) => x.point === POINTS.digest && x.cpus === 'one' && x.concurrency > 1);
  const evm = find(POINTS.evmSqlite, 'one');
  const c1 = find(POINTS.digest, 'one', 1);
  const [sqlite, pg] = [find(POINTS.evmSqlite, 'all'), find(POINTS.evmPostgres, 'all')];
  const pgUs = pg?.service.cpu.postgres?.usPerSign;
  const pgVsSqlite = pg && sqlite && pg.service.unitsPerSec / sqlite.service.unitsPerSec;
  const mark = find(POINTS.evmMark, 'all');
  const out = [
    target({
      key: 'digest-c64',
      profiled: profiled(key(digest)),
      point: `one-core efficiency, secp256k1 digest Sign, c=${digest?.concurrency ?? 64}`,
      goal: '>= 75%',
      value: efficiency(digest),
      met: (v) => v >= 0.75,
      show: pct,
      noisy: noisy(digest),
      why: cpuWhy(digest),
    }),
    target({
      key: 'evm-sqlite',
      profiled: profiled(key(evm)),
      point: 'one-core efficiency, hot EVM Sign, SQLite',
      goal: '>= 60%',
      value: efficiency(evm),
      met: (v) => v >= 0.6,
      show: pct,
      noisy: noisy(evm),
      why: cpuWhy(evm),
    }),
    target({
      key: 'c1-p50',
      profiled: profiled(key(c1)),
      point: 'c=1 p50, digest Sign',
      goal: '<= raw p50 + 1 ms',
      value: c1?.base && c1.service.p50Ms - c1.base.p50Ms,
      met: (v) => v <= 1,
      show: (v) => `${ms(c1!.service.p50Ms)}, raw ${ms(c1!.base!.p50Ms)}, +${ms(v)}`,
      noisy: noisy(c1),
      why: cpuWhy(c1),
    }),
    target({
      key: 'pg-vs-sqlite',
      profiled: profiled(key(pg)),
      point: `hot EVM Sign, PostgreSQL vs SQLite, c=${pg?.concurrency ?? 64}`,
      goal: '>= 80%',
      value: pgVsSqlite,
      met: (v) => v >= 0.8,
      show: (v) => `${pct(v)} (${pg!.service.unitsPerSec.toFixed(0)} vs ${sqlite!.service.unitsPerSec.toFixed(0)}/s)`,
      noisy: noisy(pg) || noisy(sqlite),
      why: pg && sqlite && `PostgreSQL: ${cpuWhy(pg)}. SQLite: ${cpuWhy(sqlite)}`,
    }),
    target({
      key: 'pg-cpu',
      // PostgreSQL's own CPU: the signer's JS profile does not explain it; the run's figures do.
      point: 'PostgreSQL CPU a sign',
      goal: '<= 600 µs',
      value: pgUs,
      met: (v) => v <= 600,
      show: (v) => `${v.toFixed(0)} µs`,
      noisy: noisy(pg),
      why: cpuWhy(pg),
    }),
    target({
      key: 'mark',
      // The profiled SQLite signer runs with the mark on: its phase "rollback mark" is the cost.
      profiled: profiled(key(evm) ?? (mark && { point: POINTS.evmSqlite, cpus: 'one', concurrency: mark.concurrency })),
      point: 'hot EVM Sign with the rollback mark vs without',
      goal: '>= 95%',
      value: efficiency(mark),
      met: (v) => v >= 0.95,
      show: pct,
      noisy: noisy(mark),
      why: cpuWhy(mark),
    }),
    ...batches.map((b) =>
      target({
        key: 'batch',
        profiled: profiled({ point: POINTS.batch, cpus: 'all', concurrency: 1 }),
        point: `SignBatch of ${b.items} EVM vs raw on both cores`,
        goal: '>= 70%',
        value: b.ratio,
        met: (v) => v >= 0.7,
        show: (v) => `${pct(v)} (${b.service.itemsPerSec.toFixed(0)} vs ${b.raw.itemsPerSec.toFixed(0)} items/s)`,
        noisy: b.noisy,
        why: `signer ${us(b.service.serverUsPerItem)} of CPU an item (all its threads); median batch ${b.service.wallMs.toFixed(0)} ms, raw ${b.raw.wallMs.toFixed(0)} ms`,
      }),
    ),
    ...priority.map((p) =>
      target({
        key: 'priority',
        profiled: profiled({ point: POINTS.priorityBusy, cpus: 'all', concurrency: p.concurrency }),
        point: 'hot p99 during back-to-back batches',
        goal: '<= 2x idle',
        value: p.ratio,
        met: (v) => v <= 2,
        show: (v) => `${v.toFixed(2)}x (${p.busy.p99Ms.toFixed(1)} vs ${p.idle.p99Ms.toFixed(1)} ms)`,
        noisy: isNoisy(p.idle.machine) || isNoisy(p.busy.machine),
        why:
          `event-loop delay p99 ${p.busy.server?.eventLoop.p99Ms?.toFixed(0) ?? '-'} ms busy vs ` +
          `${p.idle.server?.eventLoop.p99Ms?.toFixed(0) ?? '-'} ms idle; a batch in flight ${share(p.batches.coverage)}` +
          ` of the window; signer ${us(p.busy.cpu.signer?.usPerSign)} a hot sign busy vs ${us(p.idle.cpu.signer?.usPerSign)} idle` +
          (p.batches.refused ? `; ${p.batches.refused} batches refused (${p.batches.firstRefusal})` : ''),
      }),
    ),
  ];
  for (const point of new Set(rows.filter((x) => x.base?.name === 'in-process').map((x) => x.point))) {
    const mine = rows.filter((x) => x.point === point);
    const at1 = mine.find((x) => x.concurrency === 1);
    const faster = (x: Row | undefined, y: Row) => (x && x.service.unitsPerSec >= y.service.unitsPerSec ? x : y);
    const best = mine.reduce(faster, undefined);
    const frostWhy = (x: Row | undefined) => {
      if (!x) return undefined;
      const by = Object.entries(x.service.cpu).map(([n, u]) => `${n} ${us(u.usPerSign)}`);
      return `${by.join(', ')} a signature (in-process FROST ${us(x.base?.cpu['in-process']?.usPerSign)})`;
    };
    out.push(
      target({
        key: 'frost-p50',
        profiled: profiled(key(at1)),
        point: `${point}, c=1 p50`,
        goal: '<= 5 ms',
        value: at1?.service.p50Ms,
        met: (v) => v <= 5,
        show: ms,
        noisy: noisy(at1),
        why: frostWhy(at1),
      }),
      target({
        key: 'frost-throughput',
        // The profiled pass runs c=1: where a signature's time goes, whatever the concurrency.
        profiled: profiled(key(at1)),
        point: `${point} throughput`,
        goal: '>= 200 signatures/s',
        value: best?.service.unitsPerSec,
        met: (v) => v >= 200,
        show: (v) => `${v.toFixed(1)}/s at c=${best!.concurrency}`,
        noisy: noisy(best),
        why: frostWhy(best),
      }),
    );
  }
  if (!rows.some((x) => x.base?.name === 'in-process')) {
    const none = { value: undefined, met: () => false, show: ms, noisy: undefined };
    out.push(
      target({ key: 'frost-p50', point: 'FROST 2-of-3, Ed25519 and BIP340, c=1 p50', goal: '<= 5 ms', ...none }),
      target({ key: 'frost-throughput', point: 'FROST 2-of-3 throughput', goal: '>= 200 signatures/s', ...none }),
    );
  }
  const m = rss[0];
  out.push(
    target({
      key: 'rss',
      point: `RSS of the signer during ${m ? `${(m.seconds / 60).toFixed(m.seconds < 600 ? 1 : 0)} minutes` : '10 minutes'} at full load`,
      goal: `flat, <= ${RSS_LIMIT_MB} MB`,
      value: m?.peakMb,
      met: (v) => v <= RSS_LIMIT_MB && !!m?.flat,
      show: (v) =>
        `peak ${v.toFixed(0)} MB; start ${m!.startMb.toFixed(0)}, end ${m!.endMb.toFixed(0)} MB, ` +
        `${m!.growth >= 0 ? '+' : ''}${(m!.growth * 100).toFixed(1)}% after the first quarter (flat: <= ${FLAT_GROWTH * 100}%)`,
      noisy: m && isNoisy(m.machine),
      why:
        m &&
        `hot EVM Sign at c=${m.concurrency}, ${m.unitsPerSec.toFixed(0)} signs/s, ${m.signs} signs` +
          `${m.errors ? `, ${m.errors} errors` : ''}; sampled every ${m.intervalSeconds} s`,
      ...(m && m.seconds < 590
        ? { tried: `${triedText('rss')}; this run: shorter than the target defines (--rss-seconds)` }
        : {}),
    }),
  );
  return out;
}
