import { type AccessDocument, accessLoosenings } from '../../core/admin/access.js';
import { type AdminSet, checkQuorum, type QuorumCheck } from '../../core/admin/approvals.js';
import type { ProposalSubject } from '../../core/admin/proposal.js';
import { loosenings } from '../../core/policy/loosening.js';
import { type CompiledPolicy, compilePolicy, findAmbiguities } from '../../core/policy/schema.js';
import { parseAccessDocument } from '../../infra/config/access.js';
import type { Logger } from '../../infra/log.js';
import type { PolicyRecord, ProposalRecord } from '../../infra/store/store.js';

/** What a proposal amounts to now: its valid approvals, what it loosens, when it may apply. */
export interface Assessment {
  check: QuorumCheck;
  /** Why it waits for the delay (empty: it only tightens and applies once approved). */
  loosenings: string[];
  /** When the quorum was reached (the later of QuorumClock's and the audit log's time); null while short of it. */
  approvedAt: Date | null;
  /** When it applies: the quorum's approval plus the delay if it loosens; null while short of the quorum. */
  dueAt: Date | null;
  /** Why it can never apply as stored (stale base, invalid document); null when it can. */
  blocked: string | null;
  /** policy proposals: the document compiled. */
  compiled: CompiledPolicy | null;
}

/** The access document in force, the newest stored version and who stored it (proposals' base). */
export interface AccessInForce {
  document: AccessDocument | null;
  latestStored: number;
  /** The newest stored version's writer and text (to tell a version copied in by another writer). */
  latest?: { updatedBy: string; document: string };
}

export const subjectOf = (p: ProposalRecord): ProposalSubject => ({
  kind: p.kind,
  id: p.id,
  target: p.target,
  baseVersion: p.baseVersion,
  document: p.document,
});

/**
 * Re-verifies a proposal's approvals against what is stored now and works out when it applies.
 * `records`/`compiled`: the stored (activated) policy versions. A policy proposal is blocked
 * when the policy moved on since it was proposed (its diff and loosenings were reviewed against
 * another base), or when its document no longer compiles or clashes with another policy.
 */
export function assess(
  admins: AdminSet,
  p: ProposalRecord,
  records: ReadonlyMap<string, PolicyRecord>,
  compiled: readonly CompiledPolicy[],
  clock?: QuorumClock,
  access?: AccessInForce,
): Assessment {
  const check = checkQuorum(admins, subjectOf(p), p.approvals);
  const seen = check.reachedAt && (clock ? clock.reached(p.id, check.reachedAt) : check.reachedAt);
  // The audit log's time of the quorum (undefined: no log consulted; null: not in the log).
  const logged = check.reachedAt ? clock?.logged(p) : undefined;
  const from = seen && logged ? new Date(Math.max(seen.getTime(), logged.getTime())) : seen;
  const delayed = (loose: string[]) => {
    if (!from || loose.length === 0) return from;
    // A delay whose start the log cannot show is not counted at all (it waits for the log).
    if (logged === null) return null;
    return new Date(from.getTime() + admins.delaySeconds * 1000);
  };
  if (p.kind === 'access') return assessAccess(p, check, from, delayed, access);
  if (p.kind !== 'policy') {
    const loose = [
      p.kind === 'destroy-key' ? 'destroys a key version (irreversible)' : `lifts a freeze of ${p.target}`,
    ];
    return { check, approvedAt: from, loosenings: loose, dueAt: delayed(loose), blocked: null, compiled: null };
  }
  const base = records.get(p.target)?.version ?? 0;
  let next: CompiledPolicy;
  try {
    next = compilePolicy(JSON.parse(p.document), p.target);
  } catch (e) {
    return {
      check,
      approvedAt: from,
      loosenings: [],
      dueAt: null,
      blocked: `the document is invalid: ${(e as Error).message}`,
      compiled: null,
    };
  }
  const current = compiled.find((c) => c.name === p.target) ?? null;
  const loose = loosenings(current, next);
  const clash = findAmbiguities([...compiled.filter((c) => c.name !== p.target), next]);
  const blocked =
    base !== p.baseVersion && !storedAsItself(records.get(p.target), p)
      ? `policy "${p.target}" is at version ${base}, not the base version ${p.baseVersion} it was proposed against`
      : clash.length
        ? `key pattern "${clash[0]!.pattern}" is already governed by another policy`
        : null;
  return {
    check,
    approvedAt: from,
    loosenings: loose,
    dueAt: blocked ? null : delayed(loose),
    blocked,
    compiled: next,
  };
}

