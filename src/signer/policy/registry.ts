import { createHash } from 'node:crypto';
import { type AdminSet, checkQuorum } from '../../core/admin/approvals.js';
import type { AuditDraft } from '../../core/audit/draft.js';
import { eventDraft } from '../../core/audit/draft.js';
import { SignerError } from '../../core/errors.js';
import {
  type CompiledPolicy,
  compilePolicy,
  findAmbiguities,
  PolicyError,
  selectPolicy,
} from '../../core/policy/schema.js';
import type { Logger } from '../../infra/log.js';
import type { Metrics } from '../../infra/metrics.js';
import type { FreezeRecord, PolicyRecord, ProposalRecord, Store } from '../../infra/store/store.js';
import type { FreezeLedger } from './freeze-ledger.js';
import { type PendingPolicy, pendingPolicies, QuorumClock, subjectOf } from './pending.js';
import { PolicyVersionTrust } from './version-trust.js';

const NAME = /^[a-z0-9][a-z0-9._-]{0,63}$/;

/**
 * Named policies: the store keeps every version; this holds the compiled latest versions and
 * swaps them as a whole, so a request sees either the old set or the new one, never a mix.
 * Replicas pick up each other's changes on `refresh`. Every version is stored together with its
 * audit entry (one store transaction), whoever sets it: an admin, or the config at start.
 */
export class PolicyRegistry {
  private compiled: CompiledPolicy[] = [];
  /** Latest versions that do not compile: they still govern their patterns, by refusing. */
  private broken: BrokenPolicy[] = [];
  private records = new Map<string, PolicyRecord>();
  /** Under a quorum: which stored versions are trusted (the config's texts are set by seed()). */
  private readonly trust: PolicyVersionTrust | undefined;
  private timer: NodeJS.Timeout | undefined;
  /** Quorum-approved policy versions waiting for their time (verified at the last refresh). */
  private pending: PendingPolicy[] = [];
  private frozen: { key: Set<string>; policy: Set<string> } = { key: new Set(), policy: new Set() };
  /** Freezes the audit log proves (`kind:target`), kept whatever happens to the freezes table. */
  private logFrozen = new Set<string>();
  /** Why the audit log cannot say what is frozen (then nothing is signed); null while it can. */
  private ledgerBroken: string | null = null;
  /** When this process (or, later, the audit log) saw each quorum reached: the delay's start. */
  readonly clock: QuorumClock;
  /** Called when a read finds an approved version due, so the store catches up (proposals.ts). */
  onDue: () => void = () => {};

  constructor(
    private readonly store: Store,
    private readonly log?: Logger,
    /** With an admin quorum, only approved proposals change policies (README "Admin quorum"). */
    readonly admins?: AdminSet,
    private readonly metrics?: Pick<Metrics, 'policiesInvalid'>,
    /** Under a quorum: freezes read from the audit log (a deleted row does not unfreeze). */
    private readonly ledger?: FreezeLedger,
  ) {
    this.clock = new QuorumClock(Date.now, ledger && ((p) => ledger.quorumTime(p)));
    this.trust = admins && new PolicyVersionTrust(store, admins, ledger);
  }

