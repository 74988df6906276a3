/**
 * The offline check that every signature the service produced was asked for by a client
 * (`scripts/verify-audit.ts --requests`), over the entries of a chain-verified export in seq
 * order, with the client keys the auditor supplies (certificates' or registered public keys).
 *
 * - An entry that carries a `request` must hold a canonical request signed by a key of the
 *   entry's client, naming the entry's client, key, request id (batch id for a batch entry) and
 *   key version (0, "the active one", or the entry's); a batch's must have one payload line per item.
 * - A `sign` entry with a signature (signatureHash) must be covered: by its own request, or, for
 *   batch item "<batch id>#<i>", by an earlier verified batch request of the same client with
 *   more than i items.
 *
 * What it cannot check offline: that the payload signed is the one the client hashed (the log
 * keeps no payloads, and its payloadHash also covers the key id); the signer checks that online
 * before anything is reserved, and so will each cosigner of a threshold key.
 */
import { hexToBytes } from '@noble/hashes/utils.js';
import type { AuditEntry } from '../audit/chain.js';
import { REQUEST_RULES, verifySignature } from '../signatures.js';
import { parseCanonicalRequest } from './canonical.js';
import type { RequestKey } from './keys.js';

export interface RequestFinding {
  seq: number;
  what: string;
}

export interface RequestReport {
  ok: boolean;
  /** Entries whose request verified. */
  verified: number;
  /** Signatures covered by a verified request (their own, or their batch's). */
  covered: number;
  /** Every problem, in seq order. */
  findings: RequestFinding[];
}

export class RequestAuditor {
  private verified = 0;
  private covered = 0;
  private readonly findings: RequestFinding[] = [];
  /** Verified batches: "<client>\0<batch id>" -> number of items. */
  private readonly batches = new Map<string, number>();

  constructor(private readonly keys: ReadonlyMap<string, readonly RequestKey[]>) {}

  accept(e: AuditEntry): void {
    const own = e.request ? this.checkRequest(e) : false;
    if (e.kind !== 'sign' || e.signatureHash === null) return;
    if (own || this.coveredByBatch(e)) this.covered++;
    else if (!e.request)
      this.findings.push({ seq: e.seq, what: `a signature (request ${e.requestId ?? '-'}) without a client request` });
  }

  report(): RequestReport {
    return { ok: this.findings.length === 0, verified: this.verified, covered: this.covered, findings: this.findings };
  }

  private checkRequest(e: AuditEntry): boolean {
    const r = e.request!;
    const fail = (what: string) => {
      this.findings.push({ seq: e.seq, what });
      return false;
    };
    let text: string;
    let parsed: ReturnType<typeof parseCanonicalRequest>;
    try {
      text = new TextDecoder('utf-8', { fatal: true }).decode(hexToBytes(r.message));
      parsed = parseCanonicalRequest(text);
    } catch (err) {
      return fail(`its request is not a canonical request: ${(err as Error).message}`);
    }
    if (e.client === null || parsed.client !== e.client) return fail('its request names another client');
    const key = (this.keys.get(e.client) ?? []).find((k) => k.fingerprint === r.signingKey);
    if (!key) return fail(`its request is signed by ${r.signingKey}, not a key you supplied for "${e.client}"`);
    if (!verifySignature(key, hexToBytes(r.message), hexToBytes(r.signature), REQUEST_RULES))
      return fail("its request's signature does not verify");
    if (parsed.keyId !== e.keyId) return fail('its request names another key');
    if (parsed.id !== e.requestId) return fail('its request names another request id');
    if (parsed.keyVersion !== 0 && parsed.keyVersion !== e.keyVersion)
      return fail('its request names another key version');
    const kind = e.kind === 'batch' ? 'batch' : 'sign';
    if (parsed.kind !== kind) return fail(`its request is a ${parsed.kind} request in a ${e.kind} entry`);
    if (kind === 'batch') {
      if (e.intent?.items !== String(parsed.payloads.length)) return fail('its request has another number of items');
      this.batches.set(`${e.client}\0${parsed.id}`, parsed.payloads.length);
    } else if (parsed.payloads.length !== 1) return fail('its request has more than one payload');
    this.verified++;
    return true;
  }

  private coveredByBatch(e: AuditEntry): boolean {
    const m = /^(.*)#(0|[1-9][0-9]*)$/.exec(e.requestId ?? '');
    if (!m || e.client === null) return false;
    const items = this.batches.get(`${e.client}\0${m[1]}`);
    return items !== undefined && Number(m[2]) < items;
  }
}
