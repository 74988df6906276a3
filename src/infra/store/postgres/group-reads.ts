/**
 * The views of a whole group of reservations in one set of statements: each read statement of
 * viewQueries (reservation.ts) already works on arrays, so the group's items, claims and velocity
 * queries go into one of each, and the answers are dealt back to the reservation they belong to
 * in the shape its own statements would have returned (its view function then decodes them as
 * usual). A hot signer's group of 64 reservations thus reads in about 7 statements, not 64 x 7:
 * PostgreSQL's CPU per statement (parse-free, but bind, plan, execute, snapshot, reply) is what a
 * reservation mostly cost it.
 */
import type { QueryConfig, QueryResult } from 'pg';
import type { ReserveView } from '../../../core/replay/records.js';
import { velocityBucket } from '../../../core/replay/velocity.js';
import type { ReserveOp } from './reserve-op.js';
import { q } from './sql.js';

type Row = Record<string, unknown>;
/** Where a row of a shared statement goes: the reservation, and its own index (1-based). */
type Slot = { op: number; i: number };

export function groupReads(ops: ReserveOp[]): { queries: QueryConfig[]; views(results: QueryResult[]): ReserveView[] } {
  const items = ops.flatMap((op, o) => op.req.items.map((it, i) => ({ it, slot: { op: o, i: i + 1 } })));
  const claims = ops.flatMap((op, o) =>
    op.req.items.filter((it) => it.nonce).map((it, i) => ({ n: it.nonce!, slot: { op: o, i: i + 1 } })),
  );
  const velocity = ops.flatMap((op, o) =>
    op.req.velocity.map((v, i) => ({
      v,
      since: velocityBucket(op.now - v.windowSeconds * 1000),
      slot: { op: o, i: i + 1 },
    })),
  );
  const tokens = ops.flatMap((op, o) =>
    op.req.velocity.flatMap((v, qi) =>
      (v.tokens ?? []).map((token) => ({ v, token, since: velocityBucket(op.now - v.windowSeconds * 1000), o, qi })),
    ),
  );
  const batches = ops.flatMap((op, o) => (op.req.batch ? [{ b: op.req.batch, o }] : []));
  const keys = new Map<string, { keyId: string; version: number }>();
  for (const op of ops)
    if (op.req.check) keys.set(JSON.stringify([op.req.check.keyId, op.req.check.version]), op.req.check);
  const epoch = ops.some((op) => op.req.check?.policies);

  const queries: QueryConfig[] = [q('requests', [items.map((x) => x.it.client), items.map((x) => x.it.requestId)])];
  if (claims.length > 0) {
    const accounts = claims.map((x) => x.n.account);
    const chains = claims.map((x) => x.n.chainId.toString());
    queries.push(
      q('nonces', [accounts, chains, claims.map((x) => x.n.nonce.toString())]),
      q('maxNonces', [accounts, chains]),
    );
  }
  if (velocity.length > 0) {
    queries.push(
      q('velocity', [velocity.map((x) => x.v.scope), velocity.map((x) => x.v.subject), velocity.map((x) => x.since)]),
    );
  }
  if (tokens.length > 0) {
    queries.push(
      q('tokenVelocity', [
        tokens.map((_, i) => i),
        tokens.map((x) => x.v.scope),
        tokens.map((x) => x.v.subject),
        tokens.map((x) => x.token),
        tokens.map((x) => x.since),
      ]),
    );
  }
  for (const { b } of batches) queries.push(q('batch', [b.client, b.batchId]));
  for (const k of keys.values()) queries.push(q('keyState', [k.keyId, k.version]));
  if (epoch) queries.push(q('policyEpoch', []));

  const views = (results: QueryResult[]): ReserveView[] => {
    let next = 0;
    const take = () => results[next++]!.rows as Row[];
    // Per reservation, the results its own statements (viewQueries) would have returned, in order.
    const own: Row[][][] = ops.map(() => []);
    /** A shared statement's rows dealt to their reservations, `field` renumbered as theirs. */
    const deal = (rows: Row[], slotOf: (r: Row) => Slot, field: string, asked: (o: number) => boolean) => {
      const per = ops.map((): Row[] => []);
      for (const r of rows) {
        const s = slotOf(r);
        per[s.op]!.push({ ...r, [field]: s.i });
      }
      per.forEach((rows, o) => {
        if (asked(o)) own[o]!.push(rows);
      });
    };
    const ordinal =
      <T extends { slot: Slot }>(list: T[]) =>
      (r: Row) =>
        list[Number(r.i) - 1]!.slot;
    deal(take(), ordinal(items), 'i', () => true);
    if (claims.length > 0) {
      // Only reservations with claims read them: viewQueries sends neither statement otherwise.
      const claimed = (o: number) => ops[o]!.req.items.some((it) => it.nonce);
      const [nonceRows, maxRows] = [take(), take()];
      const per = (rows: Row[]) => {
        const out = ops.map((): Row[] => []);
        for (const r of rows) {
          const s = ordinal(claims)(r);
          out[s.op]!.push({ ...r, i: s.i });
        }
        return out;
      };
      const [n, m] = [per(nonceRows), per(maxRows)];
      ops.forEach((_, o) => {
        if (claimed(o)) own[o]!.push(n[o]!, m[o]!);
      });
    }
    if (velocity.length > 0) deal(take(), ordinal(velocity), 'i', (o) => ops[o]!.req.velocity.length > 0);
    if (tokens.length > 0) {
      const slotOf = (r: Row) => ({ op: tokens[Number(r.qi)]!.o, i: tokens[Number(r.qi)]!.qi });
      deal(take(), slotOf, 'qi', (o) => ops[o]!.req.velocity.some((v) => v.tokens?.length));
    }
    for (const { o } of batches) own[o]!.push(take());
    const keyRows = new Map([...keys.keys()].map((k) => [k, take()]));
    const epochRows = epoch ? take() : [];
    ops.forEach((op, o) => {
      const c = op.req.check;
      if (!c) return;
      own[o]!.push(keyRows.get(JSON.stringify([c.keyId, c.version]))!);
      if (c.policies) own[o]!.push(epochRows);
    });
    return ops.map((op, o) => op.reads.view(own[o]!.map((rows) => ({ rows }) as QueryResult)));
  };
  return { queries, views };
}
