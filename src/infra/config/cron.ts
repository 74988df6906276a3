import cron from 'node-cron';
import { lastFireAtOrBefore } from '../../core/rotation/due.js';

// Lives beside the config schema, not in the pure due rule: node-cron (the scheduler that runs
// the expression) must accept it as well as cron-parser (which computes its fire times).
/** Why node-cron (which runs it) or cron-parser (which computes its fire times) rejects an expression; undefined when both accept it. */
export function cronProblem(expr: string): string | undefined {
  if (!cron.validate(expr)) return `invalid cron expression "${expr}"`;
  try {
    lastFireAtOrBefore(expr, new Date());
  } catch (e) {
    return `invalid cron expression "${expr}": ${(e as Error).message}`;
  }
  return undefined;
}
