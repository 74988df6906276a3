import { createHash, randomBytes } from 'node:crypto';
import { ACCESS_TARGET, accessText } from '../../core/admin/access.js';
import { type AdminSet, approvalsSummary, checkApproval } from '../../core/admin/approvals.js';
import { type ProposalKind, proposalBytes } from '../../core/admin/proposal.js';
import { type CancelSubject, checkCancel } from '../../core/admin/share-destroy.js';
import { type AuditDraft, eventDraft } from '../../core/audit/draft.js';
import { SignerError } from '../../core/errors.js';
import { canonicalJson } from '../../core/policy/canonical.js';
import { compilePolicy, findAmbiguities, PolicyError } from '../../core/policy/schema.js';
import { parseAccessDocument } from '../../infra/config/access.js';
import type { Logger } from '../../infra/log.js';
import type { AuditStore } from '../../infra/store/audit.js';
import {
  ApprovalExistsError,
  type FreezeRecord,
  type PolicyRecord,
  type ProposalEffects,
  type ProposalRecord,
  type Store,
} from '../../infra/store/store.js';
import type { KeyRegistry } from '../keys/registry.js';
import type { AccessRegistry } from './access-registry.js';
import { type Assessment, assess, storedAsItself, subjectOf } from './pending.js';
import type { PolicyRegistry } from './registry.js';

/** A proposal as admins review it: the stored record, what it amounts to now, and the bytes to sign. */
export interface ProposalView extends ProposalRecord {
  assessment: Assessment;
  quorum: number;
  /** policy, access: the document in force it replaces ("" for a new policy), for the diff. */
  activeDocument: string;
  signingBytes: Uint8Array;
}

const sha256 = (s: string | Uint8Array) => createHash('sha256').update(s).digest();

/**
 * The admin quorum's flow (README "Admin quorum"): proposals, signed approvals, cancellation,
 * activation when due, freezes. Every step commits with its audit entry; whether a proposal is
 * approved is recomputed from the stored approvals' signatures over the stored proposal at every
 * step, so an edited document or a forged approval row counts for nothing.
 */
export class Proposals {
  private timer: NodeJS.Timeout | undefined;
  private ticking: Promise<void> = Promise.resolve();
  private kicked = false;
  private lastKick = 0;

  constructor(
    private readonly store: Store & Pick<AuditStore, 'appendAudit'>,
    private readonly policies: PolicyRegistry,
    private readonly keys: KeyRegistry,
    private readonly admins: AdminSet,
    private readonly log: Logger,
    /** Clients and key access in the store (README "Admin quorum"); absent: proposals of them are refused. */
    private readonly access?: AccessRegistry,
  ) {
    // A read that finds an approved version due gets the store to catch up.
    policies.onDue = () => this.kick();
  }

  start(ms: number): void {
    this.timer = setInterval(() => this.kick(), ms);
    this.timer.unref();
  }

  stop(): Promise<void> {
    clearInterval(this.timer);
    return this.ticking;
  }

  async proposePolicy(name: string, document: string, by: string, now: Date): Promise<ProposalView> {
    let canonical: string;
    try {
      canonical = canonicalJson(JSON.parse(document));
      const next = compilePolicy(JSON.parse(canonical), name);
      const clash = findAmbiguities([...this.policies.storedPolicies().filter((p) => p.name !== name), next]);
      if (clash.length)
        throw new PolicyError(`key pattern "${clash[0]!.pattern}" is already governed by another policy`);
    } catch (e) {
      throw new SignerError('POLICY_INVALID', (e as Error).message, { name });
    }
    const base = (await this.store.policyHistory(name)).at(-1)?.version ?? 0;
    return this.propose('policy', name, base, canonical, by, now);
  }

  /** A new access document (clients, roles, pins, request keys, key access), stored canonically. */
  async proposeAccess(document: string, by: string, now: Date): Promise<ProposalView> {
    if (!this.access) throw new SignerError('QUORUM_REQUIRED', 'access is not managed in the store on this signer');
    let canonical: string;
    try {
      canonical = accessText(parseAccessDocument(document));
    } catch (e) {
      throw new SignerError('REQUEST_INVALID', `access document: ${(e as Error).message}`, { field: 'document' });
    }
    await this.access.refresh();
    return this.propose('access', ACCESS_TARGET, this.access.current().latestStored, canonical, by, now);
  }

  /** The access document in force (canonical JSON) and its version. */
  accessInForce(): { version: number; document: string } {
    if (!this.access) throw new SignerError('QUORUM_REQUIRED', 'access is not managed in the store on this signer');
    const a = this.access.current();
    return { version: a.version, document: a.document ? accessText(a.document) : '' };
  }

