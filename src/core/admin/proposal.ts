import { sha256 } from '@noble/hashes/sha2.js';
import { bytesToHex, utf8ToBytes } from '@noble/hashes/utils.js';

/**
 * What admins sign to approve a change (specified in proto/signer/v1/signer.proto, "Admin
 * quorum"). Pure: the signer, the scripts and (issue 13) the cosigners build the same bytes.
 *
 *   "hsm-signer/admin-proposal/v1\n"
 *   kind "\n" id "\n" target "\n" base_version (decimal) "\n"
 *   hex(SHA-256(document)) "\n"
 *
 * The prefix separates these bytes from anything else an admin's key signs (TLS handshakes,
 * request signatures); "v1" lets the encoding change without an old signature meaning something
 * new. The proposal id makes each approval single-use: the same document proposed again needs
 * new signatures.
 */
export const PROPOSAL_DOMAIN = 'hsm-signer/admin-proposal/v1\n';

export const proposalKinds = ['policy', 'destroy-key', 'unfreeze-key', 'unfreeze-policy', 'access'] as const;
export type ProposalKind = (typeof proposalKinds)[number];

export interface ProposalSubject {
  kind: ProposalKind;
  /** Random, 32 lowercase hex characters. */
  id: string;
  /** The policy name, or the key id (destroy-key, unfreeze-key), or the policy name (unfreeze-policy), or "access". */
  target: string;
  /** policy, access: the version it replaces (0: none yet); destroy-key: the key version; unfreeze: 0. */
  baseVersion: number;
  /** policy: canonical policy JSON; access: canonical access JSON (core/admin/access.ts); destroy-key: canonical JSON of the request; unfreeze: "". */
  document: string;
}

const LINE = /^[^\n]*$/;

export function proposalBytes(p: ProposalSubject): Uint8Array {
  for (const [field, v] of [
    ['kind', p.kind],
    ['id', p.id],
    ['target', p.target],
  ] as const) {
    if (!LINE.test(v)) throw new Error(`proposal ${field} must not contain a newline`);
  }
  if (!Number.isSafeInteger(p.baseVersion) || p.baseVersion < 0) throw new Error('base version must be >= 0');
  const docHash = bytesToHex(sha256(utf8ToBytes(p.document)));
  return utf8ToBytes(`${PROPOSAL_DOMAIN}${p.kind}\n${p.id}\n${p.target}\n${p.baseVersion}\n${docHash}\n`);
}
