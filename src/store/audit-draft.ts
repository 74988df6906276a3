import type { AuditEntry } from '../audit/chain.js';
import type { AuditDraft } from './audit.js';

const hex = (b: Uint8Array | null) => (b === null ? null : Buffer.from(b).toString('hex'));

/** The chained form of a draft, shared by every store so all of them hash the same bytes. */
export function draftToEntry(d: AuditDraft, seq: number, prevHash: string): Omit<AuditEntry, 'hash'> {
  return {
    seq,
    at: d.at.toISOString(),
    kind: d.kind,
    client: d.client,
    keyId: d.keyId,
    keyVersion: d.keyVersion,
    requestId: d.requestId,
    payloadHash: hex(d.payloadHash),
    intent: d.intent,
    decision: d.decision,
    reason: d.reason,
    signatureHash: hex(d.signatureHash),
    prevHash,
  };
}
