import type { Key } from '@noble/curves/abstract/frost.js';
import { equalBytes } from '@noble/curves/utils.js';
import { SignerError } from '../core/errors.js';
import { ParticipantFault } from '../core/frost/participant.js';
import { isThresholdAlgorithm, SUITES } from '../core/frost/suites.js';
import type { CeremonyParams, Round1Entry, Round1Output, SealedShare } from '../core/frost/wire.js';
import { Ceremony, type CeremonyFaults } from './ceremony.js';
import type { CosignerIdentity } from './identity.js';
import type { ShareVault } from './shares.js';
import type { CosignerStore } from './store.js';

/** Round1Request as proto-loader decodes it. */
export interface Round1Request {
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

const CEREMONY_TTL_MS = 10 * 60_000;

/**
 * This cosigner's running DKGs and refreshes, by session id, in memory only. A ceremony that
 * fails or outlives its TTL is erased; one that reaches round three leaves a pending share that
 * the coordinator's Finish commits or discards.
 */
export class CosignerCeremonies {
  private readonly running = new Map<string, Ceremony>();

  constructor(
    private readonly o: {
      id: number;
      store: CosignerStore;
      shares: ShareVault;
      identity: CosignerIdentity;
      faults?: CeremonyFaults;
    },
  ) {}

  /** Checks the request, unseals the share a refresh starts from, and answers round one. */
  async round1(r: Round1Request): Promise<Round1Output> {
    const { id } = this.o;
    if (!isThresholdAlgorithm(r.algorithm)) {
      throw new SignerError('REQUEST_INVALID', `unknown threshold algorithm "${r.algorithm}"`);
    }
    const participants = [...r.participants].sort((a, b) => a - b);
    if (!participants.includes(id)) {
      throw new SignerError('REQUEST_INVALID', `cosigner ${id} is not among the participants`);
    }
    if (new Set(participants).size !== participants.length || r.minSigners < 2 || r.minSigners > participants.length) {
      throw new SignerError('REQUEST_INVALID', 'participants must be distinct and min_signers in 2..n');
    }
    if (!/^[A-Za-z0-9_-]{16,64}$/.test(r.sessionId) || this.running.has(r.sessionId)) {
      throw new SignerError('REQUEST_INVALID', 'session_id must be new and 16..64 url-safe characters');
    }
    if (!Number.isInteger(r.keyVersion) || r.keyVersion < 1 || typeof r.keyId !== 'string' || !r.keyId) {
      throw new SignerError('REQUEST_INVALID', 'key_id and key_version are required');
    }
    const kind = r.ceremony === 'REFRESH' ? 'refresh' : r.ceremony === 'DKG' ? 'dkg' : undefined;
    if (!kind) throw new SignerError('REQUEST_INVALID', 'ceremony must be DKG or REFRESH');
    const suite = SUITES[r.algorithm];
    let old: Key | undefined;
    if (kind === 'refresh') {
      // Checked before unsealing: a refused refresh never has the share in memory.
      const row = this.o.shares.active(r.keyId, r.keyVersion);
      if (row.epoch !== r.epoch) {
        throw new SignerError('SHARE_EPOCH_MISMATCH', `share epoch is ${row.epoch}, not ${r.epoch}`);
      }
      if (row.algorithm !== r.algorithm || !equalBytes(row.groupId, r.groupId)) {
        throw new SignerError('REQUEST_INVALID', `a refresh keeps the key's algorithm and group id`);
      }
      old = await this.o.shares.unseal(row);
    } else if (this.o.store.active(r.keyId, r.keyVersion)) {
      throw new SignerError('KEY_EXISTS', `cosigner ${id} already holds a share of ${r.keyId} v${r.keyVersion}`);
    }
    // Recorded before any state of this ceremony exists here; another ceremony of the same key
    // version (running, or with a pending share) is never replaced: the coordinator that
    // started it commits or discards it by its own session id.
    const begun = this.o.store.beginCeremony(
      { sessionId: r.sessionId, keyId: r.keyId, version: r.keyVersion, kind, epoch: r.epoch },
      new Date(),
      CEREMONY_TTL_MS,
    );
    if (begun === 'session-used') throw new SignerError('REQUEST_INVALID', 'session_id must be new');
    if (begun !== 'ok') {
      old?.secret.signingShare.fill(0);
      throw new SignerError(
        'KEY_ROTATION_CONFLICT',
        `cosigner ${id} has ceremony ${begun.busy} of ${r.keyId} v${r.keyVersion} in progress; it must finish first`,
        { cosigner: String(id), sessionId: begun.busy },
      );
    }
    const params: CeremonyParams = {
      sessionId: r.sessionId,
      kind,
      keyId: r.keyId,
      version: r.keyVersion,
      algorithm: r.algorithm,
      groupId: r.groupId,
      minSigners: r.minSigners,
      participants,
      epoch: r.epoch,
    };
    try {
      const c = new Ceremony(params, id, suite, this.o.identity, old, this.o.faults);
      const out = c.round1();
      this.running.set(r.sessionId, c);
      return out;
    } catch (e) {
      old?.secret.signingShare.fill(0);
      this.o.store.abandonCeremony(r.sessionId);
      throw e;
    }
  }

