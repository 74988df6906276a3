import type { FrostPublic, NonceCommitments } from '@noble/curves/abstract/frost.js';
import type { AuditRequest } from '../../core/audit/chain.js';
import { type Reason, SignerError } from '../../core/errors.js';
import {
  aggregate,
  checkCommitment,
  decodePublic,
  ParticipantFault,
  verifyShare,
} from '../../core/frost/participant.js';
import { SUITES, type Suite, type ThresholdAlgorithm } from '../../core/frost/suites.js';
import type { Logger } from '../../infra/log.js';
import type { KeyRecord } from '../../infra/store/store.js';
import { type CosignerClients, CosignerFault, type ThresholdConfig } from './cosigner-client.js';
import type { WirePolicy } from './policy-evidence.js';
import { type Lane, Slots } from './slots.js';

export interface ThresholdRequest {
  client: string;
  requestId: string;
  kind: 'message' | 'digest';
  /** What is signed: the message, or the 32-byte digest (BIP340 message). */
  payload: Uint8Array;
  scope?: { chainId: bigint; nonce: bigint };
  /**
   * The client's signed request, forwarded so each cosigner verifies it itself: the signature as
   * the signer verified it, the client's certificate (DER) and this payload's index in it.
   */
  signed?: ClientSigned | undefined;
  /** Hears of each cosigner left out of this signature, besides the signer-wide listener. */
  onFault?: FaultListener;
}

/** A client's request signature as a cosigner needs it (SignShareRequest fields 40-44). */
export interface ClientSigned {
  request: AuditRequest;
  clientCert?: Uint8Array | undefined;
  /** This payload's position among the signed request's payloads (0 for a Sign). */
  index: number;
}

interface Pooled {
  id: string;
  cosignerId: number;
  hiding: Uint8Array;
  binding: Uint8Array;
}

export type FaultListener = (f: {
  keyId: string;
  version: number;
  cosigner: number;
  why: string;
  requestId: string;
}) => void;

/** How long a cosigner at fault is tried after the others. */
const BENCH_MS = 5000;

/** How many times one signature waits (100 ms each) for a refresh to commit everywhere. */
const MAX_REFRESH_WAITS = 20;

/** Refusals that are the request's fate, not the cosigner's fault: passed on as they are. */
const REPLAY_REASONS = new Set(['NONCE_ALREADY_SIGNED', 'REQUEST_ID_REUSED', 'PAYLOAD_INVALID']);

/**
 * Online threshold signing (RFC 9591 round two) for the coordinator. Nonce commitments are
 * fetched ahead from every cosigner, so a signature costs one round trip: pick t cosigners with
 * a pooled commitment, send each the payload and the commitment list, check and aggregate.
 * A cosigner that misses the deadline, refuses, or returns a share that fails verification is
 * named (fault listener: audit and metrics) and left out of the next attempt, so signing
 * succeeds while t cosigners are up and honest.
 */
export class ThresholdSigner {
  private readonly pools = new Map<string, Map<number, Pooled[]>>();
  private readonly inflight = new Map<string, Promise<void>>();
  private readonly publics = new Map<string, FrostPublic>();
  private readonly benchedUntil = new Map<number, number>();
  private readonly slots: Slots;
  private next = 0;

  constructor(
    private readonly cosigners: CosignerClients,
    private readonly cfg: ThresholdConfig,
    private readonly onFault: FaultListener = () => undefined,
    private readonly log?: Logger,
    /** The key version as the registry has it now: a refresh changes its epoch and package. */
    private readonly current: (k: KeyRecord) => KeyRecord = (k) => k,
    /** The governing policy version with its approvals, which each cosigner verifies itself. */
    private readonly policyOf: (keyId: string) => Promise<WirePolicy | undefined> = async () => undefined,
  ) {
    this.slots = new Slots(cfg.maxInFlight);
  }

  /**
   * Signs with at most `maxInFlight` signatures out to the cosigners at once, hot requests
   * first: a 1,000-item batch queues here instead of piling shares onto the cosigners past
   * their deadline.
   */
  async sign(signingKey: KeyRecord, req: ThresholdRequest, lane: Lane = 'hot'): Promise<Uint8Array> {
    await this.slots.acquire(lane);
    try {
      return await this.signNow(signingKey, req);
    } finally {
      this.slots.release();
    }
  }