  /**
   * Records config policies that changed since config last set them (a policy an admin changed
   * later stays as the admin left it until the config's own text changes). Invalid or ambiguous
   * config policies throw PolicyError naming `policies.<name>`. Returns the versions recorded.
   */
  async seed(config: Record<string, unknown>, now: Date): Promise<PolicyRecord[]> {
    const compiled = Object.entries(config).map(([name, doc]) => {
      if (!NAME.test(name)) throw new PolicyError(`policies.${name}: a policy name is 1..64 of [a-z0-9._-]`);
      try {
        return compilePolicy(doc, name);
      } catch (e) {
        if (e instanceof PolicyError)
          throw new PolicyError(e.issues.map((i) => `policies.${name}.${i}`).join('\n'), e.issues);
        throw e;
      }
    });
    const clash = findAmbiguities(compiled);
    if (clash.length)
      throw new PolicyError(
        `policies: key pattern "${clash[0]!.pattern}" is claimed by ${clash[0]!.policies.join(' and ')}`,
      );
    const recorded: PolicyRecord[] = [];
    this.trust?.setConfigTexts(new Map(Object.entries(config).map(([name, doc]) => [name, JSON.stringify(doc)])));
    for (const [name, doc] of Object.entries(config)) {
      const text = JSON.stringify(doc);
      const history = await this.store.policyHistory(name);
      const lastByConfig = history.filter((r) => r.updatedBy === 'config').pop();
      if (lastByConfig?.document === text) continue;
      // Under a quorum the config file only seeds a policy's first version: whoever can edit
      // the file must not be able to skip the approvals and the delay.
      if (this.admins && history.length > 0) {
        this.log?.warn(
          { policy: name },
          'config policy differs from the stored one; not applied (admin quorum: propose it). Until the ' +
            'file is restored or a quorum-approved version replaces a config-set one, its keys are refused',
        );
        continue;
      }
      recorded.push(await this.put(name, text, 'config', now));
    }
    await this.refresh();
    return recorded;
  }

  /** Reloads the latest versions from the store and swaps them in at once. */
  async refresh(): Promise<void> {
    // The log first: it says which proposals were cancelled (a state column can be rewritten).
    await this.ledger?.catchUp();
    const records = await this.store.listPolicies();
    const proposals = this.admins ? await this.store.listProposals() : [];
    const compiled: CompiledPolicy[] = [];
    const broken: BrokenPolicy[] = [];
    const now = Date.now();
    for (const r of records) {
      const unapproved = this.trust ? await this.trust.untrusted(r, proposals, now) : null;
      if (unapproved) {
        // A row a database writer put there (or a version from before the quorum, or an approved
        // loosening copied in before its delay): refused like a policy that does not compile,
        // never trusted for being in the store.
        broken.push({ name: r.name, version: r.version, keys: patternsOf(r.document), why: unapproved });
        this.log?.error(
          { policy: r.name, version: r.version, why: unapproved },
          "stored policy version is neither the config file's text nor approved by the admin quorum; " +
            'the keys it governs are refused (POLICY_UNAVAILABLE) until a quorum-approved version replaces it',
        );
        continue;
      }
      try {
        compiled.push(compilePolicy(JSON.parse(r.document), r.name));
      } catch (e) {
        // Fail closed: the policy keeps its key patterns and refuses them, rather than leaving
        // its keys to a broader pattern (`*`). Logged at every reload until an operator fixes it.
        broken.push({ name: r.name, version: r.version, keys: patternsOf(r.document) });
        this.log?.error(
          { policy: r.name, version: r.version, err: (e as Error).message },
          'stored policy does not compile; the keys it governs are refused (POLICY_UNAVAILABLE)',
        );
      }
    }
    const [pending, freezes] = [proposals, await this.store.listFreezes()];
    this.compiled = compiled;
    this.broken = broken;
    this.records = new Map(records.map((r) => [r.name, r]));
    this.pending = this.admins
      ? pendingPolicies(this.admins, pending, this.records, compiled, this.clock, this.log)
      : [];
    // Non-policy proposals are timed too, so their delays start when first seen as well.
    if (this.admins) for (const p of pending) if (p.state === 'open' && p.kind !== 'policy') this.observe(p);
    this.clock.markStarted();
    if (this.ledger) {
      this.logFrozen = this.ledger.frozen(proposals);
      if (this.ledger.broken && !this.ledgerBroken)
        this.log?.error({ why: this.ledger.broken }, 'freezes cannot be read from the audit log; nothing is signed');
      this.ledgerBroken = this.ledger.broken;
    }
    this.setFrozen(freezes);
    this.metrics?.policiesInvalid.set(broken.length);
  }

  /** Whether the audit log records the proposal's cancellation. */
  isCancelledInLog(id: string): boolean {
    return this.ledger?.isCancelled(id) ?? false;
  }

