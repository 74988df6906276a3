import { createHash } from 'node:crypto';
import type { CancelSubject, DestroyOrder } from '../../core/admin/share-destroy.js';
import { type AuditDraft, eventDraft } from '../../core/audit/draft.js';
import { SignerError } from '../../core/errors.js';
import type { Logger } from '../../infra/log.js';
import type { AuditStore } from '../../infra/store/audit.js';
import type { KeyRecord } from '../../infra/store/store.js';
import { type CosignerClients, CosignerFault } from './cosigner-client.js';

/**
 * The signer's part in destroying a threshold key's shares (README "Destroying threshold
 * shares"): it carries the admin quorum's order and an admin's cancel to every cosigner, which
 * each check them against their own pinned admins; the signer's word counts for nothing there.
 * What was sent and what each cosigner answered are audited here.
 */
export class ShareDestroys {
  constructor(
    private readonly cosigners: CosignerClients,
    private readonly audit: Pick<AuditStore, 'appendAudit'>,
    private readonly log?: Logger,
  ) {}

  /**
   * Forwards the admin quorum's order to destroy a key version's shares to every cosigner, which
   * checks it against its own admins and schedules the overwrite after its own delay. The order
   * and each cosigner's answer are audited. Resolves with each cosigner's "id:dueAt".
   */
  async destroy(key: Pick<KeyRecord, 'keyId' | 'version' | 'threshold'>, order: DestroyOrder): Promise<string> {
    const ids = key.threshold?.cosigners ?? this.cosigners.ids;
    const { keyId, version } = key;
    const approvals = order.approvals.map((a) => ({ admin: a.admin, signature: Buffer.from(a.signature) }));
    const request = { keyId, keyVersion: version, order: { ...order, approvals } };
    const about = { keyId, keyVersion: version };
    const base = {
      proposal: order.proposalId,
      cosigners: ids.join(','),
      approvers: approvals.map((a) => a.admin).join(','),
    };
    await this.audit.appendAudit([
      eventDraft('shares.destroy-order', new Date(), 'quorum', { ...about, intent: base }),
    ]);
    const done = await Promise.allSettled(
      ids.map((id) => this.cosigners.call<{ destroyed: number; dueAt: string }>(id, 'DestroyShares', request)),
    );
    const outcome = done.map((d, i) =>
      d.status === 'fulfilled' ? `${ids[i]}:${d.value.dueAt}` : `${ids[i]}:${(d.reason as Error).message}`,
    );
    const missed = ids.filter((_, i) => done[i]!.status === 'rejected');
    const intent = { ...base, outcome: outcome.join(';') };
    await this.audit.appendAudit([eventDraft('shares.destroy-result', new Date(), 'quorum', { ...about, intent })]);
    if (missed.length) {
      const why = done.flatMap((d) => (d.status === 'rejected' ? [(d.reason as Error).message] : [])).join('; ');
      this.log?.error(
        { keyId, version, proposal: order.proposalId, outcome },
        'cosigners refused or missed a destroy order',
      );
      throw new SignerError(
        'THRESHOLD_UNAVAILABLE',
        `cosigners ${missed.join(', ')} did not accept the destroy order (${why}); the others stopped signing with it`,
        { cosigners: missed.join(',') },
      );
    }
    this.log?.warn({ keyId, version, proposal: order.proposalId, outcome }, 'threshold shares ordered destroyed');
    return outcome.join(',');
  }

