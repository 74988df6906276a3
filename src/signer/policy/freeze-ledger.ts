import { createHash } from 'node:crypto';
import { type AdminSet, checkQuorum, type QuorumCheck } from '../../core/admin/approvals.js';
import { type AuditEntry, GENESIS } from '../../core/audit/chain.js';
import { parseCheckpoint } from '../../core/audit/checkpoint.js';
import { entryLeafHash } from '../../core/audit/leaf.js';
import { appendLeaves, EMPTY_FRONTIER, type Frontier, frontierRoot } from '../../core/audit/merkle.js';
import { parseNote } from '../../core/audit/note.js';
import type { AuditStore } from '../../infra/store/audit.js';
import type { StoredNote } from '../../infra/store/audit-tree.js';
import type { FreezeRecord, ProposalRecord } from '../../infra/store/store.js';
import { subjectOf } from './pending.js';

type Kind = FreezeRecord['kind'];
interface Event {
  kind: Kind;
  target: string;
  seq: number;
}
/** A `proposal.approve` entry: who, the hash of the signature, and the log's time at that entry. */
interface ApproveEntry {
  seq: number;
  admin: string;
  signatureHash: string;
  at: number;
}

/**
 * Freezes as the audit log records them, so that deleting a `freezes` row (or forging an
 * unfreeze) lifts nothing: a freeze entry holds until an unfreeze entry follows it whose
 * proposal (a) was proposed after the freeze (its `proposal.propose` entry lies between the
 * two), (b) was never cancelled (no `proposal.cancel` entry), and (c) carries, in the store now,
 * the approvals of `quorum` admins over its stored bytes. A database writer can append entries
 * but cannot produce admins' signatures, and cannot delete or edit an entry without breaking
 * the chain links (seq, prevHash), nor edit an entry's content without changing the tree head
 * the checkpointer signed (checked here when the scan passes its size). A broken log is reported (`broken`) and the
 * registry refuses to sign (AUDIT_LOG_INCONSISTENT): it can no longer tell what is frozen.
 *
 * It also keeps each proposal's `proposal.approve` entries, so that when a quorum was reached is
 * read from the log, not from approval rows a writer can backdate (`quorumTime`): a loosening's
 * delay, an unfreeze's and a destroy's count from it.
 *
 * The log is read once from the start (at start-up), then only its new entries.
 */
export class FreezeLedger {
  private nextSeq = 1;
  private prevHash = GENESIS;
  private frontier: Frontier = EMPTY_FRONTIER;
  private readonly freezes: Event[] = [];
  private readonly unfreezes: Array<Event & { proposal: string }> = [];
  private readonly proposed = new Map<string, number>();
  private readonly cancelled = new Set<string>();
  private readonly approves = new Map<string, ApproveEntry[]>();
  /** The latest entry time seen so far: an entry's time is never before an earlier entry's. */
  private logTime = 0;
  private maxAccessVersion = 0;
  private scanning: Promise<void> = Promise.resolve();
  /** Proposals' quorum checks, by id, with the rows they were made on (signatures verified once). */
  private readonly verified = new Map<string, { rows: string; check: QuorumCheck }>();
  /** Why the log cannot be trusted to say what is frozen; null while it can. */
  broken: string | null = null;

  constructor(
    private readonly audit: AuditStore,
    private readonly admins: AdminSet,
    /** The checkpointer's trusted signed note (seeded from HSM marks and witnesses). */
    private readonly trustedNote: () => StoredNote | undefined = () => undefined,
  ) {}

  /**
   * Reads the entries appended since the last call: each must follow the one before (seq and
   * prevHash); their leaves are folded into the tree, whose head must be the signed one when the
   * scan passes the signed size (that covers every entry's content up to it; later entries are
   * checked by the checkpointer before it signs them). One leaf hash per entry.
   */
  catchUp(): Promise<void> {
    // One scan at a time: refreshes overlap (timer, proposals' ticks), and two scans from the
    // same position would each see the other's progress as a gap.
    const run = this.scanning.then(() => this.scan());
    this.scanning = run.catch(() => {});
    return run;
  }

  private async scan(): Promise<void> {
    if (this.broken) return;
    // The note before the head: a checkpoint signed meanwhile must not look beyond the log.
    const signed = this.signedHead();
    const head = await this.audit.auditHead();
    if (!head || head.seq < this.nextSeq) return;
    if (signed && signed.size > head.seq) {
      this.broken = `the audit log ends at entry ${head.seq}, before the signed checkpoint's size ${signed.size}`;
      return;
    }
    let leaves: Uint8Array[] = [];
    const fold = () => {
      this.frontier = appendLeaves(this.frontier, leaves).frontier;
      leaves = [];
    };
    for await (const e of this.audit.readAudit(this.nextSeq, head.seq)) {
      if (e.seq !== this.nextSeq || e.prevHash !== this.prevHash) {
        this.broken = `audit entry ${this.nextSeq} is missing or does not chain to the one before`;
        return;
      }
      leaves.push(entryLeafHash(e));
      if (leaves.length >= 1024) fold();
      if (signed && signed.size === e.seq) {
        fold();
        if (!sameBytes(frontierRoot(this.frontier), signed.root)) {
          this.broken = `the audit log up to entry ${e.seq} is not the one the signed checkpoint covers`;
          return;
        }
      }
      this.record(e);
      this.nextSeq++;
      this.prevHash = e.hash;
    }
    fold();
    if (this.nextSeq <= head.seq) this.broken = `audit entries ${this.nextSeq}..${head.seq} are missing`;
  }

