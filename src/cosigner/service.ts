import { createHash } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import type { FrostPublic, Key, NonceCommitments } from '@noble/curves/abstract/frost.js';
import { SignerError } from '../core/errors.js';
import type { Hsm } from '../infra/hsm/hsm.js';
import { SealError, seal, shareAad, unseal } from '../infra/hsm/seal.js';
import type { Logger } from '../infra/log.js';
import { unary } from '../infra/grpc/unary.js';
import type { PeerAuthorizer } from '../infra/grpc/auth.js';
import { Ceremony, type CeremonyFaults, type Round1Entry, type SealedShare } from './ceremony.js';
import type { CosignerStore, ShareRow } from './store.js';
import type { CosignerIdentity } from './identity.js';
import { NoncePool } from './nonce-pool.js';
import { ParticipantFault, commit, decodePublic, decodeSecret, encodePublic, encodeSecret, signShare } from '../core/frost/participant.js';
import { SUITES, isThresholdAlgorithm } from '../core/frost/suites.js';

export interface CosignerOptions {
  id: number;
  hsm: Hsm;
  /** CKA_ID of this node's AES sealing key. */
  sealKey: Uint8Array;
  store: CosignerStore;
  /** Who may call (coordinators), checked at every call: src/infra/grpc/auth.ts. */
  peers: PeerAuthorizer;
  maxPooledNonces: number;
  log: Logger;
  /** Signs this cosigner's round-1 outputs and checks the others'. */
  identity: CosignerIdentity;
  /** Test-only misbehaviour (a cheating or faulty cosigner); never set by main.ts. */
  faults?: CeremonyFaults & { corruptSignShare?: boolean };
}

const CEREMONY_TTL_MS = 10 * 60_000;
const MAX_COMMIT_COUNT = 1000;
const failed = (why: string, reason: 'CEREMONY_FAILED' | 'SHARE_EPOCH_MISMATCH' | 'NONCE_UNKNOWN' | 'COMMITMENT_MISMATCH', meta: Record<string, string> = {}) =>
  new SignerError(reason, why, meta);

/**
 * signer.v1.Cosigner: this node's side of DKG, refresh and signing for every threshold key it
 * holds a share of. A share is unsealed by the HSM for one call and erased when it returns.
 */
