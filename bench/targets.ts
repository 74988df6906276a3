/** The performance targets a run is checked against. */
import type { BatchPoint } from './batch.js';
import type { PriorityPoint } from './priority.js';
import { isNoisy, noisy, type Row } from './report.js';

export interface Target {
  what: string;
  value?: number;
  met?: boolean;
  /** Other processes disturbed a measurement it rests on. */
  noisy?: boolean;
  text: string;
}

const pct = (v: number) => `${Math.round(v * 100)}%`;

function target(what: string, value: number | undefined, disturbed: boolean, met: (v: number) => boolean, show: (v: number) => string): Target {
  if (value === undefined || !Number.isFinite(value)) return { what, text: `target (${what}): not measured` };
  const note = disturbed ? ', disturbed by other processes' : '';
  return { what, value, met: met(value), noisy: disturbed, text: `target (${what}): ${met(value) ? 'met' : 'NOT met'} (${show(value)}${note})` };
}

export function checkTargets(
  rows: Row[],
  batches: BatchPoint[],
  priority: PriorityPoint[],
  o: { top: number; channels: number; evmConcurrency: number },
): Target[] {
  const digest = rows.find((r) => !r.label && r.algorithm === 'ecdsa-secp256k1' && r.concurrency === o.top && r.service.channels === o.channels && !r.service.batch);
  const evm = rows.find((r) => r.label === 'evm-tx sqlite');
  // A row measured without raw compares with the raw of its concurrency's digest row.
  const rawRow = (r: Row | undefined) => r && (r.raw ? r : rows.find((x) => !x.label && x.raw && x.algorithm === r.algorithm && x.concurrency === r.concurrency));
  const disturbed = (r: Row | undefined) => [r, rawRow(r)].some((x) => x !== undefined && noisy(x));
  const out = [target(`service >= 60% of raw, secp256k1 digests c=${o.top}`, digest?.ratio, disturbed(digest), (v) => v >= 0.6, pct)];
  if (o.evmConcurrency > 0) {
    out.push(target(`hot EVM Sign, SQLite, >= 50% of raw at c=${o.evmConcurrency}`, evm?.ratio, disturbed(evm), (v) => v >= 0.5, pct));
  }
  for (const b of batches) out.push(target(`SignBatch of ${b.items} >= 80% of raw`, b.ratio, b.noisy, (v) => v >= 0.8, pct));
  for (const p of priority) {
    const d = isNoisy(p.idle.machine) || isNoisy(p.busy.machine);
    out.push(target(`hot p99 while batches sign <= 2x idle, c=${p.concurrency}`, p.ratio, d, (v) => v <= 2, (v) => `${v.toFixed(2)}x`));
  }
  return out;
}
