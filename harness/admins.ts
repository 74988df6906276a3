import { sign as nodeSign } from 'node:crypto';
import { type ProposalKind, proposalBytes } from '../src/core/admin/proposal.js';

/** The fields of a proposal (as ListProposals returns them) that its approvals sign. */
export interface ProposalFields {
  id: string;
  kind: string;
  target: string;
  baseVersion: number;
  document: string;
}

/**
 * What an admin does (scripts/approve-policy.ts): rebuild the canonical bytes from the
 * proposal's fields and sign them with their own P-256 key (PEM), with Node's crypto (the
 * signer verifies with @noble/curves). Returns ApproveProposal's request.
 */
export function adminApproval(p: ProposalFields, admin: string, keyPem: string | Buffer) {
  const bytes = proposalBytes({
    kind: p.kind as ProposalKind,
    id: p.id,
    target: p.target,
    baseVersion: p.baseVersion,
    document: p.document,
  });
  return {
    proposalId: p.id,
    admin,
    signature: nodeSign('sha256', bytes, { key: keyPem, dsaEncoding: 'ieee-p1363' }),
  };
}
