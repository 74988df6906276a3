import { createHash, randomUUID } from 'node:crypto';
import type { AuditRequest } from '../../core/audit/chain.js';
import type { AuditDraft } from '../../core/audit/draft.js';
import { faultDraft, refusalDraft } from '../../core/audit/draft.js';
import { type Reason, SignerError } from '../../core/errors.js';
import { checkFreshness, nativeValue, type SignIntent } from '../../core/policy/evaluate.js';
import type { CompiledPolicy } from '../../core/policy/schema.js';
import {
  decideBatch,
  decideSign,
  type GuardOutcome,
  IN_FLIGHT_RETRY_MS,
  type ItemOutcome,
  velocityQueries,
} from '../../core/replay/guard.js';
import type { ReplayStore, ReserveItem, ReservePlan } from '../../core/replay/records.js';
import type { Lane } from '../../infra/hsm/pool.js';
import type { Logger } from '../../infra/log.js';
import type { AuditStore } from '../../infra/store/audit.js';
import { type DraftBase, signDraft } from '../audit/drafts.js';
import type { PolicyRegistry } from '../policy/registry.js';
import type { ClientSigned } from '../threshold/threshold-signer.js';
import { SliceCommitter } from './complete-slices.js';
import { reserveItem, signIntent } from './items.js';
import { checkInTransaction, type Expected, expectedCheck, STALE, type Stale } from './recheck.js';
import { signResultToWire } from './response.js';
import { decodeResult, encodeResult } from './result-codec.js';
import type { Payload, Prepared, SigningService } from './service.js';
import { sweepDecision } from './sweep.js';

export type WireSignResponse = ReturnType<typeof signResultToWire>;
export type BatchResult = { signed: WireSignResponse } | { error: { reason: Reason; message: string } };

export interface SignFlowOptions {
  signing: SigningService;
  store: ReplayStore & AuditStore;
  policies: PolicyRegistry;
  log?: Logger;
  /** Injected so tests can move time; production uses the system clock. */
  clock?: () => Date;
  /** How long a reservation stays owned by the signer that made it. */
  leaseMs?: number;
  /** Reloaded with the policies when a reservation finds a key's state changed meanwhile. */
  keys?: { load(): Promise<void> };
  /** Rollback detection (src/signer/audit/rollback-guard.ts); absent when the mark is off. */
  gate?: ReleaseGate;
}

/** Holds signatures until the rollback mark covers their audit entries. */
export interface ReleaseGate {
  /** Throws STORE_ROLLED_BACK while the store is rolled back: nothing is reserved or signed. */
  assertServing(): void;
  /** Resolves once the mark covers every entry committed before the call. */
  release(): Promise<void>;
}

export interface SignCall {
  client: string;
  keyId: string;
  /** 0: the active version. */
  keyVersion: number;
  requestId: string;
  clientTime: Date;
  payload: Payload;
  /** The gRPC call's deadline (epoch ms), if the client set one. */
  deadline?: number | undefined;
  /** The client's verified request signature, kept with the request's audit entries. */
  request?: AuditRequest | undefined;
  /** The client's certificate (DER): threshold cosigners check a signature by its key themselves. */
  clientCert?: Uint8Array | undefined;
}

export interface BatchCall {
  client: string;
  keyId: string;
  batchId: string;
  clientTime: Date;
  payloads: Payload[];
  /** The gRPC call's deadline (epoch ms), if the client set one. */
  deadline?: number | undefined;
  /** The client's verified request signature, kept with the batch's audit entry. */
  request?: AuditRequest | undefined;
  /** The client's certificate (DER): threshold cosigners check a signature by its key themselves. */
  clientCert?: Uint8Array | undefined;
}

/** Hard cap on batch size, whatever a policy says: bounds one store transaction and one response. */
export const MAX_BATCH_ITEMS = 10_000;

/** A sign request that passed every check made before its reservation. */
export interface CheckedSign {
  prepared: Prepared;
  policy: CompiledPolicy;
  intent: SignIntent;
  item: ReserveItem;
  base: DraftBase;
  now: Date;
  /** The gRPC call's deadline (epoch ms), if the client set one. */
  deadline?: number | undefined;
  /** A sweep the sweep rule refused: audited (with its sweep intent) by the reservation. */
  sweepRefusal?: SignerError;
  /** Key state and policy version, checked again inside the reservation's transaction. */
  expected: Expected;
  call: SignCall;
}