  /** The approvers sign the whole request, `confirmSwept` (the operator's word that an EVM version is empty) included. */
  async proposeDestroy(
    req: { keyId: string; version: number; confirmKeyId: string; confirmSwept: boolean },
    by: string,
    now: Date,
  ) {
    if (req.confirmKeyId !== req.keyId)
      throw new SignerError('CONFIRMATION_REQUIRED', `destroying a key version needs confirm_key_id = "${req.keyId}"`);
    const k = this.keys.history(req.keyId).find((v) => v.version === req.version);
    if (!k) throw new SignerError('KEY_VERSION_NOT_FOUND', `key "${req.keyId}" has no version ${req.version}`);
    if (k.state !== 'disabled')
      throw new SignerError(
        'KEY_STATE_INVALID',
        `only a disabled version can be destroyed; v${k.version} is ${k.state}`,
      );
    // Refused now rather than after the quorum's approvals and the delay (keys.destroy checks it again).
    if (k.algorithm === 'ecdsa-secp256k1' && !req.confirmSwept)
      throw new SignerError(
        'CONFIRMATION_REQUIRED',
        `v${k.version} of EVM key "${req.keyId}" may still hold funds: sweep it to the active address, then propose with confirm_swept`,
        { keyId: req.keyId, version: String(k.version), confirm: 'confirm_swept' },
      );
    return this.propose('destroy-key', req.keyId, req.version, canonicalJson(req), by, now);
  }

  async proposeUnfreeze(kind: FreezeRecord['kind'], target: string, by: string, now: Date) {
    if (!this.policies.isFrozen(kind, target)) await this.policies.refresh();
    if (!this.policies.isFrozen(kind, target))
      throw new SignerError('REQUEST_INVALID', `${kind} "${target}" is not frozen`);
    return this.propose(kind === 'key' ? 'unfreeze-key' : 'unfreeze-policy', target, 0, '', by, now);
  }

  private async propose(kind: ProposalKind, target: string, base: number, document: string, by: string, now: Date) {
    const id = randomBytes(16).toString('hex');
    const intent = { proposal: id, kind, target, baseVersion: String(base) };
    const audit = [eventDraft('proposal.propose', now, by, { payloadHash: sha256(document), intent })];
    await this.store.insertProposal(
      { id, kind, target, baseVersion: base, document, proposedBy: by, proposedAt: now },
      audit,
    );
    this.log.info({ proposal: id, kind, target, by }, 'change proposed');
    return this.view(id);
  }

  /** Records `admin`'s signed approval; refuses what would not count. Applies the proposal if due. */
  async approve(id: string, admin: string, signature: Uint8Array, by: string, now: Date): Promise<ProposalView> {
    const p = await this.find(id);
    if (p.state !== 'open') throw new SignerError('PROPOSAL_CLOSED', `proposal ${id} is ${p.state}`, { proposal: id });
    const why = checkApproval(this.admins, subjectOf(p), admin, signature);
    if (why) throw new SignerError('APPROVAL_INVALID', why, { proposal: id, admin });
    const duplicate = () =>
      new SignerError('APPROVAL_DUPLICATE', `${admin} already approved proposal ${id}`, { proposal: id, admin });
    if (p.approvals.some((a) => a.admin === admin)) throw duplicate();
    const intent = { proposal: id, admin, signatureHash: sha256(signature).toString('hex') };
    const audit = [eventDraft('proposal.approve', now, by, { payloadHash: sha256(p.document), intent })];
    let added: boolean;
    try {
      added = await this.store.addApproval(id, { admin, signature, at: now }, audit);
    } catch (e) {
      if (e instanceof ApprovalExistsError) throw duplicate();
      throw e;
    }
    if (!added) throw new SignerError('PROPOSAL_CLOSED', `proposal ${id} was closed meanwhile`, { proposal: id });
    await this.tick(now);
    return this.view(id);
  }

  /**
   * Whether a proposal the store says is activated cannot have been activated by a signer: it
   * still loosens what is in force, and its delay has not passed since the quorum the audit log
   * records (the signer activates no loosening, destroy or unfreeze before then).
   */
  private closedEarly(v: ProposalView, now: Date): boolean {
    if (v.state !== 'activated' || v.assessment.loosenings.length === 0) return false;
    if (this.policies.isCancelledInLog(v.id)) return false;
    const logged = this.policies.clock.logged(v);
    return !logged || logged.getTime() + this.admins.delaySeconds * 1000 > now.getTime();
  }

