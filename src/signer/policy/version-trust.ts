import { type AdminSet, checkQuorum } from '../../core/admin/approvals.js';
import { loosenings } from '../../core/policy/loosening.js';
import { type CompiledPolicy, compilePolicy } from '../../core/policy/schema.js';
import type { PolicyRecord, ProposalRecord, Store } from '../../infra/store/store.js';
import type { FreezeLedger } from './freeze-ledger.js';
import { subjectOf } from './pending.js';

/**
 * Which stored policy versions a signer under an admin quorum trusts (README "Admin quorum"):
 * the config file's own text, or a quorum-approved proposal's document over the version before
 * it, and, for a loosening, only once its delay has passed since the quorum the audit log
 * records. Anything else refuses its policy's keys (registry.ts).
 */
export class PolicyVersionTrust {
  /** The config file's policy texts: trusted as the file is. */
  private configTexts = new Map<string, string>();

  constructor(
    private readonly store: Pick<Store, 'policyHistory'>,
    private readonly admins: AdminSet,
    /** Cancellations and quorum times from the audit log; absent: neither is checked. */
    private readonly ledger?: Pick<FreezeLedger, 'isCancelled' | 'quorumTime'>,
  ) {}

  setConfigTexts(texts: Map<string, string>): void {
    this.configTexts = texts;
  }

  /**
   * Under an admin quorum a stored version is trusted only when it is the config file's own text
   * for that policy (the root of trust, with the admins' keys) or the document of a policy
   * proposal that replaced version n - 1 and whose approvals verify now, against the bytes as
   * stored. Returns why not, or null.
   */
  private unapproved(r: PolicyRecord, proposals: readonly ProposalRecord[]): string | null {
    const admins = this.admins;
    if (r.updatedBy === 'config' && this.configTexts.get(r.name) === r.document) return null;
    const id = r.updatedBy.startsWith('quorum:') ? r.updatedBy.slice('quorum:'.length) : null;
    const p = id ? proposals.find((x) => x.id === id) : undefined;
    if (!p) return `updated by "${r.updatedBy}": no approved proposal and not the config's text`;
    if (p.kind !== 'policy' || p.target !== r.name || p.baseVersion !== r.version - 1 || p.document !== r.document)
      return `proposal ${p.id} is not this version's (policy, base version and document must match)`;
    if (!checkQuorum(admins, subjectOf(p), p.approvals).reachedAt)
      return `proposal ${p.id} lacks ${admins.quorum} valid approvals`;
    if (this.ledger?.isCancelled(p.id)) return `proposal ${p.id} was cancelled (audit log)`;
    return null;
  }

  /**
   * `unapproved`, and then when: a quorum-approved version that loosens its base (the version
   * before it, itself trusted) is trusted only once the delay has passed since the quorum the
   * audit log records, so a database writer who copies an approved loosening in as a version
   * gains nothing before the admins' time to cancel it is over. The base's history is read only
   * while such a version is within its delay.
   */
  async untrusted(r: PolicyRecord, proposals: readonly ProposalRecord[], now: number): Promise<string | null> {
    const why = this.unapproved(r, proposals);
    if (why || !this.ledger || !r.updatedBy.startsWith('quorum:')) return why;
    const p = proposals.find((x) => x.id === r.updatedBy.slice('quorum:'.length))!;
    const reached = this.ledger.quorumTime(p);
    const due = reached && reached.getTime() + this.admins.delaySeconds * 1000;
    if (due !== null && due <= now) return null;
    const loose = await this.looseningsOf(r, proposals, now);
    if (loose.length === 0) return null;
    return due === null
      ? `proposal ${p.id} loosens the policy (${loose[0]}) and the audit log does not show its quorum`
      : `proposal ${p.id} loosens the policy (${loose[0]}); its delay runs until ${new Date(due).toISOString()} (audit log)`;
  }

  /** What version r loosens against the version before it (anything, when that one is not trusted). */
  private async looseningsOf(r: PolicyRecord, proposals: readonly ProposalRecord[], now: number): Promise<string[]> {
    let next: CompiledPolicy;
    try {
      next = compilePolicy(JSON.parse(r.document), r.name);
    } catch {
      return ['the document does not compile'];
    }
    const base = (await this.store.policyHistory(r.name)).find((v) => v.version === r.version - 1);
    if (!base) return loosenings(null, next);
    if (await this.untrusted(base, proposals, now)) return ['the version before it is not trusted'];
    try {
      return loosenings(compilePolicy(JSON.parse(base.document), base.name), next);
    } catch {
      return ['the version before it does not compile'];
    }
  }
}
