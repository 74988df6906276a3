import type Database from 'better-sqlite3';
import type { Approval } from '../../../core/admin/approvals.js';
import {
  type AccessRow,
  type ApprovalRow,
  accessRecord,
  type FreezeRow,
  freezeRecord,
  type ProposalRow,
  proposalRecords,
} from '../proposal-codec.js';
import {
  type AccessRecord,
  ApprovalExistsError,
  type FreezeRecord,
  type PolicyRecord,
  type ProposalEffects,
  type ProposalRecord,
  type Store,
} from '../store.js';

const isConstraint = (e: unknown) => (e as { code?: string }).code?.startsWith('SQLITE_CONSTRAINT') === true;

/**
 * The admin quorum's rows in SQLite. Each method runs inside the caller's transaction (the
 * store's group commit), before the audit append of the same transaction.
 */
export class SqliteProposals {
  private readonly q;

  constructor(db: Database.Database) {
    const p = (sql: string) => db.prepare(sql);
    this.q = {
      insert: p(
        `INSERT INTO proposals (id, kind, target, base_version, document, proposed_by, proposed_at, state)
         VALUES (?, ?, ?, ?, ?, ?, ?, 'open')`,
      ),
      approve: p(
        `INSERT INTO proposal_approvals (proposal_id, admin, signature, approved_at)
         SELECT id, ?, ?, ? FROM proposals WHERE id = ? AND state = 'open'`,
      ),
      close: p(
        `UPDATE proposals SET state = ?, closed_at = ?, closed_by = ?, note = ? WHERE id = ? AND state = 'open'`,
      ),
      nextPolicyVersion: p('SELECT coalesce(max(version), 0) + 1 AS v FROM policies WHERE name = ?'),
      insertPolicy: p('INSERT INTO policies (name, version, document, updated_at, updated_by) VALUES (?, ?, ?, ?, ?)'),
      nextAccessVersion: p('SELECT coalesce(max(version), 0) + 1 AS v FROM access_versions'),
      insertAccess: p('INSERT INTO access_versions (version, document, updated_at, updated_by) VALUES (?, ?, ?, ?)'),
      accessHistory: p('SELECT * FROM access_versions ORDER BY version'),
      unfreeze: p('DELETE FROM freezes WHERE kind = ? AND target = ?'),
      freeze: p(
        `INSERT INTO freezes (kind, target, frozen_at, frozen_by) VALUES (?, ?, ?, ?)
         ON CONFLICT (kind, target) DO NOTHING`,
      ),
      list: p('SELECT * FROM proposals ORDER BY proposed_at, id'),
      approvals: p('SELECT * FROM proposal_approvals ORDER BY approved_at, admin'),
      freezes: p('SELECT * FROM freezes ORDER BY kind, target'),
    };
  }

  insert(p: Parameters<Store['insertProposal']>[0]): void {
    this.q.insert.run(p.id, p.kind, p.target, p.baseVersion, p.document, p.proposedBy, p.proposedAt.getTime());
  }

  approve(id: string, a: Approval): boolean {
    try {
      return this.q.approve.run(a.admin, Buffer.from(a.signature), a.at.getTime(), id).changes === 1;
    } catch (e) {
      if (isConstraint(e)) throw new ApprovalExistsError(`${a.admin} already approved proposal ${id}`);
      throw e;
    }
  }

  /** Null when the proposal was not open; else the policy version its effects appended. */
  close(
    id: string,
    c: Parameters<Store['closeProposal']>[1],
    effects: ProposalEffects,
  ): { policy: PolicyRecord | null } | null {
    if (this.q.close.run(c.state, c.at.getTime(), c.by, c.note, id).changes !== 1) return null;
    let policy: PolicyRecord | null = null;
    if (effects.policy) {
      const { name, document, updatedBy } = effects.policy;
      const { v } = this.q.nextPolicyVersion.get(name) as { v: number };
      this.q.insertPolicy.run(name, v, document, c.at.getTime(), updatedBy);
      policy = { name, version: v, document, updatedAt: c.at, updatedBy };
    }
    if (effects.access) policy = this.putAccessRow(effects.access.document, effects.access.updatedBy, c.at);
    if (effects.unfreeze) this.q.unfreeze.run(effects.unfreeze.kind, effects.unfreeze.target);
    return { policy };
  }

  /** Appends the next access version (inside the caller's transaction). */
  putAccess(document: string, updatedBy: string, at: Date): AccessRecord {
    const { v } = this.q.nextAccessVersion.get() as { v: number };
    this.q.insertAccess.run(v, document, at.getTime(), updatedBy);
    return { version: v, document, updatedAt: at, updatedBy };
  }

  /** The access version appended, in the shape closeProposal reports a version in. */
  private putAccessRow(document: string, updatedBy: string, at: Date): PolicyRecord {
    const r = this.putAccess(document, updatedBy, at);
    return { name: 'access', version: r.version, document, updatedAt: at, updatedBy };
  }

  accessHistory(): AccessRecord[] {
    return (this.q.accessHistory.all() as AccessRow[]).map(accessRecord);
  }

  freeze(f: FreezeRecord): boolean {
    return this.q.freeze.run(f.kind, f.target, f.frozenAt.getTime(), f.frozenBy).changes === 1;
  }

  list(): ProposalRecord[] {
    return proposalRecords(this.q.list.all() as ProposalRow[], this.q.approvals.all() as ApprovalRow[]);
  }

  freezes(): FreezeRecord[] {
    return (this.q.freezes.all() as FreezeRow[]).map(freezeRecord);
  }
}
