/**
 * The targets of issue 14, checked against one run: each is met, NOT met, or not measured (its
 * point was skipped). Figures resting on a disturbed measurement say so.
 */
import type { BatchPoint } from './batch.js';
import { isNoisy } from './noise.js';
import { noisyRow, type Row, ratios } from './point.js';
import type { PriorityPoint } from './priority.js';

export interface Target {
  what: string;
  value?: number;
  met?: boolean;
  /** Other processes disturbed a measurement it rests on. */
  noisy?: boolean;
  text: string;
}

type Check = (v: number) => boolean;
type Show = (v: number) => string;

function target(what: string, value: number | undefined, met: Check, show: Show, noisy: boolean | undefined): Target {
  if (value === undefined || !Number.isFinite(value)) return { what, text: `target (${what}): not measured` };
  const note = noisy ? ', disturbed by other processes' : '';
  const verdict = met(value) ? 'met' : 'NOT met';
  return { what, value, met: met(value), noisy: !!noisy, text: `target (${what}): ${verdict} (${show(value)}${note})` };
}

const pct: Show = (v) => `${Math.round(v * 100)}%`;
const ms: Show = (v) => `${v.toFixed(2)} ms`;

/** Row names the targets look for (bench/bench.ts makes the rows). */
export const POINTS = {
  digest: 'secp256k1 digest Sign',
  evmSqlite: 'hot EVM Sign, SQLite',
  evmPostgres: 'hot EVM Sign, PostgreSQL',
  /** Base: a signer with rollback.mark off; service: the SQLite signer, mark on (issue 10, point 6). */
  evmMark: 'hot EVM Sign, SQLite, rollback mark on vs off',
};

export function checkTargets(rows: Row[], batches: BatchPoint[], priority: PriorityPoint[]): Target[] {
  const find = (point: string, cpus: Row['cpus'], c?: number) =>
    rows.find((r) => r.point === point && r.cpus === cpus && (c === undefined || r.concurrency === c));
  const efficiency = (r: Row | undefined) => r && ratios(r).throughput;
  const noisy = (r: Row | undefined) => r && noisyRow(r);
  const digest = rows.find((r) => r.point === POINTS.digest && r.cpus === 'one' && r.concurrency > 1);
  const evm = find(POINTS.evmSqlite, 'one');
  const c1 = find(POINTS.digest, 'one', 1);
  const [sqlite, pg] = [find(POINTS.evmSqlite, 'all'), find(POINTS.evmPostgres, 'all')];
  const pgUs = pg?.service.cpu.postgres?.usPerSign;
  const pgVsSqlite = pg && sqlite && pg.service.unitsPerSec / sqlite.service.unitsPerSec;
  const mark = find(POINTS.evmMark, 'all');
  const out = [
    target(
      `one-core efficiency, secp256k1 digest Sign, c=${digest?.concurrency ?? 64} >= 75%`,
      efficiency(digest),
      (v) => v >= 0.75,
      pct,
      noisy(digest),
    ),
    target('one-core efficiency, hot EVM Sign, SQLite >= 60%', efficiency(evm), (v) => v >= 0.6, pct, noisy(evm)),
    target(
      'c=1 p50, digest Sign <= raw p50 + 1 ms',
      c1?.base && c1.service.p50Ms - c1.base.p50Ms,
      (v) => v <= 1,
      (v) => `${ms(c1!.service.p50Ms)}, raw ${ms(c1!.base!.p50Ms)}, +${ms(v)}`,
      noisy(c1),
    ),
    target(
      `hot EVM Sign, PostgreSQL vs SQLite, c=${pg?.concurrency ?? 64} >= 80%`,
      pgVsSqlite,
      (v) => v >= 0.8,
      pct,
      noisy(pg) || noisy(sqlite),
    ),
    target(
      'PostgreSQL CPU <= 600 µs a sign',
      pgUs,
      (v) => v <= 600,
      (v) => `${v.toFixed(0)} µs`,
      noisy(pg),
    ),
    target(
      'hot EVM Sign with the rollback mark vs without >= 95%',
      efficiency(mark),
      (v) => v >= 0.95,
      pct,
      noisy(mark),
    ),
    ...batches.map((b) =>
      target(`SignBatch of ${b.items} EVM vs raw on both cores >= 70%`, b.ratio, (v) => v >= 0.7, pct, b.noisy),
    ),
    ...priority.map((p) => {
      const disturbed = isNoisy(p.idle.machine) || isNoisy(p.busy.machine);
      const x = (v: number) => `${v.toFixed(2)}x`;
      return target('hot p99 during back-to-back batches <= 2x idle', p.ratio, (v) => v <= 2, x, disturbed);
    }),
  ];
  for (const point of new Set(rows.filter((r) => r.base?.name === 'in-process').map((r) => r.point))) {
    const mine = rows.filter((r) => r.point === point);
    const at1 = mine.find((r) => r.concurrency === 1);
    const faster = (x: Row | undefined, r: Row) => (x && x.service.unitsPerSec >= r.service.unitsPerSec ? x : r);
    const best = mine.reduce(faster, undefined);
    out.push(
      target(`${point}, c=1 p50 <= 5 ms`, at1?.service.p50Ms, (v) => v <= 5, ms, noisy(at1)),
      target(
        `${point} >= 200 signatures/s`,
        best?.service.unitsPerSec,
        (v) => v >= 200,
        (v) => `${v.toFixed(1)}/s at c=${best!.concurrency}`,
        noisy(best),
      ),
    );
  }
  const rss = 'RSS of the signer during 10 minutes at full load, flat, <= 250 MB';
  out.push({ what: rss, text: `target (${rss}): not measured by this bench` });
  return out;
}