  private observe(p: ProposalRecord): void {
    const r = checkQuorum(this.admins!, subjectOf(p), p.approvals).reachedAt;
    if (r) this.clock.reached(p.id, r);
  }

  /** Applies freezes at once on this replica (the store has them for the others' next refresh). */
  setFrozen(freezes: readonly FreezeRecord[]): void {
    const fromLog = [...this.logFrozen].map((k): [string, string] => [
      k.slice(0, k.indexOf(':')),
      k.slice(k.indexOf(':') + 1),
    ]);
    const of = (kind: FreezeRecord['kind']) =>
      new Set([
        ...freezes.filter((f) => f.kind === kind).map((f) => f.target),
        ...fromLog.filter(([k]) => k === kind).map(([, target]) => target),
      ]);
    this.frozen = { key: of('key'), policy: of('policy') };
  }

  isFrozen(kind: FreezeRecord['kind'], target: string): boolean {
    return this.frozen[kind].has(target);
  }

  /**
   * The policies in force at `now`: the stored versions, with any quorum-approved version whose
   * time has come in place of its base. Computed on read, so an approved change applies at its
   * time on every replica whether or not a timer has run (the store catches up via onDue).
   */
  private active(now: Date): CompiledPolicy[] {
    const due = this.pending.filter((p) => p.dueAt <= now);
    if (due.length === 0) return this.compiled;
    this.onDue();
    const names = new Set(due.map((p) => p.compiled.name));
    return [...this.compiled.filter((c) => !names.has(c.name)), ...due.map((p) => p.compiled)];
  }

