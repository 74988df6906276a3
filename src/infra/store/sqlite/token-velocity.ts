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

/** Counts `count` ERC-20 calls and their amount in the current bucket of (scope, subject, token). */
export function addTokenVelocity(
  q: Statements,
  scope: 'key' | 'client',
  subject: string,
  token: string,
  now: number,
  amount: bigint,
  count = 1,
): void {
  const bucket = velocityBucket(now);
  q.countTokenBucket.run(scope, subject, token, bucket, count);
  // ERC-20 amounts go up to 2^256: summed as decimal text, like native values.
  const cur = q.tokenBucket.get(scope, subject, token, bucket) as { amount: string };
  q.addTokenAmount.run((BigInt(cur.amount) + amount).toString(), scope, subject, token, bucket);
}

/** What a reservation's items add to each velocity bucket (native, and per ERC-20 token), summed. */
export class BucketSums {
  private readonly sums = new Map<
    string,
    { scope: 'key' | 'client'; subject: string; token?: string; count: number; amount: bigint }
  >();

  /** One item: its native value, and its token movement when it has one. */
  add(scope: 'key' | 'client', subject: string, value: bigint, token?: { contract: string; amount: bigint }): void {
    this.sum(`v\0${scope}\0${subject}`, { scope, subject }, value);
    if (token)
      this.sum(`t\0${scope}\0${subject}\0${token.contract}`, { scope, subject, token: token.contract }, token.amount);
  }

  buckets() {
    return this.sums.values();
  }

  private sum(k: string, at: { scope: 'key' | 'client'; subject: string; token?: string }, amount: bigint): void {
    const e = this.sums.get(k);
    if (e) {
      e.count++;
      e.amount += amount;
    } else this.sums.set(k, { ...at, count: 1, amount });
  }
}
