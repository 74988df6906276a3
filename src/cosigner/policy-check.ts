import { createHash } from 'node:crypto';
import { type AdminSet, checkQuorum } from '../core/admin/approvals.js';
import { SignerError } from '../core/errors.js';
import { canonicalJson } from '../core/policy/canonical.js';
import { checkFreshness, evaluate, type VelocityUsage } from '../core/policy/evaluate.js';
import { type CompiledPolicy, compilePolicy, policyMatches } from '../core/policy/schema.js';
import type { CosignerRecords, PolicyUse } from './records.js';
import type { VerifiedRequest } from './request-check.js';
import type { WirePolicy } from './share-request.js';

/** The policy a share was checked under, recorded with the grant. */
export interface PolicyDecision {
  policy: CompiledPolicy;
  use: PolicyUse;
}

/** Rank of a key pattern for a key, as core/policy/schema.ts selectPolicy ranks it. */
const rankOf = (patterns: readonly string[], keyId: string): number =>
  Math.max(
    -1,
    ...patterns
      .filter((k) => policyMatches(k, keyId))
      .map((k) => (k.endsWith('*') ? k.length - 1 : Number.MAX_SAFE_INTEGER)),
  );

/** Everything a policy version's trust rests on: name, version, document, proposal, approvals. */
const evidenceId = (w: WirePolicy): string =>
  createHash('sha256')
    .update(
      JSON.stringify([
        w.name,
        w.version,
        w.document,
        w.proposalId,
        w.approvals.map((a) => [a.admin, Buffer.from(a.signature).toString('hex'), a.atMs]),
      ]),
    )
    .digest('hex');

/**
 * The cosigner's own policy check (README "What a cosigner checks"). The coordinator forwards
 * the stored policy version that governs the key; this cosigner trusts it only when k of the
 * admins its own config pins approved exactly that version (core/admin: the proposal's bytes
 * rebuilt here from the name, the base version and the document), or when the document is a
 * policy text its own config pins. It never signs under an older version of a policy than one it
 * already signed under, nor moves a key to a policy that governs it less specifically than the
 * one it used before (a forwarded catch-all in place of the key's own policy). Then it runs the
 * signer's rules that apply to a threshold payload (core/policy/evaluate.ts): freshness against
 * this cosigner's clock, traffic class, client, payload kind, batch size, and velocity counted
 * from the shares this cosigner granted.
 */
export class PolicyCheck {
  private pinned = new Map<string, string>();
  /** Verified and compiled versions by their evidence (evidenceId). */
  private readonly cache = new Map<string, CompiledPolicy>();

  constructor(
    private readonly cosignerId: number,
    private readonly records: CosignerRecords,
    private admins: AdminSet | undefined,
    policies: Record<string, unknown>,
  ) {
    this.update(admins, policies);
  }

  /** Applies reloaded admins and pinned policy texts from the next call on. */
  update(admins: AdminSet | undefined, policies: Record<string, unknown>): void {
    this.admins = admins;
    this.cache.clear();
    this.pinned = new Map(Object.entries(policies).map(([name, doc]) => [name, canonicalJson(doc)]));
  }

  /** The governing policy, trusted and allowing this share; the signer's refusal otherwise. */
  decide(
    share: { keyId: string; requestId: string; payloadKind: string; policy?: WirePolicy | null | undefined },
    req: VerifiedRequest,
    now: Date,
  ): PolicyDecision {
    const { keyId, requestId, policy: wire } = share;
    const cosigner = String(this.cosignerId);
    const policy = this.trusted(keyId, wire);
    const deny = (d: ReturnType<typeof evaluate>) => {
      if (!d.allow) throw new SignerError(d.reason, `cosigner ${cosigner}: ${d.message}`, { ...d.metadata, cosigner });
    };
    deny(checkFreshness(policy, req.clientTime, now));
    if (req.traffic === 'batch' && policy.batch && req.payloads > policy.batch.maxItems)
      throw new SignerError(
        'BATCH_LIMIT',
        `cosigner ${cosigner}: batch of ${req.payloads} items exceeds the policy limit ${policy.batch.maxItems}`,
        { policy: policy.name, rule: 'batch.maxItems', cosigner },
      );
    const usage: VelocityUsage[] = policy.velocity.map((v) => ({
      count: this.records.grantsSince(
        v.scope,
        v.scope === 'key' ? keyId : req.client,
        new Date(now.getTime() - v.windowSeconds * 1000),
        { client: req.client, requestId },
      ),
      value: 0n,
      tokens: new Map(),
    }));
    const payloadKind = share.payloadKind === 'digest' ? 'digest' : 'message';
    deny(evaluate(policy, { client: req.client, keyId, traffic: req.traffic, kind: payloadKind }, usage));
    const use = { name: policy.name, version: wire!.version, keyId, rank: rankOf(policy.keys, keyId) };
    return { policy, use };
  }