  private async signNow(signingKey: KeyRecord, req: ThresholdRequest): Promise<Uint8Array> {
    let key = signingKey;
    let info = key.threshold!;
    const suite = SUITES[key.algorithm as ThresholdAlgorithm];
    const excluded = new Map<number, string>();
    let refreshing = 0;
    const checked = { ...clientSigned(req.signed), policy: (await this.policyOf(key.keyId)) ?? null };
    // Each attempt either signs or leaves out at least one cosigner; a stale pool may cost one
    // more, a refresh running meanwhile a few more.
    for (let attempt = 0; attempt <= info.cosigners.length + 1 + refreshing; attempt++) {
      key = this.current(key);
      info = key.threshold!;
      const pub = this.publicOf(key, suite);
      const candidates = this.order(info.cosigners.filter((id) => !excluded.has(id)));
      if (candidates.length < info.minSigners) break;
      const { picked, stale } = await this.pick(key, candidates, info.minSigners, excluded, req);
      if (picked.length < info.minSigners) {
        // Unused commitments go back for the next attempt.
        for (const p of picked) this.poolsOf(key).get(p.cosignerId)?.unshift(p);
        if (!stale || refreshing >= MAX_REFRESH_WAITS) break;
        refreshing++;
        await new Promise((r) => setTimeout(r, 100));
        continue;
      }
      const list: NonceCommitments[] = picked
        .map((p) => ({
          identifier: suite.frost.Identifier.fromNumber(p.cosignerId),
          hiding: Uint8Array.from(p.hiding),
          binding: Uint8Array.from(p.binding),
        }))
        .sort((a, b) => (a.identifier < b.identifier ? -1 : 1));
      const wireList = picked.map((p) => ({ cosignerId: p.cosignerId, hiding: p.hiding, binding: p.binding }));
      const answers = await Promise.allSettled(
        picked.map((p) =>
          this.cosigners.call<{ share: Buffer }>(p.cosignerId, 'SignShare', {
            keyId: key.keyId,
            keyVersion: key.version,
            epoch: info.epoch,
            client: req.client,
            requestId: req.requestId,
            payloadKind: req.kind,
            payload: Buffer.from(req.payload),
            replayScope: req.scope
              ? { chainId: req.scope.chainId.toString(), accountNonce: req.scope.nonce.toString() }
              : null,
            nonceId: p.id,
            commitments: wireList,
            ...checked,
          }),
        ),
      );
      const shares: Record<string, Uint8Array> = {};
      let retry = false;
      answers.forEach((a, i) => {
        const id = picked[i]!.cosignerId;
        if (a.status === 'fulfilled') {
          shares[suite.frost.Identifier.fromNumber(id)] = a.value.share;
          return;
        }
        const f = a.reason as CosignerFault;
        if (f.refusal?.reason && REPLAY_REASONS.has(f.refusal.reason)) {
          throw new SignerError(f.refusal.reason as Reason, `cosigner ${id} refused: ${f.refusal.message}`, {
            cosigner: String(id),
          });
        }
        if (f.why === 'NONCE_UNKNOWN') {
          // The cosigner restarted and lost its nonces (by design): refetch, do not blame.
          this.pools.get(this.poolKey(key))?.delete(id);
          retry = true;
          return;
        }
        if (f.why === 'SHARE_EPOCH_MISMATCH' && refreshing < MAX_REFRESH_WAITS) {
          // A share refresh is committing on the cosigners: wait for it, then use the new epoch.
          refreshing++;
          retry = true;
          return;
        }
        this.fault(key, excluded, id, f.why, req);
      });
      if (Object.keys(shares).length < picked.length) {
        if (refreshing) await new Promise((r) => setTimeout(r, 100));
        if (retry || excluded.size) continue;
        break;
      }
      try {
        return aggregate(suite, pub, list, req.payload, shares);
      } catch (e) {
        if (!(e instanceof ParticipantFault)) throw e;
        // Name every bad share, not just the first aggregate found.
        for (const [ident, share] of Object.entries(shares)) {
          if (!verifyShare(suite, pub, list, req.payload, ident, share)) {
            const cosigner = picked.find((p) => suite.frost.Identifier.fromNumber(p.cosignerId) === ident)!.cosignerId;
            this.fault(key, excluded, cosigner, 'invalid share', req);
          }
        }
      }
    }
    const named = [...excluded].map(([id, why]) => `${id} (${why})`).join(', ');
    throw new SignerError(
      'THRESHOLD_UNAVAILABLE',
      `fewer than ${info.minSigners} cosigners could sign${named ? `; left out: ${named}` : ''}`,
      {
        keyId: key.keyId,
        faultyCosigners: [...excluded.keys()].join(','),
      },
    );
  }

  /** Leaves a cosigner out of this signature; the signer-wide and the request's listeners hear of it. */
  private fault(key: KeyRecord, excluded: Map<number, string>, cosigner: number, why: string, req: ThresholdRequest) {
    const { requestId } = req;
    excluded.set(cosigner, why);
    this.benchedUntil.set(cosigner, Date.now() + BENCH_MS);
    this.pools.get(this.poolKey(key))?.delete(cosigner);
    this.log?.warn(
      { keyId: key.keyId, version: key.version, cosigner, why, requestId },
      'cosigner fault; signing with another subset',
    );
    this.onFault({ keyId: key.keyId, version: key.version, cosigner, why, requestId });
    req.onFault?.({ keyId: key.keyId, version: key.version, cosigner, why, requestId });
  }

  /**
   * Rotates the starting cosigner so load spreads over all of them; cosigners at fault in the
   * last few seconds go last, so one that hangs does not cost every request a deadline.
   */
  private order(ids: number[]): number[] {
    const start = this.next++ % Math.max(1, ids.length);
    const rotated = [...ids.slice(start), ...ids.slice(0, start)];
    const now = Date.now();
    const benched = (id: number) => (this.benchedUntil.get(id) ?? 0) > now;
    return [...rotated.filter((id) => !benched(id)), ...rotated.filter(benched)];
  }

