/**
 * The writes of a group of reservations. Runs of consecutive plans that only insert (new
 * requests, new nonce claims, velocity: what every fresh hot sign writes) go into one set of
 * statements for the whole run, each row carrying its own reservation's lease, time and attempt,
 * velocity summed per row it updates; any other plan (a resume, a nonce taken over) ends the run
 * and keeps its own statements (reservation.ts writeQueries), in group order. The end state is
 * the one of the plans applied one after the other: a run's rows are new rows that no plan of
 * the run touches twice (a claim inserted twice fails on its primary key either way).
 *
 * A merged statement that fails belongs to no single reservation: the group then runs again with
 * every plan's own statements, which names the one that failed (reserve-group.ts).
 */
import type { QueryConfig } from 'pg';
import type { ReserveItem, ReservePlan } from '../../../core/replay/records.js';
import { velocityBucket } from '../../../core/replay/velocity.js';
import { writeQueries } from './reservation.js';
import type { ReserveOp } from './reserve-op.js';
import { q } from './sql.js';

export const MERGED_SQL = {
  insertRequestRows: `INSERT INTO requests (client, request_id, key_id, payload_hash, state, lease_until, created_at,
      attempt)
    SELECT client, request_id, key_id, payload_hash, 'pending', lease_until, created_at, attempt
    FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[], $5::bigint[], $6::bigint[], $7::text[])
      AS q(client, request_id, key_id, payload_hash, lease_until, created_at, attempt)`,
  insertNonceRows: `INSERT INTO nonces (key_id, chain_id, nonce, payload_hash, intent_hash, max_fee, max_priority_fee,
      client, request_id, state, lease_until)
    SELECT key_id, chain_id, nonce, payload_hash, intent_hash, max_fee, max_priority_fee, client, request_id,
      'pending', lease_until
    FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bytea[], $5::bytea[], $6::numeric[], $7::numeric[],
      $8::text[], $9::text[], $10::bigint[]) AS q(key_id, chain_id, nonce, payload_hash, intent_hash, max_fee,
        max_priority_fee, client, request_id, lease_until)`,
  addVelocityRows: `INSERT INTO velocity (scope, subject, bucket, count, value)
    SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::numeric[])
    ON CONFLICT (scope, subject, bucket)
    DO UPDATE SET count = velocity.count + excluded.count, value = velocity.value + excluded.value`,
  addTokenVelocityRows: `INSERT INTO token_velocity (scope, subject, token, bucket, count, amount)
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint[], $6::numeric[])
    ON CONFLICT (scope, subject, token, bucket)
    DO UPDATE SET count = token_velocity.count + excluded.count, amount = token_velocity.amount + excluded.amount`,
} as const;

const m = (name: keyof typeof MERGED_SQL, values: unknown[]): QueryConfig => ({
  name: `signer_${name}`,
  text: MERGED_SQL[name],
  values,
});

/** A decided reservation and its plan. */
export interface Decided {
  op: ReserveOp;
  plan: ReservePlan<unknown>;
}

/** A statement and the reservation it belongs to (none: a merged one). */
export interface Write {
  query: QueryConfig;
  op?: ReserveOp;
  merged?: true;
}

const onlyInserts = ({ plan }: Decided) => plan.writes.every((w) => w.action === 'insert');

/** The group's writes in group order; with `merge`, runs of insert-only plans share statements. */
export function groupWrites(decided: Decided[], merge: boolean): Write[] {
  const out: Write[] = [];
  let run: Decided[] = [];
  const flush = () => {
    if (run.length === 1) out.push(...own(run[0]!));
    else if (run.length > 1) out.push(...merged(run));
    run = [];
  };
  for (const d of decided) {
    if (merge && onlyInserts(d)) {
      run.push(d);
      continue;
    }
    flush();
    out.push(...own(d));
  }
  flush();
  return out;
}