/**
 * An access proposal: what it loosens against the access document in force, blocked when the
 * stored versions moved on since it was proposed or its document is invalid.
 */
function assessAccess(
  p: ProposalRecord,
  check: QuorumCheck,
  from: Date | null,
  delayed: (loose: string[]) => Date | null,
  access: AccessInForce | undefined,
): Assessment {
  const none = { check, approvedAt: from, compiled: null };
  if (!access) return { ...none, loosenings: [], dueAt: null, blocked: 'access is not managed by this signer' };
  let next: AccessDocument;
  try {
    next = parseAccessDocument(p.document);
  } catch (e) {
    return { ...none, loosenings: [], dueAt: null, blocked: `the document is invalid: ${(e as Error).message}` };
  }
  const loose = accessLoosenings(access.document, next);
  const stored =
    access.latestStored === p.baseVersion + 1 &&
    access.latest?.updatedBy === `quorum:${p.id}` &&
    access.latest.document === p.document;
  const blocked =
    access.latestStored !== p.baseVersion && !stored
      ? `access is at version ${access.latestStored}, not the base version ${p.baseVersion} it was proposed against`
      : null;
  return { ...none, loosenings: loose, dueAt: blocked ? null : delayed(loose), blocked };
}

/**
 * Whether the policy's newest stored version is this proposal's own document over its base,
 * written by another writer (a database writer copying it in early): not a reason to fail the
 * proposal. That version is trusted only at the proposal's time (registry.ts), and the signer
 * closes the proposal then without storing it a second time.
 */
export function storedAsItself(latest: PolicyRecord | undefined, p: ProposalRecord): boolean {
  return (
    latest !== undefined &&
    latest.version === p.baseVersion + 1 &&
    latest.updatedBy === `quorum:${p.id}` &&
    latest.document === p.document
  );
}

/**
 * When this process first saw each proposal reach its quorum. An approval's time is a column a
 * database writer can backdate to skip the delay; the delay is therefore counted from the later
 * of the stored time and the moment this process saw the quorum (the approving replica sees it
 * at once, the others within refreshMs). Only what was already approved when the process
 * started is taken at its stored time, so a restart does not restart every delay; with the
 * audit log's time (`logged`) the later of the two counts, so a backdated row moves nothing
 * after a restart either.
 */
export class QuorumClock {
  private readonly seen = new Map<string, number>();
  private started = false;

  constructor(
    private readonly now: () => number = Date.now,
    /** When the audit log says the quorum was reached (FreezeLedger.quorumTime); absent: no log. */
    private readonly log?: (p: ProposalRecord) => Date | null,
  ) {}

  /** The audit log's time of the proposal's quorum: null when the log does not show it; undefined without a log. */
  logged(p: ProposalRecord): Date | null | undefined {
    return this.log?.(p);
  }

  /** Call after the first load: from then on, newly reached quorums are timed by this process. */
  markStarted(): void {
    this.started = true;
  }

  reached(id: string, stored: Date): Date {
    let at = this.seen.get(id);
    if (at === undefined) {
      at = this.started ? Math.max(stored.getTime(), this.now()) : stored.getTime();
      this.seen.set(id, at);
    }
    return new Date(Math.max(at, stored.getTime()));
  }
}

export interface PendingPolicy {
  proposalId: string;
  compiled: CompiledPolicy;
  dueAt: Date;
}

/** Open policy proposals the quorum approved (signatures verified now), with their time to apply. */
export function pendingPolicies(
  admins: AdminSet,
  proposals: readonly ProposalRecord[],
  records: ReadonlyMap<string, PolicyRecord>,
  compiled: readonly CompiledPolicy[],
  clock: QuorumClock,
  log?: Logger,
): PendingPolicy[] {
  const out: PendingPolicy[] = [];
  for (const p of proposals) {
    if (p.kind !== 'policy' || p.state !== 'open') continue;
    const a = assess(admins, p, records, compiled, clock);
    if (a.check.invalid.length) log?.warn({ proposal: p.id, invalid: a.check.invalid }, 'approvals that do not count');
    if (a.dueAt && a.compiled) out.push({ proposalId: p.id, compiled: a.compiled, dueAt: a.dueAt });
  }
  // Two approved proposals for one policy: only the first can apply (the other's base moves on).
  const seen = new Set<string>();
  return out
    .sort((x, y) => x.dueAt.getTime() - y.dueAt.getTime())
    .filter((p) => !seen.has(p.compiled.name) && seen.add(p.compiled.name));
}
