import type { AuditEntry, AuditRequest } from './chain.js';

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
  /** The client's signed request (sign and batch entries of clients that sign), else absent. */
  request?: AuditRequest | undefined;
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
    ...(d.request ? { request: d.request } : {}),
    prevHash,
  };
}

/** A refusal decided before a payload could be decoded or bound to a key. */
export function refusalDraft(
  kind: string,
  base: Pick<AuditDraft, 'at' | 'client' | 'keyId' | 'keyVersion' | 'requestId'>,
  reason: string,
): AuditDraft {
  return { kind, ...base, payloadHash: null, intent: null, decision: 'refused', reason, signatureHash: null };
}

/** A cosigner left out of a threshold signature: which one, why, and for which request. */
export function faultDraft(
  at: Date,
  f: { keyId: string; version: number; cosigner: number; why: string; requestId: string },
): AuditDraft {
  const intent = { cosigner: String(f.cosigner), why: f.why, requestId: f.requestId };
  return eventDraft('threshold.fault', at, null, { keyId: f.keyId, keyVersion: f.version, intent });
}

/** Administrative and lifecycle events: key changes, policy changes, start and stop. */
export function eventDraft(
  kind: string,
  at: Date,
  client: string | null,
  fields: Partial<Pick<AuditDraft, 'keyId' | 'keyVersion' | 'intent' | 'payloadHash'>> = {},
): AuditDraft {
  return {
    kind,
    at,
    client,
    keyId: fields.keyId ?? null,
    keyVersion: fields.keyVersion ?? null,
    requestId: null,
    payloadHash: fields.payloadHash ?? null,
    intent: fields.intent ?? null,
    decision: 'done',
    reason: null,
    signatureHash: null,
  };
}
