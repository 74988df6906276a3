/** The performance targets a run is checked against. */
import type { BatchPoint } from './batch.js';
import type { PriorityPoint } from './priority.js';
import type { Row } from './report.js';

export interface Target {
  what: string;
  value?: number;
  met?: boolean;
  text: string;
}

const pct = (v: number) => `${Math.round(v * 100)}%`;

function target(what: string, value: number | undefined, met: (v: number) => boolean, show: (v: number) => string): Target {
  return value === undefined || !Number.isFinite(value)
    ? { what, text: `target (${what}): not measured` }
    : { what, value, met: met(value), text: `target (${what}): ${met(value) ? 'met' : 'NOT met'} (${show(value)})` };
}

export function checkTargets(
  rows: Row[],
  batches: BatchPoint[],
  priority: PriorityPoint[],
  o: { top: number; channels: number; evmConcurrency: number },
): Target[] {
  const digest = rows.find((r) => !r.label && r.algorithm === 'ecdsa-secp256k1' && r.concurrency === o.top && r.service.channels === o.channels && !r.service.batch);
  const evm = rows.find((r) => r.label === 'evm-tx sqlite');
  const out = [target(`service >= 60% of raw, secp256k1 digests c=${o.top}`, digest?.ratio, (v) => v >= 0.6, pct)];
  if (o.evmConcurrency > 0) out.push(target(`hot EVM Sign, SQLite, >= 50% of raw at c=${o.evmConcurrency}`, evm?.ratio, (v) => v >= 0.5, pct));
  for (const b of batches) out.push(target(`SignBatch of ${b.items} >= 80% of raw`, b.ratio, (v) => v >= 0.8, pct));
  for (const p of priority) {
    out.push(target(`hot p99 while batches sign <= 2x idle, c=${p.concurrency}`, p.ratio, (v) => v <= 2, (v) => `${v.toFixed(2)}x`));
  }
  return out;
}