/** A batch that passed every check made before its reservation. */
export interface CheckedBatch {
  call: BatchCall;
  prepared: Prepared[];
  policy: CompiledPolicy;
  intents: SignIntent[];
  items: ReserveItem[];
  batch: { batchId: string; itemsHash: Uint8Array };
  totalValue: bigint;
  now: Date;
  expected: Expected;
}

/**
 * The data flow of the design: decode -> policy -> durable reservation -> HSM -> durable result
 * -> response. No signature leaves before its reservation and its result are committed, and a
 * retry after any crash either replays the stored result or signs the same payload again.
 *
 * Two steps, split where the audit changes hands. `checkSign`/`checkBatch` store nothing and
 * audit nothing: their refusals are the caller's to audit (signer-service.ts). `sign`/`signBatch`
 * audit every outcome themselves, in the store transaction that decides it (the reservation for
 * refusals and replays, complete for signatures, abandon for signing failures); what they throw
 * is already on record, or nothing happened (a store failure: no transaction committed).
 */
export class SignFlow {
  private readonly clock: () => Date;
  private readonly leaseMs: number;

  constructor(private readonly o: SignFlowOptions) {
    this.clock = o.clock ?? (() => new Date());
    this.leaseMs = o.leaseMs ?? 30_000;
  }

  /** Key version, payload, policy and freshness; throws the refusal (not audited here). */
  checkSign(c: SignCall): CheckedSign {
    this.o.gate?.assertServing();
    const prepared = this.o.signing.prepare(c.keyId, c.payload, c.keyVersion);
    const keyPolicy = this.o.policies.forKey(c.keyId);
    // A retired version: only a sweep, reserved under the policy its sweep rule implies.
    const swept = prepared.sweep
      ? sweepDecision(keyPolicy, { ...prepared, sweep: prepared.sweep }, c.client)
      : undefined;
    const policy = swept?.policy ?? keyPolicy;
    const now = this.clock();
    const base: DraftBase = {
      at: now,
      client: c.client,
      keyId: c.keyId,
      keyVersion: prepared.key.version,
      requestId: c.requestId,
      ...(c.request ? { request: c.request } : {}),
    };
    requireFresh(policy, c.clientTime, now);
    const intent = signIntent(c.client, 'hot', prepared);
    return {
      prepared,
      policy,
      intent,
      item: reserveItem(c.client, c.requestId, prepared, intent),
      base,
      now,
      deadline: c.deadline,
      ...(swept?.refusal ? { sweepRefusal: swept.refusal } : {}),
      expected: this.expected(prepared, policy),
      call: c,
    };
  }

  /** Reserves, signs and stores a checked request; every outcome is audited on the way. */
  async sign(s: CheckedSign, retry = { refreshed: false, dropped: false }): Promise<WireSignResponse> {
    const { prepared, policy, intent, item, base, now, deadline, sweepRefusal } = s;
    const attempt = randomUUID();
    const outcome = await this.o.store.reserve<GuardOutcome | Stale>(
      {
        items: [item],
        velocity: velocityQueries(policy, item.keyId, item.client),
        leaseMs: this.leaseMs,
        now,
        attempt,
        check: expectedCheck(s.expected),
      },
      (view): ReservePlan<GuardOutcome | Stale> => {
        const gate = checkInTransaction(view, s.expected, retry.refreshed);
        if (gate === STALE) return { outcome: STALE, writes: [] };
        // The guard decides only when the gate did not; a sweep its rule refused is audited (with
        // its sweep intent) like any refusal.
        const decided =
          gate ??
          (sweepRefusal
            ? { outcome: { ok: false as const, error: sweepRefusal }, writes: [] }
            : decideSign(policy, item, intent, view));
        return audited(decided, (o) => signDraft(base, prepared, o));
      },
    );
    // A key state or a policy changed on another replica: load them and check the request again.
    if (outcome === STALE) return this.sign(await this.recheck(s), { ...retry, refreshed: true });
    // Decided, and audited, in the reservation's transaction.
    if (!outcome.ok) throw outcome.error;
    const [first] = outcome.items as [ItemOutcome];
    if (first.kind === 'replay') {
      // A stored signature may sit in entries the mark does not cover yet (its first release failed).
      await this.o.gate?.release();
      return decodeResult<WireSignResponse>(first.result);
    }
    const signed = forwarded(s.call, 0);
    const [result] = (await this.signAll([{ prepared, item, base, signed }], 'hot', deadline, attempt)) as [Signed];
    // Another attempt took the request over and finished it first: the client gets its signature.
    if ('dropped' in result && !retry.dropped) return this.sign(s, { ...retry, dropped: true });
    if ('error' in result) throw result.cause;
    return result.wire;
  }

