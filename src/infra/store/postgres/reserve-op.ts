/** A reservation as the group transactions of reserve-group.ts hold it. */
import type { ReservePlan, ReserveRequest, ReserveView } from '../../../core/replay/records.js';
import type { Settled } from '../batcher.js';
import { lockSubjects, viewQueries } from './reservation.js';

/** A reservation waiting for, or running in, a group transaction. */
export interface ReserveOp {
  req: ReserveRequest;
  decide: (view: ReserveView) => ReservePlan<unknown>;
  now: number;
  locks: string[];
  reads: ReturnType<typeof viewQueries>;
  /** Tries that failed on a resolved race (unique violation, deadlock, serialisation). */
  attempts: number;
  /** Set once final: committed (its outcome) or failed for good. */
  result?: Settled<unknown>;
}

/** A reservation of a group, with its statements prepared up front (checked by the caller). */
export function reserveOp(req: ReserveRequest, decide: (view: ReserveView) => ReservePlan<unknown>): ReserveOp {
  const now = req.now.getTime();
  return { req, decide, now, locks: lockSubjects(req), reads: viewQueries(req, now), attempts: 0 };
}