  /** Any single admin may cancel an open proposal (stopping a change only tightens). */
  async cancel(id: string, by: string, reason: string, now: Date): Promise<ProposalView> {
    const p = await this.find(id);
    const intent = { proposal: id, kind: p.kind, target: p.target, reason };
    const audit = () => [eventDraft('proposal.cancel', now, by, { payloadHash: sha256(p.document), intent })];
    const note = reason || 'cancelled';
    if (!(await this.store.closeProposal(id, { state: 'cancelled', at: now, by, note }, {}, audit))) {
      const v = await this.view(id);
      if (!this.closedEarly(v, now))
        throw new SignerError('PROPOSAL_CLOSED', `proposal ${id} is ${v.state}`, { proposal: id });
      // The row says activated, but its delay has not passed by the audit log: a database writer
      // closed it (and may have copied its version in) to take the admins' cancel away. The
      // cancellation is recorded where it is read from, the log: the version is never trusted.
      await this.store.appendAudit(audit());
      this.log.warn({ proposal: id, by }, 'proposal closed in the store before its delay; cancelled in the audit log');
      await this.refreshAll();
      return { ...(await this.view(id)), state: 'cancelled', note: `${note} (the stored row said activated)` };
    }
    this.log.info({ proposal: id, by }, 'proposal cancelled');
    await this.refreshAll();
    return this.view(id);
  }

  /**
   * One admin's signed cancel of the cosigners' scheduled destruction of a threshold version's
   * shares: checked here against the signer's admins (the cosigners check it again against
   * theirs), then forwarded and audited. Cancelling keeps a key usable: one admin suffices.
   */
  async cancelShareDestroy(c: CancelSubject & { admin: string; signature: Uint8Array }, by: string) {
    const why = checkCancel(this.admins, c, c.admin, c.signature);
    if (why) throw new SignerError('APPROVAL_INVALID', why, { proposal: c.proposalId, admin: c.admin });
    return this.keys.cancelShareDestroy(c, by);
  }

  /** Emergency stop by one admin, effective at once on this replica (others at their next refresh). */
  async freeze(kind: FreezeRecord['kind'], target: string, by: string, now: Date): Promise<FreezeRecord> {
    if (kind === 'key' && this.keys.history(target).length === 0)
      throw new SignerError('KEY_NOT_FOUND', `no key "${target}"`, { keyId: target });
    if (kind === 'policy') this.policies.get(target);
    const f: FreezeRecord = { kind, target, frozenAt: now, frozenBy: by };
    const fields = kind === 'key' ? { keyId: target } : { intent: { policy: target } };
    await this.store.freeze(f, [eventDraft(`${kind}.freeze`, now, by, fields)]);
    const all = await this.store.listFreezes();
    this.policies.setFrozen(all);
    this.log.warn({ kind, target, by }, 'frozen by an admin');
    return all.find((x) => x.kind === kind && x.target === target) ?? f;
  }

  async list(): Promise<ProposalView[]> {
    const all = await this.store.listProposals();
    return Promise.all(all.map((p) => this.toView(p)));
  }

  async view(id: string): Promise<ProposalView> {
    return this.toView(await this.find(id));
  }

  private async find(id: string): Promise<ProposalRecord> {
    const p = (await this.store.listProposals()).find((x) => x.id === id);
    if (!p) throw new SignerError('PROPOSAL_NOT_FOUND', `no proposal ${id}`, { proposal: id });
    return p;
  }

  private async refreshAll(): Promise<void> {
    await this.policies.refresh();
    await this.access?.refresh();
  }

  private accessState() {
    const a = this.access?.current();
    return a && { document: a.document, latestStored: a.latestStored, ...(a.latest ? { latest: a.latest } : {}) };
  }

  private async toView(p: ProposalRecord): Promise<ProposalView> {
    const records = new Map((await this.store.listPolicies()).map((r) => [r.name, r]));
    const access = this.accessState();
    const clock = this.policies.clock;
    const activeAccess = p.kind === 'access' && access?.document ? accessText(access.document) : '';
    return {
      ...p,
      assessment: assess(this.admins, p, records, this.policies.storedPolicies(), clock, access),
      quorum: this.admins.quorum,
      activeDocument: p.kind === 'policy' ? (records.get(p.target)?.document ?? '') : activeAccess,
      signingBytes: proposalBytes(subjectOf(p)),
    };
  }

  /** Starts a tick unless one is queued already. */
  private kick(): void {
    // Reads call this while something is due: at most one check a second, however busy.
    if (this.kicked || Date.now() - this.lastKick < 1000) return;
    this.kicked = true;
    this.lastKick = Date.now();
    this.tick(new Date())
      .catch((e) => this.log.error({ err: (e as Error).message }, 'applying due proposals failed'))
      .finally(() => {
        this.kicked = false;
      });
  }

  /** Applies every open proposal that is due, and fails those that can never apply. One at a time. */
  tick(now: Date): Promise<void> {
    this.ticking = this.ticking
      .then(() => this.applyDue(now))
      .catch((e) => {
        this.log.error({ err: (e as Error).message }, 'applying due proposals failed');
      });
    return this.ticking;
  }

