import { sha256 } from '@noble/hashes/sha2.js';
import { bytesToHex } from '@noble/hashes/utils.js';
import { APPROVAL_RULES, type PublicKey, verifySignature } from '../signatures.js';
import { type ProposalSubject, proposalBytes } from './proposal.js';

/** The deployment's admins: k of n, each named, each with the key their approvals verify under. */
export interface AdminSet {
  quorum: number;
  members: ReadonlyMap<string, PublicKey>;
  /** How long an approved loosening waits before it applies (any admin may cancel meanwhile). */
  delaySeconds: number;
}

export interface Approval {
  admin: string;
  signature: Uint8Array;
  at: Date;
}

export interface QuorumCheck {
  /** Approvals that count: a member's, verifying over the subject's bytes, one per admin, oldest first. */
  valid: Approval[];
  /** Approvals that do not count, and why (not a member, bad signature, a second one by an admin). */
  invalid: Array<{ admin: string; why: string }>;
  /** When the k-th valid approval was made; null while fewer than k. */
  reachedAt: Date | null;
}

/** Whether `signature` is `admin`'s approval of `subject`; the reason when it is not. */
export function checkApproval(admins: AdminSet, subject: ProposalSubject, admin: string, signature: Uint8Array) {
  const key = admins.members.get(admin);
  if (!key) return `"${admin}" is not an admin`;
  if (!verifySignature(key, proposalBytes(subject), signature, APPROVAL_RULES))
    return `the signature is not ${admin}'s over proposal ${subject.id} as stored`;
  return null;
}

/**
 * Re-verifies every approval against the subject as it is now (what is stored, not what was
 * proposed): an approval of a document edited since counts for nothing.
 */
export function checkQuorum(admins: AdminSet, subject: ProposalSubject, approvals: readonly Approval[]): QuorumCheck {
  const valid: Approval[] = [];
  const invalid: QuorumCheck['invalid'] = [];
  const seen = new Set<string>();
  for (const a of [...approvals].sort((x, y) => x.at.getTime() - y.at.getTime())) {
    const why = seen.has(a.admin)
      ? 'a second approval by the same admin'
      : checkApproval(admins, subject, a.admin, a.signature);
    if (why) invalid.push({ admin: a.admin, why });
    else {
      seen.add(a.admin);
      valid.push(a);
    }
  }
  const reachedAt = valid.length >= admins.quorum ? valid[admins.quorum - 1]!.at : null;
  return { valid, invalid, reachedAt };
}

/** For audit entries: who approved, and a hash of each signature (the signatures stay in the store). */
export function approvalsSummary(approvals: readonly Approval[]): string {
  return approvals.map((a) => `${a.admin}:${bytesToHex(sha256(a.signature))}`).join(',');
}