  private async reload(): Promise<void> {
    await Promise.all([this.o.policies.refresh(), this.o.keys?.load()]);
  }

  /** The key state and policy epoch a request was checked against. */
  private expected(prepared: Prepared, policy: CompiledPolicy): Expected {
    return {
      keyId: prepared.key.keyId,
      version: prepared.key.version,
      keyState: prepared.key.state,
      policy: policy.name,
      policyEpoch: this.o.policies.epoch(),
    };
  }

  /**
   * Reloads the policies and checks the request again. Its refusals are audited here: sign()'s
   * callers expect what it throws to be on record.
   */
  private async recheck(s: CheckedSign): Promise<CheckedSign> {
    await this.reload();
    try {
      return this.checkSign(s.call);
    } catch (e) {
      if (e instanceof SignerError)
        await this.o.store.appendAudit([signDraft(s.base, s.prepared, { decision: 'refused', reason: e.reason })]);
      throw e;
    }
  }

  /** Batch id and size, every item's payload, policy and freshness; throws the refusal (not audited here). */
  async checkBatch(c: BatchCall): Promise<CheckedBatch> {
    this.o.gate?.assertServing();
    if (!/^[\x21-\x7e]{1,100}$/.test(c.batchId))
      throw new SignerError('REQUEST_INVALID', 'batch_id must be 1..100 printable ASCII characters');
    if (c.payloads.length === 0 || c.payloads.length > MAX_BATCH_ITEMS) {
      throw new SignerError('REQUEST_INVALID', `a batch has 1..${MAX_BATCH_ITEMS} items, got ${c.payloads.length}`);
    }
    const prepared: Prepared[] = [];
    const intents: SignIntent[] = [];
    const items: ReserveItem[] = [];
    const itemsHash = createHash('sha256');
    let totalValue = 0n;
    for (const [i, p] of c.payloads.entries()) {
      // Decoding an EVM item and building its claim costs ~60 to 150 µs: a chunk of 32 holds
      // the event loop a few milliseconds, and hot requests run between chunks.
      if (i > 0 && i % CHECK_CHUNK === 0) await new Promise((r) => setImmediate(r));
      let q: Prepared;
      try {
        q = this.o.signing.prepare(c.keyId, p);
      } catch (e) {
        if (e instanceof SignerError)
          throw new SignerError(e.reason, `item ${i}: ${e.message}`, { ...e.metadata, index: String(i) });
        throw e;
      }
      const intent = signIntent(c.client, 'batch', q);
      const item = reserveItem(c.client, `${c.batchId}#${i}`, q, intent);
      prepared.push(q);
      intents.push(intent);
      items.push(item);
      itemsHash.update(item.payloadHash);
      totalValue += nativeValue(intent);
    }
    const policy = this.o.policies.forKey(c.keyId);
    const now = this.clock();
    requireFresh(policy, c.clientTime, now);
    const batch = { batchId: c.batchId, itemsHash: itemsHash.digest() };
    const expected = this.expected(prepared[0]!, policy);
    return { call: c, prepared, policy, intents, items, batch, totalValue, now, expected };
  }

