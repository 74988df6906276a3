import { createHash } from 'node:crypto';
import type { AuditRequest } from '../../core/audit/chain.js';
import type { AuditDraft } from '../../core/audit/draft.js';
import type { Prepared } from '../signing/service.js';

/**
 * Audit drafts of the signer. Each entry has one writer, and is committed in the store
 * transaction of what it records:
 *
 * - key and policy changes: the registries, with the change (Store methods take the drafts);
 * - a sign or batch refused BEFORE its reservation (authorisation, unknown key, undecodable
 *   payload, no policy, stale client time): the gRPC edge (signer-service.ts), on its own, as
 *   nothing was stored;
 * - a refusal or replay decided BY the reservation: that reservation's transaction;
 * - a signature: the transaction that stores its result (complete); a signing failure, and the
 *   cosigner faults met while signing: the transaction that releases the reservation (abandon)
 *   or stores the result;
 * - service start and stop: the service, on their own.
 */

/** What the policy saw, for the auditor: chain, nonce, recipient, value; never calldata or secrets. */
export function intentOf(p: Prepared): Record<string, string> {
  if (!p.evm) {
    const scope: Record<string, string> = p.scope
      ? { chainId: p.scope.chainId.toString(), nonce: p.scope.nonce.toString() }
      : {};
    return { kind: p.kind, bytes: String(p.data.length), ...scope };
  }
  const t = p.evm.intent;
  // A retired version's request can only be a sweep to the active version: said so here.
  const sweep: Record<string, string> = p.sweep
    ? { purpose: 'sweep', activeVersion: String(p.sweep.activeVersion), activeAddress: p.sweep.activeAddress }
    : {};
  return {
    ...sweep,
    kind: 'evm',
    chainId: t.chainId.toString(),
    nonce: t.nonce.toString(),
    to: t.to ?? 'create',
    value: t.value.toString(),
    maxFeePerGas: t.maxFeePerGas.toString(),
    ...(t.data !== '0x' ? { selector: t.data.slice(0, 10) } : {}),
  };
}

export interface DraftBase {
  at: Date;
  client: string;
  keyId: string | null;
  keyVersion: number | null;
  requestId: string | null;
  /** The client's signed request, for the entries of a signed Sign (a batch's is on its batch entry). */
  request?: AuditRequest | undefined;
}

export function signDraft(
  base: DraftBase,
  p: Prepared,
  outcome: { decision: AuditDraft['decision']; reason?: string; signature?: Uint8Array },
): AuditDraft {
  return {
    kind: 'sign',
    ...base,
    payloadHash: p.payloadHash,
    intent: intentOf(p),
    decision: outcome.decision,
    reason: outcome.reason ?? null,
    signatureHash: outcome.signature ? createHash('sha256').update(outcome.signature).digest() : null,
  };
}
