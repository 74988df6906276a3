import { execFile } from 'node:child_process';
import { sign as nodeSign } from 'node:crypto';
import { promisify } from 'node:util';
import { type ProposalKind, proposalBytes } from '../src/core/admin/proposal.js';
import type { Pki } from './pki.js';
import { repoRoot } from './token.js';

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

/**
 * The admin scripts (scripts/*.ts) as a security team runs them, against the signer at `address`
 * with client `cn`'s certificate: `as(cn)` gives the connection flags, `approve` runs
 * approve-policy with the admin's key file (it reviews the diff on stderr, `--yes --json`).
 */
export function adminScripts(address: string, pki: Pki) {
  const run = promisify(execFile);
  const tsx = `${repoRoot}/node_modules/.bin/tsx`;
  const as = (cn: string) => [
    '--address',
    address,
    '--ca',
    pki.files.caCert,
    '--cert',
    pki.files.clients[cn]!.cert,
    '--key',
    pki.files.clients[cn]!.key,
  ];
  const approve = (id: string, admin: string, cn: string) =>
    run(
      tsx,
      [
        'scripts/approve-policy.ts',
        id,
        '--admin',
        admin,
        '--admin-key',
        pki.files.clients[cn]!.key,
        '--yes',
        '--json',
        ...as(cn),
      ],
      { cwd: repoRoot },
    );
  return { run, tsx, as, approve };
}
