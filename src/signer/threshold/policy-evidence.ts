import type { WirePolicy } from '../../core/admin/wire-policy.js';
import type { PolicyRecord, ProposalRecord } from '../../infra/store/store.js';

export type { WirePolicy };

/**
 * What the coordinator forwards to each cosigner about the policy governing a key: the stored
 * version and, when a quorum's proposal made it, that proposal's approvals, so the cosigner can
 * verify them itself against the admin keys it pins (README "What a cosigner checks"). A
 * version is immutable once stored, so each is looked up once.
 */
export class PolicyEvidence {
  private readonly cache = new Map<string, WirePolicy>();

  constructor(
    private readonly source: {
      /** The stored version that governs the key now (PolicyRegistry.recordForKey). */
      recordForKey(keyId: string): PolicyRecord;
      listProposals(): Promise<ProposalRecord[]>;
    },
  ) {}

  /** The governing version's evidence; undefined when no policy governs the key (the cosigner refuses). */
  async forKey(keyId: string): Promise<WirePolicy | undefined> {
    let r: PolicyRecord;
    try {
      r = this.source.recordForKey(keyId);
    } catch {
      return undefined;
    }
    const k = `${r.name}@${r.version}`;
    const hit = this.cache.get(k);
    if (hit) return hit;
    const base = { name: r.name, version: r.version, document: r.document };
    const id = r.updatedBy.startsWith('quorum:') ? r.updatedBy.slice('quorum:'.length) : '';
    const p = id ? (await this.source.listProposals()).find((x) => x.id === id) : undefined;
    const wire: WirePolicy = {
      ...base,
      proposalId: p ? p.id : '',
      approvals: (p?.approvals ?? []).map((a) => ({
        admin: a.admin,
        signature: Buffer.from(a.signature),
        atMs: String(a.at.getTime()),
      })),
    };
    if (this.cache.size > 1024) this.cache.clear();
    this.cache.set(k, wire);
    return wire;
  }
}
