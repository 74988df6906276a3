import { CronExpressionParser } from 'cron-parser';

/**
 * When a rotation schedule is due. Pure: no clock, no store. node-cron runs the jobs; cron-parser
 * only computes fire times (node-cron cannot tell the previous one).
 */
export interface DueInput {
  /** Cron expression, 5 fields or 6 with seconds first. */
  cron: string;
  minAgeSeconds: number;
  /** IANA zone the expression is read in; UTC when absent. */
  timezone?: string | undefined;
  /** When the key's active version was created. */
  activeCreatedAt: Date;
  now: Date;
}

/** The last time the schedule fires at or before `at`; null when it never has. */
export function lastFireAtOrBefore(expr: string, at: Date, timezone?: string): Date | null {
  // prev() is strictly before its start, so start 1 ms later to include a fire exactly at `at`.
  const e = CronExpressionParser.parse(expr, { currentDate: new Date(at.getTime() + 1), tz: timezone ?? 'UTC' });
  if (!e.hasPrev()) return null;
  return e.prev().toDate();
}

/**
 * Rotate now when the schedule has fired since the active version was created (a fire missed
 * while down is caught up once; a fire already served, here or on another replica, made a newer
 * version and is not repeated) and the active version is at least `minAgeSeconds` old.
 */
export function rotationDue(i: DueInput): boolean {
  const fired = lastFireAtOrBefore(i.cron, i.now, i.timezone);
  if (!fired || fired.getTime() <= i.activeCreatedAt.getTime()) return false;
  return i.now.getTime() - i.activeCreatedAt.getTime() >= i.minAgeSeconds * 1000;
}

/** Undefined when `tz` is an IANA time zone this runtime knows. */
export function timezoneProblem(tz: string): string | undefined {
  try {
    new Intl.DateTimeFormat('en', { timeZone: tz });
    return undefined;
  } catch {
    return `unknown time zone "${tz}"`;
  }
}
