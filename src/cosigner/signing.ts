import { createHash } from 'node:crypto';
import type { NonceCommitments } from '@noble/curves/abstract/frost.js';
import { equalBytes } from '@noble/curves/utils.js';
import { SignerError } from '../core/errors.js';
import { commit, signShare } from '../core/frost/participant.js';
import { SUITES } from '../core/frost/suites.js';
import type { Logger } from '../infra/log.js';
import { Batcher } from '../infra/store/batcher.js';
import { NoncePool } from './nonce-pool.js';
import type { PolicyCheck } from './policy-check.js';
import type { CosignerRecords } from './records.js';
import type { RequestCheck } from './request-check.js';
import { grantedDraft, refusedDraft } from './share-audit.js';
import type { SignShareRequest } from './share-request.js';
import type { ShareVault } from './shares.js';

export type { SignShareRequest } from './share-request.js';

/** What this cosigner checks before it releases a share, and where it records what it did. */
export interface ShareChecks {
  requests: RequestCheck;
  policies: PolicyCheck;
  records: CosignerRecords;
}

/** CommitRequest as proto-loader decodes it. */
export interface CommitRequest {
  keyId: string;
  keyVersion: number;
  count: number;
}

/** CommitResponse: each pooled nonce's commitment (the nonce itself stays here). */
export interface CommitResponse {
  commitments: Array<{ id: string; cosignerId: number; hiding: Uint8Array; binding: Uint8Array }>;
  /** The share epoch these nonces sign with. */
  epoch: number;
}

const MAX_COMMIT_COUNT = 1000;

/** Nonces are pooled per key version; every epoch's nonces go when a refresh commits. */
const keyRef = (keyId: string, version: number) => `${keyId}@v${version}`;

/**
 * This cosigner's side of RFC 9591 signing: nonces made ahead (round one, kept in memory only)
 * and one signature share per nonce (round two), released only after this cosigner's own replay
 * records accept the payload.
 */
export class CosignerSigning {
  private readonly pool: NoncePool;
  /**
   * Group commit of grants: the shares that reach their grant in one event-loop turn decide and
   * write one after the other in one transaction (each in its own savepoint, so a refusal undoes
   * only its own writes) and share its one fsync. Each still sees every grant before it, as if
   * alone; no share is released before the transaction holding its grant committed.
   */
  private readonly grants: Batcher<() => void, { durable: Promise<void> }>;

  constructor(
    private readonly o: {
      id: number;
      shares: ShareVault;
      maxPooledNonces: number;
      log: Logger;
      checks: ShareChecks;
      /** Test-only: flips a bit of every share this cosigner returns. */
      corruptSignShare?: boolean;
    },
  ) {
    this.pool = new NoncePool(o.maxPooledNonces);
    this.grants = new Batcher((calls) => {
      const { outcomes, durable } = o.checks.records.together(calls);
      return outcomes.map((x) => ('error' in x ? x : { value: { durable } }));
    });
  }

  /** `count` fresh nonces for a key version's active share; the commitments go to the caller. */
  async commit(r: CommitRequest): Promise<CommitResponse> {
    const { keyId, keyVersion, count } = r;
    if (count < 1 || count > MAX_COMMIT_COUNT) {
      throw new SignerError('REQUEST_INVALID', `count must be 1..${MAX_COMMIT_COUNT}`);
    }
    const row = this.o.shares.active(keyId, keyVersion);
    const suite = SUITES[row.algorithm];
    const commitments = await this.o.shares.use(row, (key) =>
      Array.from({ length: count }, () => {
        const n = commit(suite, key.secret);
        const id = this.pool.add(keyRef(keyId, keyVersion), row.epoch, n);
        return { id, cosignerId: this.o.id, hiding: n.commitments.hiding, binding: n.commitments.binding };
      }),
    );
    return { commitments, epoch: row.epoch };
  }

  /**
   * One signature share with the pooled nonce `r.nonceId`, over the message this cosigner derives
   * from the payload itself, for a request its client signed and the quorum's policy allows. The
   * nonce is gone whatever the outcome; every refusal is in this cosigner's audit log.
   */
  async signShare(r: SignShareRequest): Promise<{ share: Uint8Array }> {
    try {
      return await this.checkedShare(r);
    } catch (e) {
      if (e instanceof SignerError) this.auditRefusal(r, e);
      throw e;
    }
  }

