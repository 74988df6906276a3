import { type Reason, SignerError } from '../errors.js';
import { type Decision, evaluate, evaluateBatch, type SignIntent } from '../policy/evaluate.js';
import type { CompiledPolicy } from '../policy/schema.js';
import type { ItemView, ReserveItem, ReservePlan, ReserveView, VelocityQuery } from './records.js';

/**
 * The replay guard: one pure decision over what the store holds for a request (its own record,
 * the holder of its account nonce, velocity usage, the batch record) and the policy. The store
 * runs it inside the reservation transaction, so the decision and its writes are atomic.
 *
 * Rules, in order:
 * 1. Same client + request id: same payload replays the stored result (or waits while another
 *    signer holds it, or takes over when that signer's lease expired); another payload is
 *    refused (REQUEST_ID_REUSED).
 * 2. Same (key, chain, nonce): the same payload replays its stored signature; another payload
 *    is refused (NONCE_ALREADY_SIGNED) unless the policy allows a fee bump that keeps
 *    recipient, value and data and raises the fee.
 * 3. Policy (limits, allow-lists, velocity) on what is new; then the reservation is written.
 */

export type ItemOutcome = { kind: 'sign' } | { kind: 'replay'; result: Uint8Array };
export type GuardOutcome = { ok: true; items: ItemOutcome[] } | { ok: false; error: SignerError };

/** How long a client should wait before retrying a request that another signer holds. */
export const IN_FLIGHT_RETRY_MS = 250;

type Plan = ReservePlan<GuardOutcome>;

const refuse = (
  reason: Reason,
  message: string,
  metadata: Record<string, string> = {},
  retryDelayMs?: number,
): Plan => ({
  outcome: { ok: false, error: new SignerError(reason, message, metadata, retryDelayMs) },
  writes: [],
});

const denied = (d: Exclude<Decision, { allow: true }>): Plan => refuse(d.reason, d.message, d.metadata);

const equal = (a: Uint8Array, b: Uint8Array) => Buffer.compare(Buffer.from(a), Buffer.from(b)) === 0;

/** The velocity windows the policy needs read for this key and client, in rule order. */
export function velocityQueries(p: CompiledPolicy, keyId: string, client: string): VelocityQuery[] {
  return p.velocity.map((v) => ({
    scope: v.scope,
    subject: v.scope === 'key' ? keyId : client,
    windowSeconds: v.windowSeconds,
    ...(v.tokens.size > 0 ? { tokens: [...v.tokens.keys()] } : {}),
  }));
}

/**
 * A lease takeover signs on today's policy, not on the decision the crashed attempt was given:
 * the rules are evaluated again. Velocity was counted when the request was first reserved, so
 * the item is checked as if nothing else were in its windows (it is already part of them).
 */
function reevaluate(p: CompiledPolicy, intent: SignIntent, velocity: readonly unknown[]): Decision {
  return evaluate(
    p,
    intent,
    velocity.map(() => ({ count: 0, value: 0n, tokens: new Map() })),
  );
}

