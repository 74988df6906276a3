import { createHash } from 'node:crypto';
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
import type { PolicyRecord, Store } from '../../infra/store/store.js';

const NAME = /^[a-z0-9][a-z0-9._-]{0,63}$/;

/**
 * Named policies: the store keeps every version; this holds the compiled latest versions and
 * swaps them as a whole, so a request sees either the old set or the new one, never a mix.
 * Replicas pick up each other's changes on `refresh`. Every version is stored together with its
 * audit entry (one store transaction), whoever sets it: an admin, or the config at start.
 */
export class PolicyRegistry {
  private compiled: CompiledPolicy[] = [];
  private records = new Map<string, PolicyRecord>();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly store: Store,
    private readonly log?: Logger,
  ) {}

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
    for (const [name, doc] of Object.entries(config)) {
      const text = JSON.stringify(doc);
      const lastByConfig = (await this.store.policyHistory(name)).filter((r) => r.updatedBy === 'config').pop();
      if (lastByConfig?.document !== text) recorded.push(await this.put(name, text, 'config', now));
    }
    await this.refresh();
    return recorded;
  }

  /** Reloads the latest versions from the store and swaps them in at once. */
  async refresh(): Promise<void> {
    const records = await this.store.listPolicies();
    const compiled: CompiledPolicy[] = [];
    for (const r of records) {
      try {
        compiled.push(compilePolicy(JSON.parse(r.document), r.name));
      } catch (e) {
        // Keys it governed fall back to deny; the error is the operator's to fix.
        this.log?.error(
          { policy: r.name, version: r.version, err: (e as Error).message },
          'stored policy does not compile; not applied',
        );
      }
    }
    this.compiled = compiled;
    this.records = new Map(records.map((r) => [r.name, r]));
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

  /** The policy governing a key; PERMISSION_DENIED `NO_POLICY` when none does (deny by default). */
  forKey(keyId: string): CompiledPolicy {
    const p = selectPolicy(this.compiled, keyId);
    if (!p)
      throw new SignerError('NO_POLICY', `no policy governs key "${keyId}"; nothing is signed without one`, { keyId });
    return p;
  }

  get(name: string): PolicyRecord {
    const r = this.records.get(name);
    if (!r) throw new SignerError('POLICY_NOT_FOUND', `no policy "${name}"`, { name });
    return r;
  }

  recordForKey(keyId: string): PolicyRecord {
    return this.get(this.forKey(keyId).name);
  }

  /** Validates and stores a new version; refused versions change nothing. */
  async set(name: string, document: string, by: string, now: Date): Promise<PolicyRecord> {
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