  /**
   * Forwards one admin's signed cancel (already checked by the caller against the signer's
   * admins) to every cosigner of the version; audited before and after. Resolves with each
   * cosigner's "id:restored" ("id:cancelled" for one that had already restored it under this
   * order, the retry after a cosigner was missed). Only when every share is back does
   * `restore` run: it commits the signer's own state change together with the result entry.
   * Refused with PROPOSAL_CLOSED (metadata `state`) when there is nothing to cancel: `done`
   * when the cosigners' delay passed and a share was overwritten (too late, whatever the
   * others say), `cancelled` for a replay, `unknown` for an order they never had.
   */
  async cancel(
    key: Pick<KeyRecord, 'keyId' | 'version' | 'threshold'>,
    c: CancelSubject & { admin: string; signature: Uint8Array },
    by: string,
    restore?: (audit: AuditDraft[], at: Date) => Promise<boolean>,
  ): Promise<string[]> {
    const ids = key.threshold?.cosigners ?? this.cosigners.ids;
    const about = { keyId: key.keyId, keyVersion: key.version };
    const signatureHash = createHash('sha256').update(c.signature).digest('hex');
    const base = { proposal: c.proposalId, admin: c.admin, signatureHash, cosigners: ids.join(',') };
    await this.audit.appendAudit([eventDraft('shares.destroy-cancel', new Date(), by, { ...about, intent: base })]);
    const request = {
      keyId: key.keyId,
      keyVersion: key.version,
      proposalId: c.proposalId,
      admin: c.admin,
      signature: Buffer.from(c.signature),
    };
    const done = await Promise.allSettled(
      ids.map((id) => this.cosigners.call<{ restored: number }>(id, 'CancelShareDestroy', request)),
    );
    const answers = done.map((d, i) => answerOf(ids[i]!, d));
    const outcome = answers.map((a) => `${a.id}:${a.text}`);
    const late = answers.filter((a) => a.closed === 'done').map((a) => a.id);
    const missed = answers.filter((a) => !a.ok).map((a) => a.id);
    const restoredNow = answers.some((a) => a.ok && a.closed === undefined);
    const back = missed.length === 0 && restoredNow;
    const at = new Date();
    const result = (extra: Record<string, string> = {}) => [
      eventDraft('shares.destroy-cancel-result', at, by, {
        ...about,
        intent: { ...base, outcome: outcome.join(';'), ...extra },
      }),
    ];
    // The signer's version and the entry that says why it changed commit together, or neither
    // (the version may have moved meanwhile on another replica: then the entry alone).
    const restored = back && restore ? await restore(result({ keyState: 'disabled' }), at) : false;
    if (!restored) await this.audit.appendAudit(result());
    const closed = answers.filter((a) => a.closed !== undefined);
    if (late.length || (!restoredNow && closed.length === answers.length)) {
      const state = late.length ? 'done' : [...new Set(closed.map((a) => a.closed))].sort().join(',');
      const why = late.length
        ? `the cosigners' delay passed: cosigners ${late.join(', ')} overwrote their shares of "${key.keyId}" v${key.version}; nothing to cancel`
        : `no cosigner has a scheduled destruction of "${key.keyId}" v${key.version} by proposal ${c.proposalId} (${state})`;
      throw new SignerError('PROPOSAL_CLOSED', why, {
        proposal: c.proposalId,
        state,
        cosigners: (late.length ? late : closed.map((a) => a.id)).join(','),
      });
    }
    if (missed.length) {
      throw new SignerError(
        'THRESHOLD_UNAVAILABLE',
        `cosigners ${missed.join(', ')} did not cancel (${outcome.join('; ')})`,
        { cosigners: missed.join(',') },
      );
    }
    this.log?.warn(
      { ...about, proposal: c.proposalId, admin: c.admin, outcome },
      'share destruction cancelled by an admin',
    );
    return outcome;
  }
}

/**
 * One cosigner's answer to a cancel. `ok`: its share signs again, now or (PROPOSAL_CLOSED,
 * `cancelled`, no other order open for the version) by an earlier cancel of this order.
 * `closed`: the cosigner's PROPOSAL_CLOSED state.
 */
function answerOf(
  id: number,
  d: PromiseSettledResult<{ restored: number }>,
): { id: number; ok: boolean; text: string; closed?: string } {
  if (d.status === 'fulfilled') return { id, ok: true, text: String(d.value.restored) };
  const refusal = d.reason instanceof CosignerFault ? d.reason.refusal : undefined;
  if (refusal?.reason !== 'PROPOSAL_CLOSED') return { id, ok: false, text: (d.reason as Error).message };
  const closed = refusal.metadata.state ?? 'unknown';
  const ok = closed === 'cancelled' && !refusal.metadata.open;
  return { id, ok, closed, text: ok ? 'cancelled' : (d.reason as Error).message };
}