  /** The highest access version the log records as set (`access.set`); 0 for none. */
  get accessVersion(): number {
    return this.maxAccessVersion;
  }

  /** Whether the log records the proposal's cancellation (a cancelled proposal never applies). */
  isCancelled(id: string): boolean {
    return this.cancelled.has(id);
  }

  /**
   * The frozen targets the log proves, as "key:<id>" / "policy:<name>". An unfreeze lifts only
   * once its delay has passed since the quorum the log records (`quorumTime`): a writer who
   * appends the `key.unfreeze` entry of an approved unfreeze early lifts nothing before then.
   */
  frozen(proposals: readonly ProposalRecord[], now = Date.now()): Set<string> {
    const byId = new Map(proposals.map((p) => [p.id, p]));
    const lifts = (f: Event) =>
      this.unfreezes.some((u) => {
        if (u.kind !== f.kind || u.target !== f.target || u.seq < f.seq) return false;
        const proposedAt = this.proposed.get(u.proposal);
        if (proposedAt === undefined || proposedAt < f.seq || proposedAt > u.seq) return false;
        if (this.cancelled.has(u.proposal)) return false;
        const p = byId.get(u.proposal);
        if (!p || p.kind !== `unfreeze-${f.kind}` || p.target !== f.target) return false;
        const reached = this.quorumTime(p);
        return reached !== null && reached.getTime() + this.admins.delaySeconds * 1000 <= now;
      });
    return new Set(this.freezes.filter((f) => !lifts(f)).map((f) => `${f.kind}:${f.target}`));
  }

  /**
   * When the audit log says the proposal's quorum was reached, or null (short of it, or its
   * approvals are not in the log): the time of the first `proposal.approve` entry at which
   * `quorum` distinct admins have entries whose signatureHash is the SHA-256 of that admin's
   * stored approval, which verifies now. A writer can append entries (later, and their times are
   * taken as at least every earlier entry's) but cannot hash a signature before the admin made
   * it, nor insert before existing entries (chain links, signed checkpoints): the signer's own
   * entry, written when the approval arrived, comes first.
   */
  quorumTime(p: ProposalRecord): Date | null {
    const check = this.quorumOf(p);
    if (!check.reachedAt) return null;
    const hashes = new Map(check.valid.map((a) => [a.admin, createHash('sha256').update(a.signature).digest('hex')]));
    const admins = new Set<string>();
    for (const e of this.approves.get(p.id) ?? []) {
      if (hashes.get(e.admin) !== e.signatureHash) continue;
      admins.add(e.admin);
      if (admins.size >= this.admins.quorum) return new Date(e.at);
    }
    return null;
  }

  /** The stored proposal's quorum check; verified again only when its rows change. */
  private quorumOf(p: ProposalRecord): QuorumCheck {
    const rows = JSON.stringify([
      subjectOf(p),
      p.approvals.map((a) => [a.admin, Buffer.from(a.signature).toString('hex'), a.at.getTime()]),
    ]);
    const seen = this.verified.get(p.id);
    if (seen?.rows === rows) return seen.check;
    const check = checkQuorum(this.admins, subjectOf(p), p.approvals);
    this.verified.set(p.id, { rows, check });
    return check;
  }

  private record(e: AuditEntry): void {
    const intent = e.intent ?? {};
    const at = Date.parse(e.at);
    if (at > this.logTime) this.logTime = at;
    switch (e.kind) {
      case 'proposal.approve':
        if (intent.proposal && intent.admin && intent.signatureHash) {
          const list = this.approves.get(intent.proposal) ?? [];
          list.push({ seq: e.seq, admin: intent.admin, signatureHash: intent.signatureHash, at: this.logTime });
          this.approves.set(intent.proposal, list);
        }
        break;
      case 'key.freeze':
        if (e.keyId) this.freezes.push({ kind: 'key', target: e.keyId, seq: e.seq });
        break;
      case 'policy.freeze':
        if (intent.policy) this.freezes.push({ kind: 'policy', target: intent.policy, seq: e.seq });
        break;
      case 'key.unfreeze':
      case 'policy.unfreeze': {
        const target = e.kind === 'key.unfreeze' ? e.keyId : intent.target;
        const kind: Kind = e.kind === 'key.unfreeze' ? 'key' : 'policy';
        if (target && intent.proposal) this.unfreezes.push({ kind, target, seq: e.seq, proposal: intent.proposal });
        break;
      }
      case 'proposal.propose':
        // The first one counts: a later entry naming the same id cannot move it.
        if (intent.proposal && !this.proposed.has(intent.proposal)) this.proposed.set(intent.proposal, e.seq);
        break;
      case 'proposal.cancel':
        if (intent.proposal) this.cancelled.add(intent.proposal);
        break;
      case 'access.set': {
        const v = Number(intent.version);
        if (Number.isSafeInteger(v) && v > this.maxAccessVersion) this.maxAccessVersion = v;
        break;
      }
    }
  }

  private signedHead(): { size: number; root: Uint8Array } | null {
    const note = this.trustedNote();
    if (!note) return null;
    const cp = parseCheckpoint(parseNote(note.note).text);
    return { size: cp.size, root: cp.root };
  }
}

const sameBytes = (a: Uint8Array, b: Uint8Array) => a.length === b.length && a.every((x, i) => x === b[i]);