  /** t cosigners with a commitment each: pooled ones first, then fetched within the deadline. */
  private async pick(
    key: KeyRecord,
    candidates: number[],
    t: number,
    excluded: Map<number, string>,
    req: ThresholdRequest,
  ): Promise<{ picked: Pooled[]; stale: boolean }> {
    let stale = false;
    const pools = this.poolsOf(key);
    const picked: Pooled[] = [];
    const withPool = candidates.filter((id) => (pools.get(id)?.length ?? 0) > 0);
    for (const id of withPool.slice(0, t)) picked.push(pools.get(id)!.shift()!);
    const missing = candidates.filter((id) => !withPool.includes(id));
    // A fetch shared by many concurrent signatures (a batch's first items) may be drained by the
    // others before this one takes its commitment: fetch again, a few times, rather than fail.
    let rounds = 0;
    while (picked.length < t && missing.length && rounds++ < 4) {
      const batch = missing.splice(0, t - picked.length);
      const got = await Promise.allSettled(batch.map((id) => this.fetch(key, id)));
      got.forEach((g, i) => {
        const id = batch[i]!;
        if (g.status === 'rejected') {
          const why = (g.reason as CosignerFault).why ?? 'unavailable';
          // Its shares are a refresh ahead of (or behind) ours: not a fault, the epoch catches up.
          if (why === 'SHARE_EPOCH_MISMATCH') {
            stale = true;
            return;
          }
          return this.fault(key, excluded, id, why, req);
        }
        const one = pools.get(id)?.shift();
        if (!one) missing.push(id);
        else if (picked.length < t) picked.push(one);
        else pools.get(id)?.unshift(one);
      });
    }
    for (const id of candidates) if ((pools.get(id)?.length ?? 0) < this.cfg.poolSize / 2) this.refill(key, id);
    return { picked, stale };
  }

  /**
   * Fetches `poolSize` commitments from a cosigner. Concurrent callers share one fetch: the first
   * signatures after a start must not each ask every cosigner for a full pool.
   */
  private fetch(key: KeyRecord, id: number): Promise<void> {
    const k = `${this.poolKey(key)}/${id}`;
    let running = this.inflight.get(k);
    if (!running) {
      running = this.cosigners
        .call<{ commitments: Pooled[]; epoch: number }>(id, 'Commit', {
          keyId: key.keyId,
          keyVersion: key.version,
          count: this.cfg.poolSize,
        })
        .then((out) => {
          if (out.epoch !== key.threshold!.epoch) throw new CosignerFault(id, 'SHARE_EPOCH_MISMATCH');
          // Checked here, off the signing path, and so that a bad element is blamed on its
          // sender (and never reaches an honest cosigner's signShare).
          const suite = SUITES[key.algorithm as ThresholdAlgorithm];
          try {
            for (const c of out.commitments) checkCommitment(suite, c);
          } catch {
            throw new CosignerFault(id, 'invalid commitment');
          }
          const pools = this.poolsOf(key);
          pools.set(id, [...(pools.get(id) ?? []), ...out.commitments.map((c) => ({ ...c, cosignerId: id }))]);
        })
        .finally(() => this.inflight.delete(k));
      this.inflight.set(k, running);
    }
    return running;
  }

  /** Tops a cosigner's pool up in the background; failures show up at the next signing. */
  private refill(key: KeyRecord, id: number): void {
    this.fetch(key, id).catch(() => undefined);
  }

  private poolKey(key: KeyRecord): string {
    return `${key.keyId}@v${key.version}#${key.threshold!.epoch}`;
  }

  private poolsOf(key: KeyRecord): Map<number, Pooled[]> {
    const k = this.poolKey(key);
    let p = this.pools.get(k);
    if (!p) {
      // A new epoch: the commitments (and public package) of earlier epochs are dead.
      const version = `${key.keyId}@v${key.version}#`;
      for (const cache of [this.pools, this.publics])
        for (const old of [...cache.keys()]) if (old.startsWith(version) && old !== k) cache.delete(old);
      p = new Map();
      this.pools.set(k, p);
    }
    return p;
  }

  private publicOf(key: KeyRecord, suite: Suite): FrostPublic {
    const k = this.poolKey(key);
    let pub = this.publics.get(k);
    if (!pub) {
      pub = decodePublic(suite, JSON.parse(key.threshold!.publicPackage));
      this.publics.set(k, pub);
    }
    return pub;
  }
}

/** SignShareRequest fields 40-44: empty when the request was not signed (every cosigner refuses it). */
function clientSigned(s: ClientSigned | undefined) {
  if (!s) return {};
  return {
    signedRequest: Buffer.from(s.request.message, 'hex'),
    requestSignature: Buffer.from(s.request.signature, 'hex'),
    requestSigningKey: s.request.signingKey,
    clientCertificate: s.clientCert ? Buffer.from(s.clientCert) : Buffer.alloc(0),
    payloadIndex: s.index,
  };
}
