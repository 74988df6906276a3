import type { AdminSet } from '../core/admin/approvals.js';
import { SignerError } from '../core/errors.js';
import type { Round1Entry, Round1Output, SealedShare } from '../core/frost/wire.js';
import type { Hsm } from '../infra/hsm/hsm.js';
import type { Logger } from '../infra/log.js';
import { CosignerCeremonies, type Round1Request } from './ceremonies.js';
import type { CeremonyFaults } from './ceremony.js';
import { type CancelShareDestroyRequest, type DestroySharesRequest, ShareDestruction } from './destroy.js';
import type { CosignerIdentity } from './identity.js';
import { ShareVault } from './shares.js';
import {
  type CommitRequest,
  type CommitResponse,
  CosignerSigning,
  type ShareChecks,
  type SignShareRequest,
} from './signing.js';
import type { CosignerStore } from './store.js';

/** Test-only misbehaviour (a cheating or faulty cosigner); never set by main.ts. */
export type CosignerFaults = CeremonyFaults & { corruptSignShare?: boolean };

export interface CosignerOptions {
  id: number;
  hsm: Hsm;
  /** CKA_ID of this node's AES sealing key. */
  sealKey: Uint8Array;
  store: CosignerStore;
  maxPooledNonces: number;
  log: Logger;
  /** Signs this cosigner's round-1 outputs and checks the others'. */
  identity: CosignerIdentity;
  /** The client's signature, the quorum's policy, and this cosigner's records and audit log. */
  checks: ShareChecks;
  faults?: CosignerFaults;
  /** The admins pinned in this cosigner's config: only their quorum's order destroys a committed share. */
  admins: AdminSet | undefined;
  /** How long an ordered destruction waits (the share does not sign meanwhile) before the overwrite. */
  shareDestroyDelayMs: number;
  /** Tests: a mocked clock for the destroy delay. */
  now?: () => Date;
}

/**
 * signer.v1.Cosigner as a domain object, one method per RPC: this node's side of DKG, refresh
 * and signing for every threshold key it holds a share of. A share is unsealed by the HSM for a
 * ceremony's call, or for signing while it is in use (shares.ts `use`), and erased after.
 * Callers are authenticated before they get here (grpc.ts).
 */
export class CosignerService {
  private readonly ceremonies: CosignerCeremonies;
  private readonly signing: CosignerSigning;
  private readonly destruction: ShareDestruction;
  private readonly shares: ShareVault;

  constructor(private readonly o: CosignerOptions) {
    const shares = new ShareVault(o);
    this.shares = shares;
    const { id, store, identity, faults, maxPooledNonces, log, checks } = o;
    this.ceremonies = new CosignerCeremonies({ id, store, shares, identity, ...(faults ? { faults } : {}) });
    const corrupt = faults?.corruptSignShare ? { corruptSignShare: true } : {};
    this.signing = new CosignerSigning({ id, shares, maxPooledNonces, log, checks, ...corrupt });
    this.destruction = new ShareDestruction({
      id,
      store,
      admins: o.admins,
      delayMs: o.shareDestroyDelayMs,
      log,
      forget: (k, v) => this.signing.forget(k, v),
      endCeremony: (s) => this.ceremonies.end(s),
      ...(o.now ? { now: o.now } : {}),
    });
  }

  /** Erases the shares unsealed for signing (shutdown). */
  close(): void {
    this.shares.closeAll();
  }

  info(): { cosignerId: number } {
    return { cosignerId: this.o.id };
  }

  /** Starts a DKG or refresh: this cosigner's signed round-1 output. */
  round1(r: Round1Request): Promise<Round1Output> {
    return this.ceremonies.round1(r);
  }

  /** This cosigner's round-2 shares, each encrypted to its receiver. */
  round2(r: { sessionId: string; round1: Round1Entry[] }): { shares: SealedShare[] } {
    return this.ceremonies.round2(r);
  }

  /** The new share, sealed and pending until `finish`; its public package for the coordinator. */
  round3(r: { sessionId: string; shares: SealedShare[] }): Promise<{ publicPackage: string; epoch: number }> {
    return this.ceremonies.round3(r);
  }

  /**
   * Commits (older epochs and their nonces go) or discards the pending share of one ceremony
   * session; CEREMONY_NOT_PENDING when that session has nothing pending here (never started,
   * already committed or discarded): a commit never succeeds without the share it commits.
   */
  finish(r: { sessionId: string; commit: boolean }): Record<string, never> {
    const { sessionId, commit: keep } = r;
    if (!keep) this.ceremonies.end(sessionId);
    const out = this.o.store.finish(sessionId, keep);
    if (out.done === 'not-pending') {
      const state = this.o.store.ceremonyState(sessionId) ?? 'unknown';
      throw new SignerError(
        'CEREMONY_NOT_PENDING',
        `cosigner ${this.o.id} has nothing pending for ceremony ${sessionId} (${state}); nothing to ${keep ? 'commit' : 'discard'}`,
        { cosigner: String(this.o.id), state },
      );
    }
    if (out.done === 'committed') {
      const { row } = out;
      this.signing.forget(row.keyId, row.version);
      this.o.log.info({ keyId: row.keyId, version: row.version, epoch: row.epoch }, 'threshold share committed');
    } else this.o.log.info({ sessionId }, 'threshold ceremony discarded');
    return {};
  }

  /**
   * The share that signs a key version here (epoch, the ceremony that made it, its public
   * package) and where one ceremony stands here: what the coordinator confirms after a commit,
   * and reads at restart to resume or roll back an interrupted ceremony.
   */
  shareStatus(r: { keyId: string; keyVersion: number; sessionId: string }): {
    hasActive: boolean;
    activeEpoch: number;
    activeSessionId: string;
    activePublicPackage: string;
    sessionState: string;
  } {
    const active = this.o.store.active(r.keyId, r.keyVersion);
    const state = r.sessionId ? this.o.store.ceremonyState(r.sessionId) : undefined;
    return {
      hasActive: !!active,
      activeEpoch: active?.epoch ?? 0,
      activeSessionId: active?.sessionId ?? '',
      activePublicPackage: active?.publicPackage ?? '',
      sessionState: state ?? 'none',
    };
  }

  /** Signing round one: fresh nonces, kept in memory; their commitments. */
  commit(r: CommitRequest): Promise<CommitResponse> {
    return this.signing.commit(r);
  }

  /**
   * Signing round two: one share, after this cosigner's own checks of the client's signed
   * request, the quorum's policy and its replay records; granted and refused shares are audited.
   */
  signShare(r: SignShareRequest): Promise<{ share: Uint8Array }> {
    return this.signing.signShare(r);
  }

  /**
   * On the admin quorum's order (checked here): schedules the destruction of a key version's
   * shares, which stop signing at once. With only a session id: removes that ceremony's share
   * while it is still pending. Anything else is refused (destroy.ts).
   */
  destroyShares(r: DestroySharesRequest): { destroyed: number; dueAt: string } {
    return this.destruction.destroyShares(r);
  }

  /** One admin's signed cancel of a scheduled destruction. */
  cancelShareDestroy(r: CancelShareDestroyRequest): { restored: number } {
    return this.destruction.cancel(r);
  }

  /** Overwrites the shares whose destroy delay has passed (the cosigner's timer). */
  sweepDestroyed(): number {
    return this.destruction.sweep();
  }
}
