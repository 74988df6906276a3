import type { Round1Entry, Round1Output, SealedShare } from '../core/frost/wire.js';
import type { Hsm } from '../infra/hsm/hsm.js';
import type { Logger } from '../infra/log.js';
import { CosignerCeremonies, type Round1Request } from './ceremonies.js';
import type { CeremonyFaults } from './ceremony.js';
import type { CosignerIdentity } from './identity.js';
import { ShareVault } from './shares.js';
import { type CommitRequest, type CommitResponse, CosignerSigning, type SignShareRequest } from './signing.js';
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
  faults?: CosignerFaults;
}

/**
 * signer.v1.Cosigner as a domain object, one method per RPC: this node's side of DKG, refresh
 * and signing for every threshold key it holds a share of. A share is unsealed by the HSM for
 * one call and erased when it returns. Callers are authenticated before they get here (grpc.ts).
 */
export class CosignerService {
  private readonly ceremonies: CosignerCeremonies;
  private readonly signing: CosignerSigning;

  constructor(private readonly o: CosignerOptions) {
    const shares = new ShareVault(o);
    const { id, store, identity, faults, maxPooledNonces, log } = o;
    this.ceremonies = new CosignerCeremonies({ id, store, shares, identity, ...(faults ? { faults } : {}) });
    const corrupt = faults?.corruptSignShare ? { corruptSignShare: true } : {};
    this.signing = new CosignerSigning({ id, store, shares, maxPooledNonces, log, ...corrupt });
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

  /** Commits (older epochs and their nonces go) or discards a ceremony's pending share. */
  finish(r: { sessionId: string; commit: boolean }): Record<string, never> {
    const { sessionId, commit: keep } = r;
    this.ceremonies.end(sessionId);
    const row = this.o.store.finish(sessionId, keep);
    if (row) {
      this.signing.forget(row.keyId, row.version);
      this.o.log.info({ keyId: row.keyId, version: row.version, epoch: row.epoch }, 'threshold share committed');
    }
    return {};
  }

  /** Signing round one: fresh nonces, kept in memory; their commitments. */
  commit(r: CommitRequest): Promise<CommitResponse> {
    return this.signing.commit(r);
  }

  /** Signing round two: one share, after this cosigner's own replay check. */
  signShare(r: SignShareRequest): Promise<{ share: Uint8Array }> {
    return this.signing.signShare(r);
  }

  /** Destroys every share of a key version held here, and its pooled nonces. */
  destroyShares(r: { keyId: string; keyVersion: number }): { destroyed: number } {
    const { keyId, keyVersion } = r;
    this.signing.forget(keyId, keyVersion);
    const destroyed = this.o.store.destroy(keyId, keyVersion);
    this.o.log.info({ keyId, version: keyVersion, destroyed }, 'threshold shares destroyed');
    return { destroyed };
  }
}