/** Decides one hot or single request. */
export function decideSign(p: CompiledPolicy, item: ReserveItem, intent: SignIntent, view: ReserveView): Plan {
  const v = view.items[0]!;
  if (v.request) {
    if (!equal(v.request.payloadHash, item.payloadHash)) {
      return refuse('REQUEST_ID_REUSED', `request_id "${item.requestId}" was already used for another payload`, {
        requestId: item.requestId,
      });
    }
    if (v.request.state === 'done')
      return { outcome: { ok: true, items: [{ kind: 'replay', result: v.request.result! }] }, writes: [] };
    if (!v.request.leaseExpired) {
      return refuse(
        'REQUEST_IN_FLIGHT',
        `request_id "${item.requestId}" is being signed; retry shortly`,
        {},
        IN_FLIGHT_RETRY_MS,
      );
    }
    if (lostNonce(item, v.nonce)) return nonceTaken(item);
    const again = reevaluate(p, intent, view.velocity);
    if (!again.allow) return denied(again);
    return { outcome: { ok: true, items: [{ kind: 'sign' }] }, writes: [{ index: 0, action: 'resume' }] };
  }
  let action: 'insert' | 'replaceNonce' = 'insert';
  if (v.nonce && item.nonce) {
    const held = v.nonce;
    const where = { chainId: item.nonce.chainId.toString(), nonce: item.nonce.nonce.toString() };
    const inFlight = held.state === 'pending' && !held.leaseExpired;
    if (equal(held.payloadHash, item.payloadHash)) {
      if (held.state === 'done')
        return { outcome: { ok: true, items: [{ kind: 'replay', result: held.result! }] }, writes: [] };
      if (inFlight)
        return refuse(
          'NONCE_IN_FLIGHT',
          `nonce ${where.nonce} on chain ${where.chainId} is being signed; retry shortly`,
          where,
          IN_FLIGHT_RETRY_MS,
        );
    } else {
      const bump =
        p.evm?.allowFeeBump === true &&
        equal(held.intentHash, item.nonce.intentHash) &&
        item.nonce.maxFeePerGas > held.maxFeePerGas &&
        item.nonce.maxPriorityFeePerGas >= held.maxPriorityFeePerGas;
      if (!bump) {
        return refuse(
          'NONCE_ALREADY_SIGNED',
          `nonce ${where.nonce} on chain ${where.chainId} was already signed for another payload` +
            (p.evm?.allowFeeBump ? ' (a replacement must keep recipient, value and data and raise the fee)' : ''),
          where,
        );
      }
      if (inFlight)
        return refuse(
          'NONCE_IN_FLIGHT',
          `nonce ${where.nonce} on chain ${where.chainId} is being signed; retry shortly`,
          where,
          IN_FLIGHT_RETRY_MS,
        );
    }
    action = 'replaceNonce';
  }
  const d = evaluate(p, intent, view.velocity);
  if (!d.allow) return denied(d);
  return { outcome: { ok: true, items: [{ kind: 'sign' }] }, writes: [{ index: 0, action }] };
}

/**
 * Decides a batch all-or-nothing: either every new item is reserved (and previously signed
 * identical items replay), or nothing is written and the batch is refused.
 */
export function decideBatch(
  p: CompiledPolicy,
  items: ReserveItem[],
  intents: SignIntent[],
  view: ReserveView,
  batch: { batchId: string; itemsHash: Uint8Array },
): Plan {
  if (view.batch) return retriedBatch(p, items, intents, view, batch);
  const seen = new Map<string, number>();
  const outcomes: ItemOutcome[] = [];
  const fresh: number[] = [];
  for (const [i, it] of items.entries()) {
    const v = view.items[i]!;
    if (v.request) {
      return refuse('REQUEST_ID_REUSED', `request id "${it.requestId}" of item ${i} already exists`, {
        index: String(i),
      });
    }
    if (it.nonce) {
      const slot = `${it.nonce.chainId}:${it.nonce.nonce}`;
      if (seen.has(slot)) {
        return refuse(
          'BATCH_NONCES_NOT_UNIQUE',
          `items ${seen.get(slot)} and ${i} use nonce ${it.nonce.nonce} on chain ${it.nonce.chainId}`,
          {
            index: String(i),
          },
        );
      }
      seen.set(slot, i);
      if (v.nonce) {
        if (v.nonce.state === 'done' && equal(v.nonce.payloadHash, it.payloadHash)) {
          outcomes.push({ kind: 'replay', result: v.nonce.result! });
          continue;
        }
        return refuse(
          'NONCE_ALREADY_SIGNED',
          `item ${i}: nonce ${it.nonce.nonce} on chain ${it.nonce.chainId} is already taken`,
          {
            index: String(i),
            chainId: it.nonce.chainId.toString(),
            nonce: it.nonce.nonce.toString(),
          },
        );
      }
    }
    outcomes.push({ kind: 'sign' });
    fresh.push(i);
  }
  if (p.batch?.contiguousNonces) {
    const gap = nonceGap(items, view, fresh);
    if (gap) return gap;
  }
  const d = evaluateBatch(
    p,
    fresh.map((i) => intents[i]!),
    view.velocity,
  );
  if (!d.allow) {
    const at = d.metadata.index === undefined ? undefined : fresh[Number(d.metadata.index)];
    return refuse(d.reason, d.message, { ...d.metadata, ...(at === undefined ? {} : { index: String(at) }) });
  }
  return {
    outcome: { ok: true, items: outcomes },
    writes: fresh.map((index) => ({ index, action: 'insert' as const })),
    batch: { itemsHash: batch.itemsHash },
  };
}

