import type { ProposalKind } from '../../core/admin/proposal.js';
import type { AccessRecord, FreezeRecord, ProposalRecord, ProposalState } from './store.js';

/** Rows of the admin quorum's tables (migration "admin quorum"); times are epoch ms. */
type Int = number | string | bigint;
const int = (v: Int) => Number(v);

export interface ProposalRow {
  id: string;
  kind: string;
  target: string;
  base_version: number;
  document: string;
  proposed_by: string;
  proposed_at: Int;
  state: string;
  closed_at: Int | null;
  closed_by: string | null;
  note: string | null;
}

export interface ApprovalRow {
  proposal_id: string;
  admin: string;
  signature: Uint8Array;
  approved_at: Int;
}

export interface FreezeRow {
  kind: string;
  target: string;
  frozen_at: Int;
  frozen_by: string;
}

export function proposalRecords(rows: ProposalRow[], approvals: ApprovalRow[]): ProposalRecord[] {
  const by = new Map<string, ProposalRecord['approvals']>();
  for (const a of approvals) {
    const list = by.get(a.proposal_id) ?? [];
    list.push({ admin: a.admin, signature: new Uint8Array(a.signature), at: new Date(int(a.approved_at)) });
    by.set(a.proposal_id, list);
  }
  return rows.map((r) => ({
    id: r.id,
    kind: r.kind as ProposalKind,
    target: r.target,
    baseVersion: r.base_version,
    document: r.document,
    proposedBy: r.proposed_by,
    proposedAt: new Date(int(r.proposed_at)),
    state: r.state as ProposalState,
    closedAt: r.closed_at === null ? null : new Date(int(r.closed_at)),
    closedBy: r.closed_by,
    note: r.note,
    approvals: by.get(r.id) ?? [],
  }));
}

export function freezeRecord(r: FreezeRow): FreezeRecord {
  return {
    kind: r.kind as FreezeRecord['kind'],
    target: r.target,
    frozenAt: new Date(int(r.frozen_at)),
    frozenBy: r.frozen_by,
  };
}

export interface AccessRow {
  version: number;
  document: string;
  updated_at: Int;
  updated_by: string;
}

export function accessRecord(r: AccessRow): AccessRecord {
  return {
    version: Number(r.version),
    document: r.document,
    updatedAt: new Date(int(r.updated_at)),
    updatedBy: r.updated_by,
  };
}