  startRefresh(ms: number): void {
    this.timer = setInterval(
      () => this.refresh().catch((e) => this.log?.error({ err: e }, 'policy refresh failed')),
      ms,
    );
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /**
   * The policy governing a key for signing; PERMISSION_DENIED `NO_POLICY` when none does (deny
   * by default), FAILED_PRECONDITION `KEY_FROZEN` / `POLICY_FROZEN` while an admin froze either.
   */
  forKey(keyId: string, now = new Date()): CompiledPolicy {
    if (this.ledgerBroken)
      throw new SignerError(
        'AUDIT_LOG_INCONSISTENT',
        'the audit log cannot be read back to tell which keys are frozen; nothing is signed',
        { keyId, why: this.ledgerBroken },
      );
    if (this.frozen.key.has(keyId))
      throw new SignerError('KEY_FROZEN', `key "${keyId}" is frozen by an admin; unfreezing needs the admin quorum`, {
        keyId,
      });
    const p = this.governing(keyId, now);
    if (this.frozen.policy.has(p.name))
      throw new SignerError(
        'POLICY_FROZEN',
        `policy "${p.name}" governing key "${keyId}" is frozen by an admin; unfreezing needs the admin quorum`,
        { keyId, policy: p.name },
      );
    return p;
  }

  /**
   * FAILED_PRECONDITION `POLICY_UNAVAILABLE` when the policy that governs the key is stored but
   * does not compile (or one whose key patterns cannot even be read exists: it might govern any
   * key): its keys are refused, never handed to a broader pattern.
   */
  private governing(keyId: string, now: Date): CompiledPolicy {
    const active = this.active(now);
    // A broken stored version that a due, approved one replaces no longer governs.
    const names = new Set(active.map((p) => p.name));
    const broken = this.broken.filter((b) => !names.has(b.name));
    const unreadable = broken.find((b) => b.keys === null);
    const candidates = [...active.map((p) => ({ keys: p.keys, p })), ...broken.map((b) => ({ keys: b.keys ?? [], b }))];
    const chosen = unreadable ? { b: unreadable } : selectPolicy(candidates, keyId);
    if (chosen && 'b' in chosen) {
      const b = chosen.b;
      const what = b.why ? `is not trusted (${b.why})` : 'does not compile';
      throw new SignerError(
        'POLICY_UNAVAILABLE',
        `policy "${b.name}" (version ${b.version}) governs key "${keyId}" but ${what}; ` +
          'nothing is signed under it until an operator fixes it',
        { keyId, policy: b.name, version: String(b.version) },
      );
    }
    if (!chosen)
      throw new SignerError('NO_POLICY', `no policy governs key "${keyId}"; nothing is signed without one`, { keyId });
    return chosen.p;
  }

  /**
   * How many policy versions the loaded set stands for (versions run 1..n per name and are
   * never deleted): equal to the store's count exactly when nothing changed since the load.
   */
  epoch(): number {
    let n = 0;
    for (const r of this.records.values()) n += r.version;
    return n;
  }

  /** Names of the stored policies that do not compile (what the gauge counts). */
  invalid(): string[] {
    return this.broken.map((b) => b.name);
  }

  /** The compiled stored (activated) versions, for proposals' checks. */
  storedPolicies(): readonly CompiledPolicy[] {
    return this.compiled;
  }

  get(name: string): PolicyRecord {
    const r = this.records.get(name);
    if (!r) throw new SignerError('POLICY_NOT_FOUND', `no policy "${name}"`, { name });
    return r;
  }

  recordForKey(keyId: string): PolicyRecord {
    return this.get(this.governing(keyId, new Date()).name);
  }

  /** Validates and stores a new version; refused versions change nothing. */
  async set(name: string, document: string, by: string, now: Date): Promise<PolicyRecord> {
    if (this.admins)
      throw new SignerError(
        'QUORUM_REQUIRED',
        `policies change only by proposals approved by ${this.admins.quorum} admins: use ProposePolicy`,
        { name },
      );
    if (!NAME.test(name))
      throw new SignerError('POLICY_INVALID', 'a policy name is 1..64 of [a-z0-9._-], starting with a letter or digit');
    let compiled: CompiledPolicy;
    try {
      compiled = compilePolicy(JSON.parse(document), name);
    } catch (e) {
      if (e instanceof SyntaxError)
        throw new SignerError('POLICY_INVALID', `the policy document is not JSON: ${e.message}`);
      if (e instanceof PolicyError) throw new SignerError('POLICY_INVALID', e.message, { name });
      throw e;
    }
    const others = this.compiled.filter((p) => p.name !== name);
    const clash = findAmbiguities([...others, compiled]);
    if (clash.length) {
      throw new SignerError(
        'POLICY_INVALID',
        `key pattern "${clash[0]!.pattern}" is already governed by ${clash[0]!.policies.filter((n) => n !== name).join(', ')}`,
        { name },
      );
    }
    const record = await this.put(name, JSON.stringify(JSON.parse(document)), by, now);
    await this.refresh();
    this.log?.info({ policy: name, version: record.version, by }, 'policy changed');
    return record;
  }

  /** Stores the next version with its entry: the document's hash, name and version, and who set it. */
  private put(name: string, document: string, by: string, now: Date): Promise<PolicyRecord> {
    const payloadHash = createHash('sha256').update(document).digest();
    const audit = (version: number): AuditDraft[] => [
      eventDraft('policy.set', now, by, { payloadHash, intent: { policy: name, version: String(version) } }),
    ];
    return this.store.putPolicy(name, document, by, now, audit);
  }
}

interface BrokenPolicy {
  name: string;
  version: number;
  /** Its `keys` patterns if they can be read; null: unknown, so it may govern any key. */
  keys: string[] | null;
  /** Under a quorum: why the stored version is not trusted (absent: it does not compile). */
  why?: string;
}

/** The key patterns of a policy document that fails to compile, if they are readable at all. */
function patternsOf(document: string): string[] | null {
  try {
    const keys = (JSON.parse(document) as { keys?: unknown }).keys;
    if (Array.isArray(keys) && keys.length > 0 && keys.every((k) => typeof k === 'string' && k.length > 0))
      return keys as string[];
  } catch {
    // not JSON: the patterns are unknown
  }
  return null;
}
