import { createHash } from 'node:crypto';
import type { CancelSubject, DestroyOrder } from '../../core/admin/share-destroy.js';
import { eventDraft } from '../../core/audit/draft.js';
import { SignerError } from '../../core/errors.js';
import type { Logger } from '../../infra/log.js';
import type { AuditStore } from '../../infra/store/audit.js';
import type { KeyRecord } from '../../infra/store/store.js';
import type { CosignerClients } from './cosigner-client.js';

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
   * cosigner's "id:restored".
   */
  async cancel(
    key: Pick<KeyRecord, 'keyId' | 'version' | 'threshold'>,
    c: CancelSubject & { admin: string; signature: Uint8Array },
    by: string,
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
    const outcome = done.map((d, i) =>
      d.status === 'fulfilled' ? `${ids[i]}:${d.value.restored}` : `${ids[i]}:${(d.reason as Error).message}`,
    );
    const intent = { ...base, outcome: outcome.join(';') };
    await this.audit.appendAudit([eventDraft('shares.destroy-cancel-result', new Date(), by, { ...about, intent })]);
    const missed = ids.filter((_, i) => done[i]!.status === 'rejected');
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