export function cosignerHandlers(o: CosignerOptions) {
  const ceremonies = new Map<string, Ceremony>();
  const pool = new NoncePool(o.maxPooledNonces);
  /**
   * Share rows (by ceremony session) whose public package and share were checked at their first
   * unseal in this process: GCM authenticates the same share bytes every time after that, and
   * re-validating costs ~8 ms per Ed25519 share.
   */
  const checked = new Map<string, FrostPublic>();
  const keyRef = (keyId: string, version: number) => `${keyId}@v${version}`;
  const aad = (s: Pick<ShareRow, 'keyId' | 'version' | 'epoch' | 'groupId'>) => shareAad(`${s.keyId}@v${s.version}#${s.epoch}`, s.groupId);

  const authorize = (call: grpc.ServerUnaryCall<unknown, unknown>) => o.peers.require(call);

  /** The share row that signs for a key version (still sealed). */
  const activeShare = (keyId: string, version: number): ShareRow => {
    const row = o.store.active(keyId, version);
    if (!row) throw new SignerError('SHARE_NOT_FOUND', `this cosigner holds no share of ${keyId} v${version}`, { keyId, cosigner: String(o.id) });
    return row;
  };

  /** A share row's share, unsealed; the caller MUST erase `secret.signingShare` when done. */
  const unsealShare = async (row: ShareRow): Promise<Key> => {
    const { keyId, version } = row;
    const suite = SUITES[row.algorithm];
    const known = checked.get(row.sessionId);
    const pub = known ?? decodePublic(suite, JSON.parse(row.publicPackage));
    let plain: Buffer;
    try {
      plain = await unseal(o.hsm, o.sealKey, row.sealed, aad(row));
    } catch (e) {
      if (e instanceof SealError) o.log.error({ keyId, version }, 'sealed share failed authentication');
      throw e;
    }
    try {
      const secret = decodeSecret(suite, plain, pub, !known);
      checked.set(row.sessionId, pub);
      return { public: pub, secret };
    } finally {
      plain.fill(0);
    }
  };

  const ceremony = (sessionId: string): Ceremony => {
    for (const [id, c] of ceremonies) {
      if (Date.now() - c.startedAt <= CEREMONY_TTL_MS) continue;
      c.erase();
      ceremonies.delete(id);
    }
    const c = ceremonies.get(sessionId);
    if (!c) throw new SignerError('CEREMONY_NOT_FOUND', `no ceremony ${sessionId} on cosigner ${o.id} (expired or never started)`);
    return c;
  };

  /** Another participant's fault names that cosigner, so the coordinator can report it. */
  const blame = (c: Ceremony, e: unknown): never => {
    c.erase();
    ceremonies.delete(c.params.sessionId);
    if (e instanceof ParticipantFault) {
      const culprit = c.cosignerOf(e.participant);
      throw failed(`cosigner ${culprit ?? 'unknown'} broke the ${c.params.kind}: ${e.message.replace(/^participant [0-9a-f]+: /, '')}`, 'CEREMONY_FAILED', {
        faultyCosigner: String(culprit ?? ''),
        reportedBy: String(o.id),
      });
    }
    throw e;
  };

  return {
    Info: unary(o.log, async (call: grpc.ServerUnaryCall<unknown, unknown>) => {
      authorize(call);
      return { cosignerId: o.id };
    }),

    Round1: unary(o.log, async (call: grpc.ServerUnaryCall<Round1Request, unknown>) => {
      authorize(call);
      const r = call.request;
      if (!isThresholdAlgorithm(r.algorithm)) throw new SignerError('REQUEST_INVALID', `unknown threshold algorithm "${r.algorithm}"`);
      const participants = [...r.participants].sort((a, b) => a - b);
      if (!participants.includes(o.id)) throw new SignerError('REQUEST_INVALID', `cosigner ${o.id} is not among the participants`);
      if (new Set(participants).size !== participants.length || r.minSigners < 2 || r.minSigners > participants.length) {
        throw new SignerError('REQUEST_INVALID', 'participants must be distinct and min_signers in 2..n');
      }
      if (!/^[A-Za-z0-9_-]{16,64}$/.test(r.sessionId) || ceremonies.has(r.sessionId)) throw new SignerError('REQUEST_INVALID', 'session_id must be new and 16..64 url-safe characters');
      const kind = r.ceremony === 'REFRESH' ? 'refresh' : r.ceremony === 'DKG' ? 'dkg' : undefined;
      if (!kind) throw new SignerError('REQUEST_INVALID', 'ceremony must be DKG or REFRESH');
      const suite = SUITES[r.algorithm];
      let old: Key | undefined;
      if (kind === 'refresh') {
        // Checked before unsealing: a refused refresh never has the share in memory.
        const row = activeShare(r.keyId, r.keyVersion);
        if (row.epoch !== r.epoch) throw failed(`share epoch is ${row.epoch}, not ${r.epoch}`, 'SHARE_EPOCH_MISMATCH');
        if (row.algorithm !== r.algorithm || !same(row.groupId, r.groupId)) throw new SignerError('REQUEST_INVALID', `a refresh keeps the key's algorithm and group id`);
        old = await unsealShare(row);
      } else if (o.store.active(r.keyId, r.keyVersion)) {
        throw new SignerError('KEY_EXISTS', `cosigner ${o.id} already holds a share of ${r.keyId} v${r.keyVersion}`);
      }
      o.store.discardPending(r.keyId, r.keyVersion);
      const c = new Ceremony(
        { sessionId: r.sessionId, kind, keyId: r.keyId, version: r.keyVersion, algorithm: r.algorithm, groupId: r.groupId, minSigners: r.minSigners, participants, epoch: r.epoch },
        o.id,
        suite,
        o.identity,
        old,
        o.faults,
      );
      const out = c.round1();
      ceremonies.set(r.sessionId, c);
      return out;
    }),

    Round2: unary(o.log, async (call: grpc.ServerUnaryCall<{ sessionId: string; round1: Round1Entry[] }, unknown>) => {
      authorize(call);
      const c = ceremony(call.request.sessionId);
      try {
        return { shares: c.round2(call.request.round1) };
      } catch (e) {
        return blame(c, e);
      }
    }),

    Round3: unary(o.log, async (call: grpc.ServerUnaryCall<{ sessionId: string; shares: SealedShare[] }, unknown>) => {
      authorize(call);
      const c = ceremony(call.request.sessionId);
      let key: Key;
      try {
        key = c.round3(call.request.shares);
      } catch (e) {
        return blame(c, e);
      }
      const p = c.params;
      const epoch = p.kind === 'dkg' ? 1 : p.epoch + 1;
      const suite = SUITES[p.algorithm];
      const plain = encodeSecret(suite, key.secret);
      try {
        const sealed = await seal(o.hsm, o.sealKey, plain, aad({ keyId: p.keyId, version: p.version, epoch, groupId: p.groupId }));
        const publicPackage = JSON.stringify(encodePublic(key.public));
        o.store.putPending({ keyId: p.keyId, version: p.version, epoch, sessionId: p.sessionId, algorithm: p.algorithm, groupId: p.groupId, publicPackage, sealed }, new Date());
        return { publicPackage, epoch };
      } finally {
        plain.fill(0);
        key.secret.signingShare.fill(0);
        c.erase();
      }
    }),

    Finish: unary(o.log, async (call: grpc.ServerUnaryCall<{ sessionId: string; commit: boolean }, unknown>) => {
      authorize(call);
      const { sessionId, commit: keep } = call.request;
      ceremonies.get(sessionId)?.erase();
      ceremonies.delete(sessionId);
      const row = o.store.finish(sessionId, keep);
      if (row) {
        pool.clear(keyRef(row.keyId, row.version));
        o.log.info({ keyId: row.keyId, version: row.version, epoch: row.epoch }, 'threshold share committed');
      }
      return {};
    }),

    Commit: unary(o.log, async (call: grpc.ServerUnaryCall<{ keyId: string; keyVersion: number; count: number }, unknown>) => {
      authorize(call);
      const { keyId, keyVersion, count } = call.request;
      if (count < 1 || count > MAX_COMMIT_COUNT) throw new SignerError('REQUEST_INVALID', `count must be 1..${MAX_COMMIT_COUNT}`);
      const row = activeShare(keyId, keyVersion);
      const key = await unsealShare(row);
      try {
        const suite = SUITES[row.algorithm];
        const commitments = Array.from({ length: count }, () => {
          const n = commit(suite, key.secret);
          const id = pool.add(keyRef(keyId, keyVersion), row.epoch, n);
          return { id, cosignerId: o.id, hiding: n.commitments.hiding, binding: n.commitments.binding };
        });
        return { commitments, epoch: row.epoch };
      } finally {
        key.secret.signingShare.fill(0);
      }
    }),

    SignShare: unary(o.log, async (call: grpc.ServerUnaryCall<SignShareRequest, unknown>) => {
      authorize(call);
      const r = call.request;
      // The nonce is consumed first: whatever happens below, it never signs anything else.
      const pooled = pool.take(keyRef(r.keyId, r.keyVersion), r.nonceId);
      if (!pooled) throw failed(`nonce ${r.nonceId} is unknown to cosigner ${o.id} or already used`, 'NONCE_UNKNOWN', { cosigner: String(o.id) });
      const row = activeShare(r.keyId, r.keyVersion);
      if (row.epoch !== r.epoch || pooled.epoch !== r.epoch) throw failed(`share epoch is ${row.epoch}, not ${r.epoch}`, 'SHARE_EPOCH_MISMATCH');
      const suite = SUITES[row.algorithm];
      const me = suite.frost.Identifier.fromNumber(o.id);
      const list: NonceCommitments[] = r.commitments.map((c) => ({ identifier: suite.frost.Identifier.fromNumber(c.cosignerId), hiding: Uint8Array.from(c.hiding), binding: Uint8Array.from(c.binding) }));
      const mine = list.filter((c) => c.identifier === me);
      if (mine.length !== 1 || !same(mine[0]!.hiding, pooled.nonce.commitments.hiding) || !same(mine[0]!.binding, pooled.nonce.commitments.binding)) {
        throw failed('the commitment list does not carry this cosigner\'s commitment for that nonce', 'COMMITMENT_MISMATCH');
      }
      const message = deriveMessage(r.payloadKind, r.payload);
      const payloadHash = createHash('sha256').update(`${r.keyId}\0${r.payloadKind}\0`).update(r.payload).digest();
      // Request ids are the client's: the same id from two clients is two requests.
      const scopes = [`req:${r.client}\0${r.requestId}`];
      if (r.replayScope) scopes.push(`nonce:${r.replayScope.chainId}:${r.replayScope.accountNonce}`);
      const conflict = o.store.claim(r.keyId, r.keyVersion, scopes, payloadHash, new Date());
      if (conflict) {
        const reuse = conflict.startsWith('req:');
        o.log.warn({ keyId: r.keyId, requestId: r.requestId, scope: conflict }, 'refused a second payload for a claimed scope');
        throw new SignerError(reuse ? 'REQUEST_ID_REUSED' : 'NONCE_ALREADY_SIGNED',
          reuse ? `request ${r.requestId} was signed for another payload` : `nonce ${r.replayScope?.accountNonce} on chain ${r.replayScope?.chainId} was already signed for another payload`,
          { cosigner: String(o.id) },
        );
      }
      const key = await unsealShare(row);
      try {
        const share = signShare(suite, key, pooled.nonce.nonces, list, message);
        if (o.faults?.corruptSignShare) share[3]! ^= 0x40;
        return { share };
      } finally {
        key.secret.signingShare.fill(0);
      }
    }),

    DestroyShares: unary(o.log, async (call: grpc.ServerUnaryCall<{ keyId: string; keyVersion: number }, unknown>) => {
      authorize(call);
      const { keyId, keyVersion } = call.request;
      pool.clear(keyRef(keyId, keyVersion));
      const destroyed = o.store.destroy(keyId, keyVersion);
      o.log.info({ keyId, version: keyVersion, destroyed }, 'threshold shares destroyed');
      return { destroyed };
    }),
  };
}

interface Round1Request {
  sessionId: string;
  ceremony: string;
  keyId: string;
  keyVersion: number;
  algorithm: string;
  minSigners: number;
  participants: number[];
  epoch: number;
  groupId: Buffer;
}

interface SignShareRequest {
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

const same = (a: Uint8Array, b: Uint8Array) => Buffer.from(a).equals(Buffer.from(b));

/** The cosigner signs what it derives from the payload itself, never a hash handed to it. */
function deriveMessage(kind: string, payload: Uint8Array): Uint8Array {
  if (kind === 'message' && payload.length >= 1 && payload.length <= 65536) return payload;
  if (kind === 'digest' && payload.length === 32) return payload;
  throw new SignerError('PAYLOAD_INVALID', `a ${kind} payload of ${payload.length} bytes cannot be signed by a threshold key`);
}