  private async applyDue(asked: Date): Promise<void> {
    await this.refreshAll();
    // The refresh may have just seen a quorum reached (QuorumClock): judge by the time after it.
    const now = new Date(Math.max(asked.getTime(), Date.now()));
    let changed = false;
    for (const p of await this.store.listProposals()) {
      if (p.state !== 'open') continue;
      const records = new Map((await this.store.listPolicies()).map((r) => [r.name, r]));
      const access = this.accessState();
      const a = assess(this.admins, p, records, this.policies.storedPolicies(), this.policies.clock, access);
      if (a.blocked && a.check.reachedAt) changed = (await this.close(p, 'failed', a, now, {})) || changed;
      else if (a.dueAt && a.dueAt <= now) changed = (await this.activate(p, a, now, records, access)) || changed;
    }
    if (changed) await this.refreshAll();
  }

  private async activate(
    p: ProposalRecord,
    a: Assessment,
    now: Date,
    records: ReadonlyMap<string, PolicyRecord>,
    access: ReturnType<Proposals['accessState']>,
  ): Promise<boolean> {
    // Its version is in the store already (another writer copied it in; trusted from now on,
    // registry.ts): closed without storing it twice.
    const copied =
      p.kind === 'policy'
        ? storedAsItself(records.get(p.target), p)
        : p.kind === 'access' &&
          access?.latestStored === p.baseVersion + 1 &&
          access.latest?.updatedBy === `quorum:${p.id}` &&
          access.latest.document === p.document;
    if (copied)
      return this.close(p, 'activated', { ...a, loosenings: [...a.loosenings, 'stored by another writer'] }, now, {});
    if (p.kind === 'policy') {
      return this.close(p, 'activated', a, now, {
        policy: { name: p.target, document: p.document, updatedBy: `quorum:${p.id}` },
      });
    }
    if (p.kind === 'access') {
      return this.close(p, 'activated', a, now, { access: { document: p.document, updatedBy: `quorum:${p.id}` } });
    }
    if (p.kind !== 'destroy-key') {
      const kind = p.kind === 'unfreeze-key' ? 'key' : 'policy';
      return this.close(p, 'activated', a, now, { unfreeze: { kind, target: p.target } });
    }
    // Irreversible: closed first (a cancel can no longer race it), one replica at a time.
    const done = await this.store.withJobLock(`proposal:${p.id}`, async () => {
      if (!(await this.close(p, 'activated', a, now, {}))) return false;
      const req = JSON.parse(p.document) as {
        keyId: string;
        version: number;
        confirmKeyId: string;
        confirmSwept?: boolean;
      };
      const context = { proposal: p.id, approvals: approvalsSummary(a.check.valid) };
      const by = { client: 'quorum', context };
      // A threshold key's cosigners check the quorum themselves: they get the proposal and its approvals.
      const order = { proposalId: p.id, document: p.document, approvals: a.check.valid };
      await this.keys
        .destroy(req.keyId, req.version, req.confirmKeyId, by, now, req.confirmSwept === true, order)
        .catch((e) => {
          this.log.error({ proposal: p.id, err: (e as Error).message }, 'approved destroy failed; propose it again');
        });
      return true;
    });
    return done === true;
  }

  private async close(
    p: ProposalRecord,
    state: 'activated' | 'failed',
    a: Assessment,
    now: Date,
    effects: ProposalEffects,
  ): Promise<boolean> {
    const approvals = approvalsSummary(a.check.valid);
    const note = state === 'failed' ? (a.blocked ?? 'failed') : a.loosenings.join('; ') || 'tightening only';
    const audit = (version: number | null): AuditDraft[] => {
      const intent = { proposal: p.id, kind: p.kind, target: p.target, approvals, note };
      const entries = [eventDraft(`proposal.${state === 'failed' ? 'fail' : 'activate'}`, now, 'quorum', { intent })];
      if (version !== null && p.kind === 'access') {
        const set = { version: String(version), proposal: p.id, approvals };
        entries.push(eventDraft('access.set', now, 'quorum', { payloadHash: sha256(p.document), intent: set }));
      } else if (version !== null) {
        const set = { policy: p.target, version: String(version), proposal: p.id, approvals };
        entries.push(eventDraft('policy.set', now, 'quorum', { payloadHash: sha256(p.document), intent: set }));
      }
      if (effects.unfreeze) {
        const kind = `${effects.unfreeze.kind}.unfreeze`;
        const keyId = effects.unfreeze.kind === 'key' ? { keyId: p.target } : {};
        const intent = { target: p.target, proposal: p.id, approvals };
        entries.push(eventDraft(kind, now, 'quorum', { ...keyId, intent }));
      }
      return entries;
    };
    const r = await this.store.closeProposal(p.id, { state, at: now, by: 'quorum', note }, effects, audit);
    if (r) this.log.info({ proposal: p.id, kind: p.kind, target: p.target, state }, 'proposal closed');
    return r !== null;
  }
}
