import type { AuditEntry } from './chain.js';

/** An audit entry before the store numbers and chains it. MUST NOT carry secrets. */
export interface AuditDraft {
  kind: string;
  at: Date;
  client: string | null;
  keyId: string | null;
  keyVersion: number | null;
  /** Request id, or batch id for batch entries. */
  requestId: string | null;
  payloadHash: Uint8Array | null;
  /** Decoded intent: chain, nonce, recipient, value... as decimal or hex strings. */
  intent: Record<string, string> | null;
  decision: 'allowed' | 'refused' | 'done';
  reason: string | null;
  /** sha256 of the signature bytes returned, for signed entries. */
  signatureHash: Uint8Array | null;
}

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