  private async checkedShare(r: SignShareRequest): Promise<{ share: Uint8Array }> {
    const { id } = this.o;
    // The nonce is consumed first: whatever happens below, it never signs anything else.
    const pooled = this.pool.take(keyRef(r.keyId, r.keyVersion), r.nonceId);
    if (!pooled) {
      throw new SignerError('NONCE_UNKNOWN', `nonce ${r.nonceId} is unknown to cosigner ${id} or already used`, {
        cosigner: String(id),
      });
    }
    const row = this.o.shares.active(r.keyId, r.keyVersion);
    if (row.epoch !== r.epoch || pooled.epoch !== r.epoch) {
      throw new SignerError('SHARE_EPOCH_MISMATCH', `share epoch is ${row.epoch}, not ${r.epoch}`);
    }
    const suite = SUITES[row.algorithm];
    const me = suite.frost.Identifier.fromNumber(id);
    const list: NonceCommitments[] = r.commitments.map((c) => ({
      identifier: suite.frost.Identifier.fromNumber(c.cosignerId),
      hiding: Uint8Array.from(c.hiding),
      binding: Uint8Array.from(c.binding),
    }));
    const mine = list.filter((c) => c.identifier === me);
    const ours = pooled.nonce.commitments;
    if (mine.length !== 1 || !equalBytes(mine[0]!.hiding, ours.hiding) || !equalBytes(mine[0]!.binding, ours.binding)) {
      const why = "the commitment list does not carry this cosigner's commitment for that nonce";
      throw new SignerError('COMMITMENT_MISMATCH', why);
    }
    const message = deriveMessage(r.payloadKind, r.payload);
    // The client's signature, checked against this cosigner's own config and clock; then, in the
    // grants' group commit, the quorum's policy against its records and the grant (replay claim,
    // velocity record, policy floor, audit entry). No await between the policy's velocity count
    // and the grant: nothing else writes on this node in between.
    const verified = this.o.checks.requests.check(r);
    const { durable } = await this.grants.submit(() => {
      const now = new Date();
      const decided = this.o.checks.policies.decide(r, verified, now);
      const audit = grantedDraft(id, r, payloadHashOf(r), verified, decided.use, now);
      this.claim(r, verified.client, now, audit, decided.use);
    });
    // The grant is committed; the share is computed while its WAL sync runs, and leaves only
    // once the grant is on disk (a sync that fails erases it: the request fails INTERNAL).
    const out = await this.o.shares.use(row, (key) => {
      const share = signShare(suite, key, pooled.nonce.nonces, list, message);
      if (this.o.corruptSignShare) share[3]! ^= 0x40;
      return { share };
    });
    try {
      await durable;
    } catch (e) {
      out.share.fill(0);
      throw e;
    }
    return out;
  }

  /** A refusal in this cosigner's audit log; a failure to write it is logged, the refusal stands. */
  private auditRefusal(r: SignShareRequest, e: SignerError): void {
    try {
      this.o.checks.records.audit(refusedDraft(this.o.id, r, payloadHashOf(r), e, new Date()));
    } catch (err) {
      this.o.log.error({ err, reason: e.reason }, 'could not audit a refused share');
    }
  }

  /** Drops every pooled nonce of a key version (its shares were refreshed or destroyed). */
  forget(keyId: string, version: number): void {
    this.pool.clear(keyRef(keyId, version));
    this.o.shares.close(keyId, version);
  }

  /**
   * Records the payload under its request id and (chain, account nonce) with the grant and its
   * audit entry, or refuses a second payload for a claimed scope.
   */
  private claim(
    r: SignShareRequest,
    client: string,
    at: Date,
    audit: Parameters<CosignerRecords['grant']>[0]['audit'],
    policy: Parameters<CosignerRecords['grant']>[0]['policy'],
  ): void {
    // Request ids are the client's: the same id from two clients is two requests.
    const scopes = [`req:${client}\0${r.requestId}`];
    if (r.replayScope) scopes.push(`nonce:${r.replayScope.chainId}:${r.replayScope.accountNonce}`);
    const { keyId, keyVersion: version, requestId } = r;
    const payloadHash = payloadHashOf(r);
    const conflict = this.o.checks.records.grant({
      keyId,
      version,
      client,
      requestId,
      scopes,
      payloadHash,
      at,
      policy,
      audit,
    });
    if (!conflict) return;
    const reuse = conflict.startsWith('req:');
    const refused = { keyId: r.keyId, requestId: r.requestId, scope: conflict };
    this.o.log.warn(refused, 'refused a second payload for a claimed scope');
    const scope = r.replayScope;
    throw new SignerError(
      reuse ? 'REQUEST_ID_REUSED' : 'NONCE_ALREADY_SIGNED',
      reuse
        ? `request ${r.requestId} was signed for another payload`
        : `nonce ${scope?.accountNonce} on chain ${scope?.chainId} was already signed for another payload`,
      { cosigner: String(this.o.id) },
    );
  }
}

/** "The same payload" for replay claims: key id, kind and payload bytes. */
function payloadHashOf(r: SignShareRequest): Buffer {
  return createHash('sha256').update(`${r.keyId}\0${r.payloadKind}\0`).update(r.payload).digest();
}

/** The cosigner signs what it derives from the payload itself, never a hash handed to it. */
function deriveMessage(kind: string, payload: Uint8Array): Uint8Array {
  if (kind === 'message' && payload.length >= 1 && payload.length <= 65536) return payload;
  if (kind === 'digest' && payload.length === 32) return payload;
  const why = `a ${kind} payload of ${payload.length} bytes cannot be signed by a threshold key`;
  throw new SignerError('PAYLOAD_INVALID', why);
}