function own({ op, plan }: Decided): Write[] {
  return writeQueries(op.req, plan, op.now, op.now + op.req.leaseMs).map((query) => ({ query, op }));
}

function merged(run: Decided[]): Write[] {
  const rows = run.flatMap(({ op, plan }) =>
    plan.writes.map((w) => ({ op, it: op.req.items[w.index] as ReserveItem })),
  );
  if (rows.some((r) => !r.it)) return run.flatMap(own); // writeQueries refuses such a plan by name
  const claims = rows.filter((r) => r.it.nonce);
  const usage = new Map<string, { scope: string; subject: string; bucket: number; count: number; value: bigint }>();
  const tokens = new Map<
    string,
    { scope: string; subject: string; token: string; bucket: number; count: number; amount: bigint }
  >();
  for (const { op, it } of rows) {
    const bucket = velocityBucket(op.now);
    for (const [scope, subject] of [
      ['key', it.keyId],
      ['client', it.client],
    ] as const) {
      const k = JSON.stringify([scope, subject, bucket]);
      const u = usage.get(k) ?? { scope, subject, bucket, count: 0, value: 0n };
      u.count += 1;
      u.value += it.value;
      usage.set(k, u);
      if (!it.token) continue;
      const tk = JSON.stringify([scope, subject, it.token.contract, bucket]);
      const t = tokens.get(tk) ?? { scope, subject, token: it.token.contract, bucket, count: 0, amount: 0n };
      t.count += 1;
      t.amount += it.token.amount;
      tokens.set(tk, t);
    }
  }
  const queries: QueryConfig[] = [];
  if (rows.length > 0) {
    queries.push(
      m('insertRequestRows', [
        rows.map((r) => r.it.client),
        rows.map((r) => r.it.requestId),
        rows.map((r) => r.it.keyId),
        rows.map((r) => Buffer.from(r.it.payloadHash)),
        rows.map((r) => r.op.now + r.op.req.leaseMs),
        rows.map((r) => r.op.now),
        rows.map((r) => r.op.req.attempt ?? null),
      ]),
    );
  }
  if (claims.length > 0) {
    queries.push(
      m('insertNonceRows', [
        claims.map((r) => r.it.nonce!.account),
        claims.map((r) => r.it.nonce!.chainId.toString()),
        claims.map((r) => r.it.nonce!.nonce.toString()),
        claims.map((r) => Buffer.from(r.it.payloadHash)),
        claims.map((r) => Buffer.from(r.it.nonce!.intentHash)),
        claims.map((r) => r.it.nonce!.maxFeePerGas.toString()),
        claims.map((r) => r.it.nonce!.maxPriorityFeePerGas.toString()),
        claims.map((r) => r.it.client),
        claims.map((r) => r.it.requestId),
        claims.map((r) => r.op.now + r.op.req.leaseMs),
      ]),
    );
  }
  if (tokens.size > 0) {
    const t = [...tokens.values()];
    queries.push(
      m('addTokenVelocityRows', [
        t.map((x) => x.scope),
        t.map((x) => x.subject),
        t.map((x) => x.token),
        t.map((x) => x.bucket),
        t.map((x) => x.count),
        t.map((x) => x.amount.toString()),
      ]),
    );
  }
  if (usage.size > 0) {
    const u = [...usage.values()];
    queries.push(
      m('addVelocityRows', [
        u.map((x) => x.scope),
        u.map((x) => x.subject),
        u.map((x) => x.bucket),
        u.map((x) => x.count),
        u.map((x) => x.value.toString()),
      ]),
    );
  }
  const out: Write[] = queries.map((query) => ({ query, merged: true }));
  // Batch records, one per reservation that asked (insertBatch), after its rows as writeQueries has them.
  for (const { op, plan } of run) {
    if (plan.batch && op.req.batch) {
      const b = op.req.batch;
      out.push({ query: q('insertBatch', [b.client, b.batchId, Buffer.from(plan.batch.itemsHash), op.now]), op });
    }
  }
  return out;
}