  /** Reserves all items or none, signs them and stores the results; every outcome is audited on the way. */
  async signBatch(b: CheckedBatch, refreshed = false): Promise<BatchResult[]> {
    const { call: c, prepared, policy, intents, items, batch, totalValue, now } = b;
    const attempt = randomUUID();
    const outcome = await this.o.store.reserve<GuardOutcome | Stale>(
      {
        items,
        velocity: velocityQueries(policy, c.keyId, c.client),
        batch: { client: c.client, batchId: c.batchId },
        leaseMs: this.leaseMs,
        now,
        attempt,
        check: expectedCheck(b.expected),
      },
      (view): ReservePlan<GuardOutcome | Stale> => {
        const gate = checkInTransaction(view, b.expected, refreshed);
        if (gate === STALE) return { outcome: STALE, writes: [] };
        const plan = gate ?? decideBatch(policy, items, intents, view, batch);
        const draft: AuditDraft = {
          kind: 'batch',
          at: now,
          client: c.client,
          keyId: c.keyId,
          keyVersion: prepared[0]!.key.version,
          requestId: c.batchId,
          payloadHash: batch.itemsHash,
          intent: { items: String(items.length), totalValue: totalValue.toString() },
          decision: plan.outcome.ok ? 'allowed' : 'refused',
          reason: plan.outcome.ok ? (plan.writes.length === 0 ? 'REPLAY' : null) : plan.outcome.error.reason,
          signatureHash: null,
          ...(c.request ? { request: c.request } : {}),
        };
        return { ...plan, audit: [draft] };
      },
    );
    if (outcome === STALE) return this.signBatch(await this.recheckBatch(b), true);
    // Decided, and audited, in the reservation's transaction.
    if (!outcome.ok) throw outcome.error;
    const toSign = outcome.items.flatMap((o, i) =>
      o.kind === 'sign'
        ? [
            {
              prepared: prepared[i]!,
              item: items[i]!,
              index: i,
              signed: forwarded(c, i),
              base: {
                at: now,
                client: c.client,
                keyId: c.keyId,
                keyVersion: prepared[i]!.key.version,
                requestId: items[i]!.requestId,
              },
            },
          ]
        : [],
    );
    const signed = await this.signAll(toSign, 'batch', c.deadline, attempt);
    // Replayed items leave too: the mark must cover them even when nothing new was signed.
    if (outcome.items.some((o) => o.kind === 'replay') && !signed.some((r) => !('error' in r)))
      await this.o.gate?.release();
    const results: BatchResult[] = outcome.items.map((o) =>
      o.kind === 'replay' ? { signed: decodeResult<WireSignResponse>(o.result) } : { signed: undefined as never },
    );
    toSign.forEach(({ index }, k) => {
      const r = signed[k]!;
      results[index] = 'error' in r ? { error: r.error } : { signed: r.wire };
    });
    return results;
  }

  /** As recheck, for a batch: its refusal is audited here. */
  private async recheckBatch(b: CheckedBatch): Promise<CheckedBatch> {
    await this.reload();
    try {
      return await this.checkBatch(b.call);
    } catch (e) {
      if (e instanceof SignerError) {
        const c = b.call;
        const base = { at: b.now, client: c.client, keyId: c.keyId, keyVersion: b.prepared[0]!.key.version };
        await this.o.store.appendAudit([refusalDraft('batch', { ...base, requestId: c.batchId }, e.reason)]);
      }
      throw e;
    }
  }

  /** Every slice of results committed; a completion dropped for a lease takeover is logged. */
  private async completed(slices: SliceCommitter): Promise<Set<string>> {
    const dropped = await slices.finish();
    if (dropped.size > 0) {
      // The signature exists and is audited, but the record keeps the result of the attempt
      // that finished first (a lease takeover): this one never leaves.
      this.o.log?.warn({ requests: dropped.size }, 'late completion dropped: another attempt finished the request');
    }
    return dropped;
  }

