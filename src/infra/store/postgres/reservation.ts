/**
 * The statements of one reservation: the advisory locks it needs, the reads that make its view
 * and the writes that apply its plan, each as set statements over arrays.
 */
import type { QueryConfig, QueryResult } from 'pg';
import type { ItemView, ReserveItem, ReservePlan, ReserveRequest, ReserveView } from '../../../core/replay/records.js';
import { velocityBucket } from '../../../core/replay/velocity.js';
import { type NonceRow, nonceRecord, type RequestRow, requestRecord } from '../codecs.js';
import { q } from './sql.js';

/**
 * Advisory-lock subjects (the same strings name the same subject in every replica): whatever
 * part of the view cannot be protected by row locks and primary keys alone.
 *
 * - ["account", account] for an item with a nonce claim: nextNonce (max over the account's
 *   claims) and a nonce not claimed yet are reads of rows that may not exist, so no row lock
 *   covers them.
 * - [scope, subject] for each velocity query: its sum must not change until the decision is
 *   written.
 * - ["batch", client, id] for the batch record.
 *
 * Existing request and nonce rows are row-locked by the reads; a request id or nonce inserted
 * by two reservations at once is refused to the second by the primary key, which then retries
 * and sees the first. Velocity increments are additive and commute, so only readers of a sum
 * lock it. A client's reservations therefore do not all queue behind one lock unless their
 * policy reads the client's velocity; those of one account do when they claim nonces, those of
 * one key when they read the key's velocity.
 */
export function lockSubjects(req: ReserveRequest): string[] {
  const subjects = new Set<string>();
  for (const it of req.items) if (it.nonce) subjects.add(JSON.stringify(['account', it.nonce.account]));
  for (const v of req.velocity) subjects.add(JSON.stringify([v.scope, v.subject]));
  if (req.batch) subjects.add(JSON.stringify(['batch', req.batch.client, req.batch.batchId]));
  return [...subjects];
}

/** The view's statements and how to assemble their answers. */
export function viewQueries(req: ReserveRequest, now: number) {
  const { items } = req;
  const withNonce = items.flatMap((it, i) => (it.nonce ? [{ it, i, n: it.nonce }] : []));
  const queries: QueryConfig[] = [q('requests', [items.map((it) => it.client), items.map((it) => it.requestId)])];
  if (withNonce.length > 0) {
    const keys = withNonce.map((x) => x.n.account);
    const chains = withNonce.map((x) => x.n.chainId.toString());
    queries.push(q('nonces', [keys, chains, withNonce.map((x) => x.n.nonce.toString())]));
    queries.push(q('maxNonces', [keys, chains]));
  }
  if (req.velocity.length > 0) {
    queries.push(
      q('velocity', [
        req.velocity.map((v) => v.scope),
        req.velocity.map((v) => v.subject),
        req.velocity.map((v) => velocityBucket(now - v.windowSeconds * 1000)),
      ]),
    );
  }
  // (query index, token) pairs of the velocity queries that limit tokens.
  const tokenPairs = req.velocity.flatMap((v, qi) => (v.tokens ?? []).map((token) => ({ qi, v, token })));
  if (tokenPairs.length > 0) {
    queries.push(
      q('tokenVelocity', [
        tokenPairs.map((p) => p.qi),
        tokenPairs.map((p) => p.v.scope),
        tokenPairs.map((p) => p.v.subject),
        tokenPairs.map((p) => p.token),
        tokenPairs.map((p) => velocityBucket(now - p.v.windowSeconds * 1000)),
      ]),
    );
  }
  if (req.batch) queries.push(q('batch', [req.batch.client, req.batch.batchId]));
  if (req.check) {
    queries.push(q('keyState', [req.check.keyId, req.check.version]));
    if (req.check.policies) queries.push(q('policyEpoch', []));
  }

  const view = (results: QueryResult[]): ReserveView => {
    let next = 0;
    const take = () => results[next++]!.rows;
    const itemViews: ItemView[] = items.map(() => ({}));
    for (const r of take() as Array<RequestRow & { i: string }>) {
      itemViews[Number(r.i) - 1]!.request = requestRecord(r, now);
    }
    if (withNonce.length > 0) {
      const nonceRows = take() as Array<NonceRow & { i: string }>;
      const maxRows = take() as Array<{ i: string; n: string | null }>;
      // Fields in the order sqlite.ts sets them (request, nonce, nextNonce).
      for (const r of nonceRows) itemViews[withNonce[Number(r.i) - 1]!.i]!.nonce = nonceRecord(r, now);
      for (const r of maxRows) if (r.n !== null) itemViews[withNonce[Number(r.i) - 1]!.i]!.nextNonce = BigInt(r.n) + 1n;
    }
    const velocity: ReserveView['velocity'] = req.velocity.map(() => ({ count: 0, value: 0n }));
    if (req.velocity.length > 0) {
      for (const r of take() as Array<{ i: string; count: string; value: string }>) {
        velocity[Number(r.i) - 1] = { count: Number(r.count), value: BigInt(r.value) };
      }
    }
    if (tokenPairs.length > 0) {
      const maps = req.velocity.map(() => new Map<string, { count: number; amount: bigint }>());
      for (const r of take() as Array<{ qi: number; token: string; count: string; amount: string }>) {
        maps[r.qi]!.set(r.token, { count: Number(r.count), amount: BigInt(r.amount) });
      }
      req.velocity.forEach((v, i) => {
        if (v.tokens?.length) velocity[i]!.tokens = maps[i]!;
      });
    }
    const out: ReserveView = { items: itemViews, velocity };
    if (req.batch) {
      const b = take()[0] as { items_hash: Buffer } | undefined;
      if (b) out.batch = { itemsHash: b.items_hash };
    }
    if (req.check) {
      out.keyState = (take()[0] as { state: string } | undefined)?.state ?? null;
      if (req.check.policies) out.policyEpoch = Number((take()[0] as { n: number }).n);
    }
    return out;
  };
  return { queries, view };
}

