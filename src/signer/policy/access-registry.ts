import { createHash } from 'node:crypto';
import { type AccessDocument, accessLoosenings, accessText } from '../../core/admin/access.js';
import { type AdminSet, checkQuorum } from '../../core/admin/approvals.js';
import { eventDraft } from '../../core/audit/draft.js';
import { parseAccessDocument } from '../../infra/config/access.js';
import type { Logger } from '../../infra/log.js';
import type { AccessRecord, ProposalRecord, Store } from '../../infra/store/store.js';
import { subjectOf } from './pending.js';

/** The access document in force, and the latest stored version number (proposals' base). */
export interface AccessState {
  /** The newest trusted version's document; null when no stored version is trusted. */
  document: AccessDocument | null;
  /** Its version (0: none). */
  version: number;
  /** The newest stored version, trusted or not: what a new proposal replaces. */
  latestStored: number;
  /** That version's writer and text (a proposal's own document copied in by another writer is not a moved base). */
  latest?: { updatedBy: string; document: string };
}

/**
 * Clients, roles, pins, request keys and key access under an admin quorum (README "Admin
 * quorum"). The store keeps every version; a version is trusted only if it is the config file's
 * own seed text or the document of an access proposal that replaced the version before it and
 * whose approvals verify now against the stored bytes. The newest trusted version is applied to
 * the edge (`apply`: the Authorizer and the request-signature keys) when it changes, so the
 * per-call path reads an in-memory structure and never the store.
 */
export class AccessRegistry {
  private state: AccessState = { document: null, version: 0, latestStored: 0 };
  private appliedText: string | null = null;
  private configText = '';

  constructor(
    private readonly store: Store,
    private readonly admins: AdminSet,
    private readonly apply: (doc: AccessDocument) => void,
    private readonly log?: Logger,
    /**
     * What the audit log records: cancellations (a cancelled proposal's document is never
     * trusted), the highest access version set (rows deleted to roll access back are noticed)
     * and when each proposal's quorum was reached (a loosening is trusted only after its delay).
     */
    private readonly auditLog: {
      isCancelled(id: string): boolean;
      accessVersion: number;
      quorumTime?(p: ProposalRecord): Date | null;
    } = {
      isCancelled: () => false,
      accessVersion: 0,
    },
  ) {}

  /**
   * Stores the config's access document as version 1 on a fresh store. Afterwards the file
   * only seeds: a changed file is not applied (propose it), and while the version in force is
   * a config-set one that no longer matches the file, it is not trusted (as for policies).
   */
  async seed(config: AccessDocument, now: Date): Promise<void> {
    this.configText = accessText(config);
    const history = await this.store.accessHistory();
    if (history.length === 0) {
      const payloadHash = createHash('sha256').update(this.configText).digest();
      await this.store.putAccess(this.configText, 'config', now, (version) => [
        eventDraft('access.set', now, 'config', { payloadHash, intent: { version: String(version) } }),
      ]);
    } else if (!history.some((r) => r.updatedBy === 'config' && r.document === this.configText)) {
      this.log?.warn(
        'config clients/keyAccess differ from the stored access document; not applied (admin quorum: ' +
          'propose it with scripts/propose-access.ts). A config-set version that no longer matches the file is not trusted',
      );
    }
    await this.refresh();
  }

  current(): AccessState {
    return this.state;
  }

