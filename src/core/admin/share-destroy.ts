import { utf8ToBytes } from '@noble/hashes/utils.js';
import { APPROVAL_RULES, verifySignature } from '../signatures.js';
import { type AdminSet, type Approval, checkQuorum } from './approvals.js';
import type { ProposalSubject } from './proposal.js';

/**
 * A cosigner destroys a committed share only on the admin quorum's signed order, which it checks
 * itself against the admins pinned in its own config (README "Destroying threshold shares"). The
 * order is the approved "destroy-key" proposal as the signer stores it: its id, its document and
 * the admins' signatures over its canonical bytes (proposal.ts). Pure: no clock, no store.
 */
export interface DestroyOrder {
  proposalId: string;
  /** Canonical JSON of {"confirmKeyId","keyId","version"[,"confirmSwept"]}, as approved. */
  document: string;
  approvals: ReadonlyArray<{ admin: string; signature: Uint8Array }>;
}

export type OrderCheck =
  | { ok: true; approvals: Approval[] }
  | { ok: false; problem: 'no-admins' | 'missing' | 'malformed' | 'other-key' | 'quorum'; why: string };

const PROPOSAL_ID = /^[0-9a-f]{32}$/;

/**
 * Whether `order` is the quorum's order to destroy exactly `keyId` v`version`: the document
 * names that key and version, and at least `quorum` distinct admins signed that proposal's bytes.
 */
export function checkDestroyOrder(
  admins: AdminSet | undefined,
  keyId: string,
  version: number,
  order: DestroyOrder | null | undefined,
): OrderCheck {
  if (!admins) return { ok: false, problem: 'no-admins', why: 'no admins are configured here to check an order' };
  if (!order?.proposalId) return { ok: false, problem: 'missing', why: 'no destroy order was given' };
  if (!PROPOSAL_ID.test(order.proposalId))
    return { ok: false, problem: 'malformed', why: 'the order has no valid proposal id' };
  let doc: { keyId?: unknown; version?: unknown; confirmKeyId?: unknown };
  try {
    doc = JSON.parse(order.document);
  } catch {
    return { ok: false, problem: 'malformed', why: 'the order document is not JSON' };
  }
  if (doc?.keyId !== keyId || doc.version !== version || doc.confirmKeyId !== keyId)
    return { ok: false, problem: 'other-key', why: `the order does not name ${keyId} v${version}` };
  const subject: ProposalSubject = {
    kind: 'destroy-key',
    id: order.proposalId,
    target: keyId,
    baseVersion: version,
    document: order.document,
  };
  // The approval times are the signer's and not signed: they play no part in this check.
  const at = new Date(0);
  const approvals = order.approvals.map((a) => ({ admin: a.admin, signature: a.signature, at }));
  const check = checkQuorum(admins, subject, approvals);
  if (check.valid.length < admins.quorum) {
    const bad = check.invalid.map((i) => `${i.admin}: ${i.why}`).join('; ');
    return {
      ok: false,
      problem: 'quorum',
      why: `${check.valid.length} valid approval(s) of ${admins.quorum} needed${bad ? ` (${bad})` : ''}`,
    };
  }
  return { ok: true, approvals: check.valid };
}

/**
 * What one admin signs to cancel a scheduled share destruction, version 1:
 *
 *   "hsm-signer/share-destroy-cancel/v1\n" key_id "\n" key_version (decimal) "\n" proposal_id "\n"
 *
 * UTF-8. The prefix keeps these bytes apart from proposal approvals and request signatures; the
 * proposal id ties the cancel to one order, which a cosigner then never accepts again. It names
 * no cosigner: one signature cancels the order on every cosigner it is sent to.
 */
export const SHARE_DESTROY_CANCEL_DOMAIN = 'hsm-signer/share-destroy-cancel/v1\n';

export interface CancelSubject {
  keyId: string;
  version: number;
  proposalId: string;
}

export function cancelBytes(c: CancelSubject): Uint8Array {
  if (!/^[^\n]+$/.test(c.keyId)) throw new Error('key id must be one line');
  if (!PROPOSAL_ID.test(c.proposalId)) throw new Error('proposal id must be 32 lowercase hex characters');
  if (!Number.isSafeInteger(c.version) || c.version < 1) throw new Error('key version must be >= 1');
  return utf8ToBytes(`${SHARE_DESTROY_CANCEL_DOMAIN}${c.keyId}\n${c.version}\n${c.proposalId}\n`);
}

/** Whether `signature` is admin `admin`'s cancel of `c`; the reason when it is not. */
export function checkCancel(
  admins: AdminSet | undefined,
  c: CancelSubject,
  admin: string,
  signature: Uint8Array,
): string | null {
  if (!admins) return 'no admins are configured here';
  const key = admins.members.get(admin);
  if (!key) return `"${admin}" is not an admin`;
  let bytes: Uint8Array;
  try {
    bytes = cancelBytes(c);
  } catch (e) {
    return (e as Error).message;
  }
  return verifySignature(key, bytes, signature, APPROVAL_RULES)
    ? null
    : `the signature is not ${admin}'s over this cancel`;
}