/**
 * The plan's writes as set statements. sqlite.ts applies them item by item; here consecutive
 * writes are grouped into segments that never touch the same nonce twice (for a sane plan:
 * one segment), and each segment runs as renew, insert requests, archive + replace nonces,
 * insert nonces, velocity. Within a segment that order gives the same end state as item by
 * item (a renewal that a replacement then overwrites ends the same either way).
 */
export function writeQueries<T>(req: ReserveRequest, plan: ReservePlan<T>, now: number, lease: number): QueryConfig[] {
  const segments: Array<Array<{ it: ReserveItem; action: 'insert' | 'replaceNonce' | 'resume' }>> = [[]];
  let claimed = new Set<string>();
  for (const w of plan.writes) {
    const it = req.items[w.index];
    if (!it) throw new RangeError(`reserve plan writes item ${w.index}, but the request has ${req.items.length} items`);
    if (w.action !== 'resume' && it.nonce) {
      const key = JSON.stringify([it.nonce.account, it.nonce.chainId.toString(), it.nonce.nonce.toString()]);
      if (claimed.has(key)) {
        segments.push([]);
        claimed = new Set();
      }
      claimed.add(key);
    }
    segments.at(-1)!.push({ it, action: w.action });
  }

  const queries: QueryConfig[] = [];
  for (const seg of segments) {
    const resume = seg.filter((w) => w.action === 'resume').map((w) => w.it);
    const fresh = seg.filter((w) => w.action !== 'resume');
    const claims = (action: 'insert' | 'replaceNonce') =>
      fresh.filter((w) => w.action === action && w.it.nonce).map((w) => ({ it: w.it, n: w.it.nonce! }));
    const claimValues = (cs: ReturnType<typeof claims>) => [
      cs.map((c) => c.n.account),
      cs.map((c) => c.n.chainId.toString()),
      cs.map((c) => c.n.nonce.toString()),
      cs.map((c) => Buffer.from(c.it.payloadHash)),
      cs.map((c) => Buffer.from(c.n.intentHash)),
      cs.map((c) => c.n.maxFeePerGas.toString()),
      cs.map((c) => c.n.maxPriorityFeePerGas.toString()),
      cs.map((c) => c.it.client),
      cs.map((c) => c.it.requestId),
      lease,
    ];

    if (resume.length > 0) {
      const v = [resume.map((it) => it.client), resume.map((it) => it.requestId), lease];
      // A takeover: the records now belong to this attempt.
      queries.push(q('renewRequests', [...v, req.attempt ?? null]), q('renewNonces', v));
    }
    if (fresh.length === 0) continue;
    const its = fresh.map((w) => w.it);
    queries.push(
      q('insertRequests', [
        its.map((it) => it.client),
        its.map((it) => it.requestId),
        its.map((it) => it.keyId),
        its.map((it) => Buffer.from(it.payloadHash)),
        lease,
        now,
        req.attempt ?? null,
      ]),
    );
    const replaced = claims('replaceNonce');
    if (replaced.length > 0) {
      const v = claimValues(replaced);
      queries.push(q('archiveNonces', [v[0], v[1], v[2], now]), q('replaceNonces', v));
    }
    const inserted = claims('insert');
    if (inserted.length > 0) queries.push(q('insertNonces', claimValues(inserted)));
    // One row per (scope, subject) and statement: ON CONFLICT cannot update a row twice.
    const usage = new Map<string, { scope: string; subject: string; count: number; value: bigint }>();
    const add = (scope: string, subject: string, value: bigint) => {
      const k = JSON.stringify([scope, subject]);
      const u = usage.get(k) ?? { scope, subject, count: 0, value: 0n };
      u.count += 1;
      u.value += value;
      usage.set(k, u);
    };
    for (const it of its) {
      add('key', it.keyId, it.value);
      add('client', it.client, it.value);
    }
    const tokenUsage = new Map<
      string,
      { scope: string; subject: string; token: string; count: number; amount: bigint }
    >();
    for (const it of its) {
      if (!it.token) continue;
      for (const [scope, subject] of [
        ['key', it.keyId],
        ['client', it.client],
      ] as const) {
        const k = JSON.stringify([scope, subject, it.token.contract]);
        const u = tokenUsage.get(k) ?? { scope, subject, token: it.token.contract, count: 0, amount: 0n };
        u.count += 1;
        u.amount += it.token.amount;
        tokenUsage.set(k, u);
      }
    }
    if (tokenUsage.size > 0) {
      const t = [...tokenUsage.values()];
      queries.push(
        q('addTokenVelocity', [
          t.map((x) => x.scope),
          t.map((x) => x.subject),
          t.map((x) => x.token),
          t.map((x) => x.count),
          t.map((x) => x.amount.toString()),
          velocityBucket(now),
        ]),
      );
    }
    const u = [...usage.values()];
    queries.push(
      q('addVelocity', [
        u.map((x) => x.scope),
        u.map((x) => x.subject),
        u.map((x) => x.count),
        u.map((x) => x.value.toString()),
        velocityBucket(now),
      ]),
    );
  }
  if (plan.batch && req.batch) {
    queries.push(q('insertBatch', [req.batch.client, req.batch.batchId, Buffer.from(plan.batch.itemsHash), now]));
  }
  return queries;
}
