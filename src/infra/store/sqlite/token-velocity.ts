import type { VelocityQuery } from '../../../core/replay/records.js';
import { velocityBucket } from '../../../core/replay/velocity.js';
import type { Statements } from './statements.js';

/** ERC-20 usage of one token in a velocity query's window (buckets from `since`). */
export function tokenUsage(q: Statements, v: VelocityQuery, token: string, since: number) {
  const rows = q.tokenVelocity.all(v.scope, v.subject, token, since) as Array<{ count: number; amount: string }>;
  return rows.reduce((a, r) => ({ count: a.count + r.count, amount: a.amount + BigInt(r.amount) }), {
    count: 0,
    amount: 0n,
  });
}

/** Counts one ERC-20 call and its amount in the current bucket of (scope, subject, token). */
export function addTokenVelocity(
  q: Statements,
  scope: 'key' | 'client',
  subject: string,
  token: string,
  now: number,
  amount: bigint,
): void {
  const bucket = velocityBucket(now);
  q.countTokenBucket.run(scope, subject, token, bucket);
  // ERC-20 amounts go up to 2^256: summed as decimal text, like native values.
  const cur = q.tokenBucket.get(scope, subject, token, bucket) as { amount: string };
  q.addTokenAmount.run((BigInt(cur.amount) + amount).toString(), scope, subject, token, bucket);
}
