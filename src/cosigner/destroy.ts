import { type AdminSet, approvalsSummary } from '../core/admin/approvals.js';
import { checkCancel, checkDestroyOrder, type DestroyOrder } from '../core/admin/share-destroy.js';
import { SignerError } from '../core/errors.js';
import type { Logger } from '../infra/log.js';
import type { CosignerStore } from './store.js';

/** DestroySharesRequest as proto-loader decodes it. */
export interface DestroySharesRequest {
  keyId: string;
  keyVersion: number;
  sessionId?: string;
  order?: DestroyOrder | null;
}

/** CancelShareDestroyRequest as proto-loader decodes it. */
export interface CancelShareDestroyRequest {
  keyId: string;
  keyVersion: number;
  proposalId: string;
  admin: string;
  signature: Uint8Array;
}

export interface ShareDestructionOptions {
  id: number;
  store: CosignerStore;
  /** The admins pinned in this cosigner's own config; undefined: no committed share is ever destroyed. */
  admins: AdminSet | undefined;
  delayMs: number;
  log: Logger;
  /** Drops a key version's pooled nonces (the signing side's memory). */
  forget(keyId: string, version: number): void;
  /** Ends a running ceremony of this session in memory. */
  endCeremony(sessionId: string): void;
  now?: () => Date;
}

/**
 * How a share leaves this cosigner. The coordinator's certificate alone can remove only what a
 * ceremony of its own left pending. A committed share goes only on the admin quorum's signed
 * order, checked here against this node's own admins: it stops signing at once, and is
 * overwritten after `delayMs`, unless one admin cancels first. Holding the coordinator's
 * certificate (or the signer's host) is therefore never enough to lose a key.
 */
export class ShareDestruction {
  private readonly now: () => Date;

  constructor(private readonly o: ShareDestructionOptions) {
    this.now = o.now ?? (() => new Date());
  }

  destroyShares(r: DestroySharesRequest): { destroyed: number; dueAt: string } {
    const { keyId, keyVersion } = r;
    const meta = { keyId, keyVersion: String(keyVersion), cosigner: String(this.o.id) };
    const hasOrder = !!r.order?.proposalId;
    if (r.sessionId && !hasOrder) return this.discardSession(keyId, keyVersion, r.sessionId, meta);
    const check = checkDestroyOrder(this.o.admins, keyId, keyVersion, r.order);
    if (!check.ok) {
      this.o.log.warn({ ...meta, problem: check.problem, why: check.why }, 'share destroy order refused');
      throw new SignerError('DESTROY_ORDER_INVALID', `cosigner ${this.o.id} refuses to destroy: ${check.why}`, {
        ...meta,
        problem: check.problem,
      });
    }
    const proposalId = r.order!.proposalId;
    const now = this.now();
    const out = this.o.store.orders.schedule(
      { proposalId, keyId, version: keyVersion, approvals: approvalsSummary(check.approvals) },
      now,
      new Date(now.getTime() + this.o.delayMs),
    );
    if (out === 'cancelled') {
      throw new SignerError(
        'DESTROY_ORDER_INVALID',
        `cosigner ${this.o.id}: the order of proposal ${proposalId} was cancelled by an admin; destroying needs a new proposal`,
        { ...meta, problem: 'cancelled', proposal: proposalId },
      );
    }
    // Pooled nonces of a share that no longer signs are dropped at once.
    this.o.forget(keyId, keyVersion);
    this.o.log.warn(
      {
        ...meta,
        proposal: out.proposalId,
        state: out.state,
        shares: out.shares,
        dueAt: out.dueAt.toISOString(),
        approvals: check.approvals.map((a) => a.admin),
      },
      out.state === 'scheduled' ? 'share destruction scheduled by the admin quorum' : 'shares already destroyed',
    );
    return { destroyed: out.shares, dueAt: out.dueAt.toISOString() };
  }

  /** One admin's signed cancel: the share signs again; the order is never accepted here again. */
  cancel(r: CancelShareDestroyRequest): { restored: number } {
    const subject = { keyId: r.keyId, version: r.keyVersion, proposalId: r.proposalId };
    const meta = { keyId: r.keyId, cosigner: String(this.o.id), proposal: r.proposalId, admin: r.admin };
    const why = checkCancel(this.o.admins, subject, r.admin, r.signature);
    if (why) {
      this.o.log.warn({ ...meta, why }, 'share destroy cancel refused');
      throw new SignerError('APPROVAL_INVALID', `cosigner ${this.o.id} refuses the cancel: ${why}`, meta);
    }
    // Past the delay a cancel is too late even if the timer has not run yet: the shares are
    // overwritten now, so the answer does not depend on when the timer last ran.
    this.sweep();
    if (!this.o.store.orders.cancel(subject, r.admin, this.now())) {
      const mine = this.o.store.orders
        .all()
        .find((d) => d.proposalId === r.proposalId && d.keyId === r.keyId && d.version === r.keyVersion);
      const state = mine?.state ?? 'unknown';
      // Another order open for the version: this cancel restores nothing (the signer reads it).
      const open = this.o.store.orders.of(r.keyId, r.keyVersion)?.proposalId;
      const late = state === 'done' ? ': the delay passed and the shares were overwritten' : '';
      throw new SignerError(
        'PROPOSAL_CLOSED',
        `cosigner ${this.o.id} has no scheduled destruction of ${r.keyId} v${r.keyVersion} by proposal ${r.proposalId} (${state}${late})`,
        { ...meta, state, ...(open ? { open } : {}) },
      );
    }
    const restored = this.o.store.all().filter((s) => s.keyId === r.keyId && s.version === r.keyVersion).length;
    this.o.log.warn({ ...meta, restored }, 'share destruction cancelled by an admin; the share signs again');
    return { restored };
  }

  /** Overwrites the shares whose delay has passed. Called by the cosigner's timer. */
  sweep(): number {
    const done = this.o.store.orders.overwriteDue(this.now());
    for (const d of done) {
      this.o.forget(d.keyId, d.version);
      this.o.log.warn(
        { keyId: d.keyId, version: d.version, proposal: d.proposalId, shares: d.shares, cosigner: String(this.o.id) },
        'threshold shares overwritten after the destroy delay',
      );
    }
    return done.length;
  }

  private discardSession(keyId: string, keyVersion: number, sessionId: string, meta: Record<string, string>) {
    const out = this.o.store.discardSession(keyId, keyVersion, sessionId);
    if (out === 'committed') {
      this.o.log.warn({ ...meta, sessionId }, 'session-scoped destroy of a committed share refused');
      throw new SignerError(
        'DESTROY_ORDER_INVALID',
        `cosigner ${this.o.id}: the share of session ${sessionId} is committed; destroying it needs the admin quorum's order`,
        { ...meta, problem: 'committed', sessionId },
      );
    }
    this.o.endCeremony(sessionId);
    this.o.log.info({ ...meta, sessionId, destroyed: out }, 'pending ceremony share removed');
    return { destroyed: out, dueAt: '' };
  }
}
