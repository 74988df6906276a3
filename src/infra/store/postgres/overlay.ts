/**
 * What the reservations decided earlier in a group transaction wrote, laid over the view a later
 * one read. A group (reserve-group.ts) reads the views of all its reservations in one round trip,
 * under all their locks, from one state of the database: none of them sees what the ones before it
 * in the group will write. Each view is therefore brought up to date here, in group order, with
 * exactly the effects writeQueries (reservation.ts) gives the plans before it: request records
 * inserted or renewed, nonce claims inserted or taken over, the account's next nonce, velocity and
 * token velocity added in the bucket of the writer's `now`, the batch record. The result is the
 * view each reservation would have read had the group run them one round trip after the other;
 * the primary keys still refuse a claim this got wrong (the group then runs again).
 */
import type {
  ItemView,
  NonceRecord,
  RecordState,
  ReservePlan,
  ReserveRequest,
  ReserveView,
} from '../../../core/replay/records.js';
import { velocityBucket } from '../../../core/replay/velocity.js';

type Held<R> = Omit<R, 'leaseExpired'> & { leaseUntil: number };
type RequestHeld = Held<{ payloadHash: Uint8Array; state: RecordState; result?: Uint8Array }>;

/** One write to a velocity bucket: the same rows addVelocity / addTokenVelocity upsert. */
interface Usage {
  scope: string;
  subject: string;
  bucket: number;
  value: bigint;
  token?: string;
}

const k = (...parts: Array<string | bigint>) => JSON.stringify(parts.map(String));

export class GroupOverlay {
  private readonly requests = new Map<string, RequestHeld>();
  private readonly nonces = new Map<string, Held<NonceRecord>>();
  /** Pending nonce claims whose lease a resume renewed, by holder (client, request id). */
  private readonly renewed = new Map<string, number>();
  private readonly next = new Map<string, bigint>();
  private readonly usage: Usage[] = [];
  private readonly batches = new Map<string, Uint8Array>();

  /** True until a plan wrote something: the views then need no change. */
  get empty(): boolean {
    return this.requests.size === 0 && this.renewed.size === 0 && this.batches.size === 0;
  }

  /** `view` (read before the group's writes) as `req` sees it after the writes recorded so far. */
  apply(req: ReserveRequest, view: ReserveView): ReserveView {
    if (this.empty) return view;
    const now = req.now.getTime();
    const items = req.items.map((it, i): ItemView => {
      const base = view.items[i] ?? {};
      const out: ItemView = { ...base };
      const r = this.requests.get(k(it.client, it.requestId));
      if (r) {
        const { leaseUntil, ...rec } = r;
        out.request = { ...rec, leaseExpired: rec.state === 'pending' && leaseUntil <= now };
      } else if (base.request?.state === 'pending') {
        const lease = this.renewed.get(k(it.client, it.requestId));
        if (lease !== undefined) out.request = { ...base.request, leaseExpired: lease <= now };
      }
      if (it.nonce) {
        const n = it.nonce;
        const held = this.nonces.get(k(n.account, n.chainId, n.nonce));
        if (held) {
          const { leaseUntil, ...rec } = held;
          out.nonce = { ...rec, leaseExpired: rec.state === 'pending' && leaseUntil <= now };
        } else if (base.nonce?.state === 'pending') {
          const lease = this.renewed.get(k(base.nonce.client, base.nonce.requestId));
          if (lease !== undefined) out.nonce = { ...base.nonce, leaseExpired: lease <= now };
        }
        const next = this.next.get(k(n.account, n.chainId));
        if (next !== undefined && (out.nextNonce === undefined || next > out.nextNonce)) out.nextNonce = next;
      }
      return out;
    });
    const velocity = req.velocity.map((q, i) => {
      const since = velocityBucket(now - q.windowSeconds * 1000);
      const base = view.velocity[i] ?? { count: 0, value: 0n };
      let { count, value } = base;
      const tokens = base.tokens ? new Map(base.tokens) : undefined;
      for (const u of this.usage) {
        if (u.scope !== q.scope || u.subject !== q.subject || u.bucket < since) continue;
        if (u.token === undefined) {
          count += 1;
          value += u.value;
        } else if (tokens?.has(u.token)) {
          const t = tokens.get(u.token)!;
          tokens.set(u.token, { count: t.count + 1, amount: t.amount + u.value });
        }
      }
      return tokens ? { count, value, tokens } : { count, value };
    });
    const out: ReserveView = { ...view, items, velocity };
    const batch = req.batch && this.batches.get(k(req.batch.client, req.batch.batchId));
    if (batch) out.batch = { itemsHash: batch };
    return out;
  }

  /** Records what writeQueries(req, plan) writes, for the reservations after this one. */
  record<T>(req: ReserveRequest, plan: ReservePlan<T>): void {
    const now = req.now.getTime();
    const lease = now + req.leaseMs;
    const bucket = velocityBucket(now);
    for (const w of plan.writes) {
      const it = req.items[w.index];
      if (!it) continue; // writeQueries refuses such a plan before anything is sent
      const rk = k(it.client, it.requestId);
      if (w.action === 'resume') {
        // renewRequests / renewNonces: the pending records of (client, request id), read or written.
        const r = this.requests.get(rk);
        if (r?.state === 'pending') r.leaseUntil = lease;
        this.renewed.set(rk, lease);
        for (const n of this.nonces.values())
          if (n.client === it.client && n.requestId === it.requestId && n.state === 'pending') n.leaseUntil = lease;
        continue;
      }
      this.requests.set(rk, { payloadHash: it.payloadHash, state: 'pending', leaseUntil: lease });
      if (it.nonce) {
        const n = it.nonce;
        this.nonces.set(k(n.account, n.chainId, n.nonce), {
          payloadHash: it.payloadHash,
          intentHash: n.intentHash,
          maxFeePerGas: n.maxFeePerGas,
          maxPriorityFeePerGas: n.maxPriorityFeePerGas,
          state: 'pending',
          client: it.client,
          requestId: it.requestId,
          leaseUntil: lease,
        });
        const ak = k(n.account, n.chainId);
        const prev = this.next.get(ak);
        if (prev === undefined || n.nonce + 1n > prev) this.next.set(ak, n.nonce + 1n);
      }
      for (const [scope, subject] of [
        ['key', it.keyId],
        ['client', it.client],
      ] as const) {
        this.usage.push({ scope, subject, bucket, value: it.value });
        if (it.token) this.usage.push({ scope, subject, bucket, value: it.token.amount, token: it.token.contract });
      }
    }
    if (plan.batch && req.batch) this.batches.set(k(req.batch.client, req.batch.batchId), plan.batch.itemsHash);
  }
}