  /**
   * The forwarded version compiled, if this cosigner trusts it for the key. Its approvals and
   * compilation are cached by the exact evidence (a version is immutable on the signer, so the
   * same evidence comes with every share); what depends on the key and the floors is not.
   */
  private trusted(keyId: string, wire: WirePolicy | null | undefined): CompiledPolicy {
    if (!wire?.name) return this.verified(keyId, wire);
    const id = evidenceId(wire);
    let policy = this.cache.get(id);
    if (!policy) {
      policy = this.verified(keyId, wire);
      if (this.cache.size >= 256) this.cache.clear();
      this.cache.set(id, policy);
    }
    return this.governs(keyId, wire, policy);
  }

  /** Approvals (or the pinned text) checked and the document compiled; the signer's refusal otherwise. */
  private verified(keyId: string, wire: WirePolicy | null | undefined): CompiledPolicy {
    const cosigner = String(this.cosignerId);
    if (!wire?.name)
      throw new SignerError('NO_POLICY', `cosigner ${cosigner}: no policy came with the request for key "${keyId}"`, {
        keyId,
        cosigner,
      });
    const meta = { keyId, policy: wire.name, version: String(wire.version), cosigner };
    const unavailable = (why: string, message: string) =>
      new SignerError(
        'POLICY_UNAVAILABLE',
        `cosigner ${cosigner}: policy "${wire.name}" version ${wire.version} ${message}`,
        {
          ...meta,
          why,
        },
      );
    let doc: unknown;
    try {
      doc = JSON.parse(wire.document);
    } catch {
      throw unavailable('invalid', 'is not JSON');
    }
    if (!wire.proposalId) {
      const pinned = this.pinned.get(wire.name);
      let text: string | undefined;
      try {
        text = canonicalJson(doc);
      } catch {
        text = undefined;
      }
      if (pinned === undefined || text !== pinned)
        throw unavailable('unapproved', "is neither approved by the admin quorum nor this cosigner's pinned text");
    } else {
      if (!this.admins) throw unavailable('unapproved', 'comes with approvals but this cosigner pins no admins');
      const subject = {
        kind: 'policy' as const,
        id: wire.proposalId,
        target: wire.name,
        baseVersion: wire.version - 1,
        document: wire.document,
      };
      const approvals = wire.approvals.map((a) => ({
        admin: a.admin,
        signature: Uint8Array.from(a.signature),
        at: new Date(Number(a.atMs)),
      }));
      let reached: Date | null = null;
      try {
        reached = wire.version >= 1 ? checkQuorum(this.admins, subject, approvals).reachedAt : null;
      } catch {
        reached = null;
      }
      if (!reached) throw unavailable('unapproved', `lacks ${this.admins.quorum} valid admin approvals`);
    }
    try {
      return compilePolicy(doc, wire.name);
    } catch {
      throw unavailable('invalid', 'does not compile');
    }
  }

  /** Whether a trusted version may govern the key here: it covers it, and is no downgrade. */
  private governs(keyId: string, wire: WirePolicy, policy: CompiledPolicy): CompiledPolicy {
    const cosigner = String(this.cosignerId);
    const meta = { keyId, policy: wire.name, version: String(wire.version), cosigner };
    const unavailable = (why: string, message: string) =>
      new SignerError(
        'POLICY_UNAVAILABLE',
        `cosigner ${cosigner}: policy "${wire.name}" version ${wire.version} ${message}`,
        { ...meta, why },
      );
    const rank = rankOf(policy.keys, keyId);
    if (rank < 0)
      throw new SignerError('NO_POLICY', `cosigner ${cosigner}: policy "${wire.name}" does not govern key "${keyId}"`, {
        ...meta,
      });
    const floor = this.records.policyFloor(wire.name);
    if (wire.version < floor) throw unavailable('downgrade', `is older than version ${floor}, already signed under`);
    const before = this.records.keyPolicy(keyId);
    if (before && before.policy !== wire.name && rank <= before.rank)
      throw unavailable('downgrade', `does not govern key "${keyId}" (policy "${before.policy}" does)`);
    return policy;
  }
}
