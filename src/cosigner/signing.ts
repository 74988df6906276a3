import { createHash } from 'node:crypto';
import type { NonceCommitments } from '@noble/curves/abstract/frost.js';
import { equalBytes } from '@noble/curves/utils.js';
import { SignerError } from '../core/errors.js';
import { commit, signShare } from '../core/frost/participant.js';
import { SUITES } from '../core/frost/suites.js';
import type { Logger } from '../infra/log.js';
import { NoncePool } from './nonce-pool.js';
import type { ShareVault } from './shares.js';
import type { CosignerStore } from './store.js';

/** SignShareRequest as proto-loader decodes it. */
export interface SignShareRequest {
  keyId: string;
  keyVersion: number;
  epoch: number;
  client: string;
  requestId: string;
  payloadKind: string;
  payload: Buffer;
  replayScope: { chainId: string; accountNonce: string } | null;
  nonceId: string;
  commitments: Array<{ cosignerId: number; hiding: Buffer; binding: Buffer }>;
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

  constructor(
    private readonly o: {
      id: number;
      store: CosignerStore;
      shares: ShareVault;
      maxPooledNonces: number;
      log: Logger;
      /** Test-only: flips a bit of every share this cosigner returns. */
      corruptSignShare?: boolean;
    },
  ) {
    this.pool = new NoncePool(o.maxPooledNonces);
  }

  /** `count` fresh nonces for a key version's active share; the commitments go to the caller. */
  async commit(r: CommitRequest): Promise<CommitResponse> {
    const { keyId, keyVersion, count } = r;
    if (count < 1 || count > MAX_COMMIT_COUNT) {
      throw new SignerError('REQUEST_INVALID', `count must be 1..${MAX_COMMIT_COUNT}`);
    }
    const row = this.o.shares.active(keyId, keyVersion);
    const key = await this.o.shares.unseal(row);
    try {
      const suite = SUITES[row.algorithm];
      const commitments = Array.from({ length: count }, () => {
        const n = commit(suite, key.secret);
        const id = this.pool.add(keyRef(keyId, keyVersion), row.epoch, n);
        return { id, cosignerId: this.o.id, hiding: n.commitments.hiding, binding: n.commitments.binding };
      });
      return { commitments, epoch: row.epoch };
    } finally {
      key.secret.signingShare.fill(0);
    }
  }

  /**
   * One signature share with the pooled nonce `r.nonceId`, over the message this cosigner derives
   * from the payload itself. The nonce is gone whatever the outcome.
   */
  async signShare(r: SignShareRequest): Promise<{ share: Uint8Array }> {
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
    this.claim(r);
    const key = await this.o.shares.unseal(row);
    try {
      const share = signShare(suite, key, pooled.nonce.nonces, list, message);
      if (this.o.corruptSignShare) share[3]! ^= 0x40;
      return { share };
    } finally {
      key.secret.signingShare.fill(0);
    }
  }

  /** Drops every pooled nonce of a key version (its shares were refreshed or destroyed). */
  forget(keyId: string, version: number): void {
    this.pool.clear(keyRef(keyId, version));
  }

  /** Records the payload under its request id and (chain, account nonce), or refuses a second one. */
  private claim(r: SignShareRequest): void {
    const payloadHash = createHash('sha256').update(`${r.keyId}\0${r.payloadKind}\0`).update(r.payload).digest();
    // Request ids are the client's: the same id from two clients is two requests.
    const scopes = [`req:${r.client}\0${r.requestId}`];
    if (r.replayScope) scopes.push(`nonce:${r.replayScope.chainId}:${r.replayScope.accountNonce}`);
    const conflict = this.o.store.claim(r.keyId, r.keyVersion, scopes, payloadHash, new Date());
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

/** The cosigner signs what it derives from the payload itself, never a hash handed to it. */
function deriveMessage(kind: string, payload: Uint8Array): Uint8Array {
  if (kind === 'message' && payload.length >= 1 && payload.length <= 65536) return payload;
  if (kind === 'digest' && payload.length === 32) return payload;
  const why = `a ${kind} payload of ${payload.length} bytes cannot be signed by a threshold key`;
  throw new SignerError('PAYLOAD_INVALID', why);
}