  /** Checks every round-1 output and answers with this cosigner's encrypted round-2 shares. */
  round2(r: { sessionId: string; round1: Round1Entry[] }): { shares: SealedShare[] } {
    const c = this.get(r.sessionId);
    try {
      return { shares: c.round2(r.round1) };
    } catch (e) {
      return this.blame(c, e);
    }
  }

  /** Opens the shares sent to this cosigner and seals the resulting share as pending. */
  async round3(r: { sessionId: string; shares: SealedShare[] }): Promise<{ publicPackage: string; epoch: number }> {
    const c = this.get(r.sessionId);
    let key: Key;
    try {
      key = c.round3(r.shares);
    } catch (e) {
      return this.blame(c, e);
    }
    const p = c.params;
    const epoch = p.kind === 'dkg' ? 1 : p.epoch + 1;
    try {
      const publicPackage = await this.o.shares.putPending(p, epoch, key);
      return { publicPackage, epoch };
    } catch (e) {
      this.o.store.abandonCeremony(p.sessionId);
      throw e;
    } finally {
      key.secret.signingShare.fill(0);
      c.erase();
      // Round three is the last: what remains of the ceremony is its pending share, in the store.
      this.running.delete(p.sessionId);
    }
  }

  /** Forgets a ceremony's in-memory state (Finish: its pending share is committed or dropped). */
  end(sessionId: string): void {
    this.running.get(sessionId)?.erase();
    this.running.delete(sessionId);
  }

  /** A ceremony that failed here: its rounds are forgotten and it is recorded as discarded. */
  private fail(sessionId: string): void {
    this.end(sessionId);
    this.o.store.abandonCeremony(sessionId);
  }

  private get(sessionId: string): Ceremony {
    for (const [id, c] of this.running) {
      if (Date.now() - c.startedAt <= CEREMONY_TTL_MS) continue;
      this.fail(id);
    }
    const c = this.running.get(sessionId);
    if (!c) {
      const why = `no ceremony ${sessionId} on cosigner ${this.o.id} (expired or never started)`;
      throw new SignerError('CEREMONY_NOT_FOUND', why);
    }
    return c;
  }

  /** Another participant's fault names that cosigner, so the coordinator can report it. */
  private blame(c: Ceremony, e: unknown): never {
    this.fail(c.params.sessionId);
    if (e instanceof ParticipantFault) {
      const culprit = c.cosignerOf(e.participant);
      const what = e.message.replace(/^participant [0-9a-f]+: /, '');
      throw new SignerError('CEREMONY_FAILED', `cosigner ${culprit ?? 'unknown'} broke the ${c.params.kind}: ${what}`, {
        faultyCosigner: String(culprit ?? ''),
        reportedBy: String(this.o.id),
      });
    }
    throw e;
  }
}