  /** Reloads the versions, picks the newest trusted one and applies it if it changed. */
  async refresh(proposals?: readonly ProposalRecord[]): Promise<void> {
    const history = await this.store.accessHistory();
    const all = proposals ?? (await this.store.listProposals());
    let chosen: AccessRecord | undefined;
    const now = Date.now();
    for (const r of [...history].reverse()) {
      const why = this.untrusted(r, all, history, now);
      if (!why) {
        chosen = r;
        break;
      }
      this.log?.error(
        { version: r.version, why },
        "stored access version is neither the config file's text nor approved by the admin quorum; ignored",
      );
    }
    if (chosen && chosen.version < this.auditLog.accessVersion) {
      // Newer versions were set (the audit log says so) and are gone: fail closed, not back.
      this.log?.error(
        { version: chosen.version, logged: this.auditLog.accessVersion },
        'access versions the audit log records are missing from the store; no client has access',
      );
      chosen = undefined;
    }
    let document: AccessDocument | null = null;
    if (chosen) {
      try {
        document = parseAccessDocument(chosen.document);
      } catch (e) {
        this.log?.error({ version: chosen.version, err: (e as Error).message }, 'stored access version is invalid');
      }
    }
    const latest = history.at(-1);
    this.state = {
      document,
      version: chosen?.version ?? 0,
      latestStored: latest?.version ?? 0,
      ...(latest ? { latest: { updatedBy: latest.updatedBy, document: latest.document } } : {}),
    };
    // Fail closed: no trusted version means no client has any role or key.
    const effective = document ?? { clients: {}, keyAccess: {} };
    const text = accessText(effective);
    if (text !== this.appliedText) {
      this.appliedText = text;
      this.apply(effective);
      this.log?.info({ version: this.state.version }, 'access applied');
    }
  }

  /**
   * Why a stored version is not trusted, or null. A quorum-approved version that loosens the
   * version before it (itself trusted) is trusted only once the delay has passed since the
   * quorum the audit log records: a database writer copying an approved loosening in early
   * gains nothing before the admins' time to cancel it is over.
   */
  private untrusted(
    r: AccessRecord,
    proposals: readonly ProposalRecord[],
    history: readonly AccessRecord[],
    now: number,
  ): string | null {
    const why = this.unapproved(r, proposals);
    if (why || r.updatedBy === 'config' || !this.auditLog.quorumTime) return why;
    const p = proposals.find((x) => x.id === r.updatedBy.slice('quorum:'.length))!;
    const reached = this.auditLog.quorumTime(p);
    const due = reached && reached.getTime() + this.admins.delaySeconds * 1000;
    if (due !== null && due <= now) return null;
    const loose = this.looseningsOf(r, proposals, history, now);
    if (loose.length === 0) return null;
    return due === null
      ? `proposal ${p.id} loosens access (${loose[0]}) and the audit log does not show its quorum`
      : `proposal ${p.id} loosens access (${loose[0]}); its delay runs until ${new Date(due).toISOString()} (audit log)`;
  }

  private looseningsOf(
    r: AccessRecord,
    proposals: readonly ProposalRecord[],
    history: readonly AccessRecord[],
    now: number,
  ): string[] {
    let next: AccessDocument;
    try {
      next = parseAccessDocument(r.document);
    } catch {
      return ['the document is invalid'];
    }
    const base = history.find((v) => v.version === r.version - 1);
    if (!base) return accessLoosenings(null, next);
    if (this.untrusted(base, proposals, history, now)) return ['the version before it is not trusted'];
    try {
      return accessLoosenings(parseAccessDocument(base.document), next);
    } catch {
      return ['the version before it is invalid'];
    }
  }

  private unapproved(r: AccessRecord, proposals: readonly ProposalRecord[]): string | null {
    // The file seeds version 1 only: its text written in later would roll quorum changes back.
    if (r.updatedBy === 'config')
      return r.version === 1 && r.document === this.configText ? null : "not the config file's seed (version 1)";
    const id = r.updatedBy.startsWith('quorum:') ? r.updatedBy.slice('quorum:'.length) : null;
    const p = id ? proposals.find((x) => x.id === id) : undefined;
    if (!p) return `updated by "${r.updatedBy}": no approved proposal`;
    if (p.kind !== 'access' || p.baseVersion !== r.version - 1 || p.document !== r.document)
      return `proposal ${p.id} is not this version's (kind, base version and document must match)`;
    if (!checkQuorum(this.admins, subjectOf(p), p.approvals).reachedAt)
      return `proposal ${p.id} lacks ${this.admins.quorum} valid approvals`;
    if (this.auditLog.isCancelled(p.id)) return `proposal ${p.id} was cancelled (audit log)`;
    return null;
  }
}
