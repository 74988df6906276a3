import type pg from 'pg';
import type { QueryConfig } from 'pg';
import type { Approval } from '../../../core/admin/approvals.js';
import type { AuditDraft } from '../../../core/audit/draft.js';
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
import { checkDrafts } from './checks.js';
import { q } from './sql.js';
import { inTransaction, isUniqueViolation, withRetries } from './transaction.js';

const SQL = {
  insert: `INSERT INTO proposals (id, kind, target, base_version, document, proposed_by, proposed_at, state)
    VALUES ($1, $2, $3, $4, $5, $6, $7, 'open')`,
  // Only while the proposal is open; the row lock of the proposal orders it against a close.
  approve: `INSERT INTO proposal_approvals (proposal_id, admin, signature, approved_at)
    SELECT id, $2, $3, $4 FROM proposals WHERE id = $1 AND state = 'open' FOR UPDATE`,
  close: `UPDATE proposals SET state = $2, closed_at = $3, closed_by = $4, note = $5 WHERE id = $1 AND state = 'open'`,
  // Numbered under the version lock (sql.ts); the primary key still refuses a raced version.
  putAccess: `INSERT INTO access_versions (version, document, updated_at, updated_by)
    SELECT coalesce(max(version), 0) + 1, $1, $2, $3 FROM access_versions RETURNING version`,
  accessHistory: 'SELECT * FROM access_versions ORDER BY version',
  unfreeze: 'DELETE FROM freezes WHERE kind = $1 AND target = $2',
  freeze: `INSERT INTO freezes (kind, target, frozen_at, frozen_by) VALUES ($1, $2, $3, $4)
    ON CONFLICT (kind, target) DO NOTHING`,
  list: 'SELECT * FROM proposals ORDER BY proposed_at, id',
  approvals: 'SELECT * FROM proposal_approvals ORDER BY approved_at, admin',
  freezes: 'SELECT * FROM freezes ORDER BY kind, target',
};
const s = (name: keyof typeof SQL, values: unknown[]): QueryConfig => ({
  name: `quorum_${name}`,
  text: SQL[name],
  values,
});

/** Thrown inside a close's transaction to roll it back when the proposal was no longer open. */
class NotOpen extends Error {}

/** The admin quorum's rows in PostgreSQL; each change commits with its audit entries. */
export class PostgresProposals {
  constructor(private readonly pool: pg.Pool) {}

  async insert(p: Parameters<Store['insertProposal']>[0], audit: AuditDraft[]): Promise<void> {
    checkDrafts(audit);
    const values = [p.id, p.kind, p.target, p.baseVersion, p.document, p.proposedBy, p.proposedAt.getTime()];
    await withRetries(this.pool, (c) => inTransaction(c, [s('insert', values)], audit), { retryUnique: false });
  }

  async approve(id: string, a: Approval, audit: AuditDraft[]): Promise<boolean> {
    checkDrafts(audit);
    const values = [id, a.admin, Buffer.from(a.signature), a.at.getTime()];
    try {
      const [r] = await withRetries(
        this.pool,
        (c) => inTransaction(c, [s('approve', values)], ([r]) => (r!.rowCount === 1 ? audit : [])),
        { retryUnique: false },
      );
      return r!.rowCount === 1;
    } catch (e) {
      if (isUniqueViolation(e)) throw new ApprovalExistsError(`${a.admin} already approved proposal ${id}`);
      throw e;
    }
  }

  async close(
    id: string,
    c: Parameters<Store['closeProposal']>[1],
    effects: ProposalEffects,
    audit: (policyVersion: number | null) => AuditDraft[],
  ): Promise<{ policy: PolicyRecord | null } | null> {
    const p = effects.policy;
    const acc = effects.access;
    // The version lock first (sql.ts versionLock), then the proposal row, then the audit lock.
    const lock = p ? [q('versionLock', [`policy:${p.name}`])] : acc ? [q('versionLock', ['access'])] : [];
    const statements = [...lock, s('close', [id, c.state, c.at.getTime(), c.by, c.note])];
    if (p) statements.push(q('putPolicy', [p.name, p.document, c.at.getTime(), p.updatedBy]));
    if (acc) statements.push(s('putAccess', [acc.document, c.at.getTime(), acc.updatedBy]));
    if (effects.unfreeze) statements.push(s('unfreeze', [effects.unfreeze.kind, effects.unfreeze.target]));
    const got: { version: number | null } = { version: null };
    try {
      // A policy version raced by another writer is refused by the primary key and retried.
      await withRetries(this.pool, (conn) =>
        inTransaction(conn, statements, (all) => {
          const results = all.slice(lock.length);
          if (results[0]!.rowCount !== 1) throw new NotOpen();
          got.version = p || acc ? (results[1]!.rows[0] as { version: number }).version : null;
          return audit(got.version);
        }),
      );
    } catch (e) {
      if (e instanceof NotOpen) return null;
      throw e;
    }
    const version = got.version;
    const put = p ?? (acc && { name: 'access', ...acc });
    if (!put || version === null) return { policy: null };
    return { policy: { name: put.name, version, document: put.document, updatedAt: c.at, updatedBy: put.updatedBy } };
  }

  async putAccess(
    document: string,
    updatedBy: string,
    at: Date,
    audit: (version: number) => AuditDraft[],
  ): Promise<AccessRecord> {
    const lock = q('versionLock', ['access']);
    const [, r] = await withRetries(this.pool, (c) =>
      inTransaction(c, [lock, s('putAccess', [document, at.getTime(), updatedBy])], ([, put]) =>
        audit((put!.rows[0] as { version: number }).version),
      ),
    );
    return { version: (r!.rows[0] as { version: number }).version, document, updatedAt: at, updatedBy };
  }

  async accessHistory(): Promise<AccessRecord[]> {
    return (await this.pool.query<AccessRow>(s('accessHistory', []))).rows.map(accessRecord);
  }

  async freeze(f: FreezeRecord, audit: AuditDraft[]): Promise<boolean> {
    checkDrafts(audit);
    const values = [f.kind, f.target, f.frozenAt.getTime(), f.frozenBy];
    const [r] = await withRetries(this.pool, (c) =>
      inTransaction(c, [s('freeze', values)], ([r]) => (r!.rowCount === 1 ? audit : [])),
    );
    return r!.rowCount === 1;
  }

  async list(): Promise<ProposalRecord[]> {
    const rows = (await this.pool.query<ProposalRow>(s('list', []))).rows;
    const approvals = (await this.pool.query<ApprovalRow>(s('approvals', []))).rows;
    return proposalRecords(rows, approvals);
  }

  async freezes(): Promise<FreezeRecord[]> {
    return (await this.pool.query<FreezeRow>(s('freezes', []))).rows.map(freezeRecord);
  }
}