function retriedBatch(
  p: CompiledPolicy,
  items: ReserveItem[],
  intents: SignIntent[],
  view: ReserveView,
  batch: { batchId: string; itemsHash: Uint8Array },
): Plan {
  if (!equal(view.batch!.itemsHash, batch.itemsHash)) {
    return refuse('BATCH_ID_REUSED', `batch_id "${batch.batchId}" was already used for other items`, {
      batchId: batch.batchId,
    });
  }
  const outcomes: ItemOutcome[] = [];
  const writes: Plan['writes'] = [];
  for (const [i] of items.entries()) {
    const r = view.items[i]!.request;
    if (r?.state === 'done') outcomes.push({ kind: 'replay', result: r.result! });
    else if (r?.leaseExpired) {
      if (lostNonce(items[i]!, view.items[i]!.nonce)) return nonceTaken(items[i]!, i);
      const again = reevaluate(p, intents[i]!, view.velocity);
      if (!again.allow) {
        return refuse(again.reason, `batch item ${i}: ${again.message}`, { ...again.metadata, index: String(i) });
      }
      outcomes.push({ kind: 'sign' });
      writes.push({ index: i, action: 'resume' });
    } else if (r) {
      return refuse(
        'BATCH_IN_FLIGHT',
        `batch "${batch.batchId}" is being signed; retry shortly`,
        { batchId: batch.batchId },
        IN_FLIGHT_RETRY_MS,
      );
    } else {
      // The item's nonce was already signed identically when the batch was first reserved.
      const n = view.items[i]!.nonce;
      if (n?.state !== 'done' || !equal(n.payloadHash, items[i]!.payloadHash)) {
        return refuse('BATCH_EXPIRED', `batch "${batch.batchId}" is older than the replay records; send a new batch`);
      }
      outcomes.push({ kind: 'replay', result: n.result! });
    }
  }
  return { outcome: { ok: true, items: outcomes }, writes };
}

/**
 * A pending request whose lease expired may have lost its nonce to a fee bump meanwhile;
 * resuming it then would sign a second payload for that nonce.
 */
function lostNonce(item: ReserveItem, holder: ItemView['nonce']): boolean {
  return item.nonce !== undefined && (holder?.client !== item.client || holder.requestId !== item.requestId);
}

function nonceTaken(item: ReserveItem, index?: number): Plan {
  const n = item.nonce!;
  return refuse('NONCE_ALREADY_SIGNED', `nonce ${n.nonce} on chain ${n.chainId} was taken over by another payload`, {
    chainId: n.chainId.toString(),
    nonce: n.nonce.toString(),
    ...(index === undefined ? {} : { index: String(index) }),
  });
}

/** Nonces of the new items must run on, per chain, from the account's next expected nonce. */
function nonceGap(items: ReserveItem[], view: ReserveView, fresh: number[]): Plan | undefined {
  const byChain = new Map<bigint, Array<{ nonce: bigint; index: number }>>();
  for (const i of fresh) {
    const n = items[i]!.nonce;
    if (!n) continue;
    byChain.set(n.chainId, [...(byChain.get(n.chainId) ?? []), { nonce: n.nonce, index: i }]);
  }
  for (const [chainId, list] of byChain) {
    list.sort((a, b) => (a.nonce < b.nonce ? -1 : 1));
    let expected = view.items[list[0]!.index]!.nextNonce ?? list[0]!.nonce;
    for (const { nonce, index } of list) {
      if (nonce !== expected) {
        return refuse('NONCE_GAP', `chain ${chainId}: expected nonce ${expected}, item ${index} has ${nonce}`, {
          index: String(index),
          chainId: chainId.toString(),
          expected: expected.toString(),
        });
      }
      expected++;
    }
  }
  return undefined;
}