  /**
   * Signs reserved items in parallel, then commits all their results in one store call before
   * any of them is returned. Items whose signing failed give up their lease for a retry. The
   * cosigner faults met while signing an item are audited with its outcome.
   */
  private async signAll(
    list: Array<{ prepared: Prepared; item: ReserveItem; base: DraftBase; signed?: ClientSigned | undefined }>,
    lane: Lane,
    deadline: number | undefined,
    attempt: string,
  ): Promise<Signed[]> {
    // Each item's result is built as soon as its signature arrives, so a large batch spreads
    // this work between hot requests instead of doing it in one block at the end; its slice of
    // results commits as soon as the slice is signed, while later items are still at the HSM.
    const slices = new SliceCommitter(this.o.store, list.length);
    const out = await Promise.all(
      list.map(({ prepared, item, base, signed: forward }, index) => {
        const faults: AuditDraft[] = [];
        const onFault = (f: Parameters<typeof faultDraft>[1]) => faults.push(faultDraft(this.clock(), f));
        return this.o.signing
          .sign(prepared, lane, {
            client: item.client,
            requestId: item.requestId,
            onFault,
            deadline,
            signed: forward,
          })
          .then(
            (signed): Signed => {
              const wire = signResultToWire(signed, item.requestId);
              const draft = signDraft(base, prepared, { decision: 'allowed', signature: wire.signature });
              const result = encodeResult(wire);
              const drafts = [...faults, draft];
              const done = { client: item.client, requestId: item.requestId, result, attempt };
              slices.settle(index, { done, drafts });
              return { wire, result, item, drafts };
            },
            (reason): Signed => {
              const e =
                reason instanceof SignerError
                  ? reason
                  : new SignerError('INTERNAL', 'internal error; see the signer log');
              if (!(reason instanceof SignerError)) this.o.log?.error({ err: reason }, 'signing failed');
              const draft = signDraft(base, prepared, { decision: 'refused', reason: e.reason });
              slices.settle(index, null);
              return { error: { reason: e.reason, message: e.message }, cause: e, item, drafts: [...faults, draft] };
            },
          );
      }),
    );
    const failed = out.filter((r) => 'error' in r);
    const signedCount = out.length - failed.length;
    const release = failed.map((r) => ({ client: r.item.client, requestId: r.item.requestId, attempt }));
    // The entries of signed items commit with their results: no signature leaves without one.
    const [dropped] = await Promise.all([
      this.completed(slices),
      failed.length
        ? this.o.store
            .abandon(
              release,
              failed.flatMap((r) => r.drafts),
            )
            .catch((e) => this.o.log?.error({ err: e }, 'could not release or audit failed reservations'))
        : undefined,
    ]);
    // After the commit, before any signature leaves: the mark must cover these entries. If it
    // cannot be written, nothing is returned; a retry replays the committed results.
    //
    // What a lone request (c=1) waits for, and why each wait stays (measured on the 2-vCPU test
    // machine: raw C_SignInit + C_Sign p50 about 0.6 ms; the WAL's fdatasync 0.35 to 0.5 ms, more
    // when the shared disk is busy; the mark's C_SetAttributeValue 0.5 to 2 ms, a SoftHSM file
    // rewrite): the reservation's commit, without a sync of its own (its claim is made durable by
    // the completion's sync); the HSM; the completion's commit and its fdatasync (the result and
    // its audit entry are on disk before the signature leaves); then the mark, written after that
    // sync so an OS crash cannot leave the mark ahead of the database (a false STORE_ROLLED_BACK
    // that only an operator can clear). No timer or batching window: groups form from what
    // arrives in the same event-loop turn. Floor: raw + one fdatasync + one mark write.
    if (signedCount > 0) await this.o.gate?.release();
    if (dropped.size === 0) return out;
    return out.map((r): Signed => {
      if ('error' in r || !dropped.has(`${r.item.client}\0${r.item.requestId}`)) return r;
      const cause = new SignerError(
        'REQUEST_IN_FLIGHT',
        `request "${r.item.requestId}" was finished by another attempt; retry to read its result`,
        {},
        IN_FLIGHT_RETRY_MS,
      );
      return {
        error: { reason: cause.reason, message: cause.message },
        cause,
        item: r.item,
        drafts: [],
        dropped: true,
      };
    });
  }
}

type Signed =
  | {
      error: { reason: Reason; message: string };
      cause: SignerError;
      item: ReserveItem;
      drafts: AuditDraft[];
      /** Signed, but another attempt had finished the request: its stored result stands. */
      dropped?: true;
    }
  | { wire: WireSignResponse; result: Uint8Array; item: ReserveItem; drafts: AuditDraft[] };

/** Adds the audit entry of a decision made in the reservation: a refusal or a replay. */
function audited(
  plan: ReservePlan<GuardOutcome>,
  draft: (o: { decision: AuditDraft['decision']; reason?: string }) => AuditDraft,
): ReservePlan<GuardOutcome> {
  if (!plan.outcome.ok) return { ...plan, audit: [draft({ decision: 'refused', reason: plan.outcome.error.reason })] };
  if (plan.outcome.items[0]!.kind === 'replay')
    return { ...plan, audit: [draft({ decision: 'allowed', reason: 'REPLAY' })] };
  return plan;
}

/** Batch items decoded (and their claims built) per event-loop turn in checkBatch. */
const CHECK_CHUNK = 32;

function requireFresh(policy: CompiledPolicy, clientTime: Date, now: Date): void {
  const fresh = checkFreshness(policy, clientTime, now);
  if (!fresh.allow) throw new SignerError(fresh.reason, fresh.message, fresh.metadata);
}

/** What threshold cosigners need of a signed request to check it themselves (payload `index`). */
function forwarded(c: SignCall | BatchCall, index: number): ClientSigned | undefined {
  return c.request ? { request: c.request, clientCert: c.clientCert, index } : undefined;
}
