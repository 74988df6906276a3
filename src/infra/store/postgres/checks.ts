/**
 * Values the columns cannot hold are refused before they reach a transaction shared with other
 * calls (a reservation group, a coalesced completion), so that they fail their own call only.
 * SQLite refuses the same nonces and chain ids: its integers are 64-bit.
 */
import { canonicalJson } from '../../../core/audit/chain.js';
import type { AuditDraft } from '../../../core/audit/draft.js';
import type { ReserveRequest } from '../../../core/replay/records.js';

const INT4_MAX = 2 ** 31 - 1;
const INT8_MIN = -(2n ** 63n);
const INT8_MAX = 2n ** 63n - 1n;
const NUMERIC78_MAX = 10n ** 78n - 1n;

/** PostgreSQL text cannot hold NUL. */
export function checkText(what: string, s: string): void {
  if (s.includes('\0')) throw new RangeError(`${what} contains a NUL character`);
}

function checkInt8(what: string, v: bigint): void {
  if (v < INT8_MIN || v > INT8_MAX) throw new RangeError(`${what} ${v} does not fit in a 64-bit integer`);
}

function checkNumeric(what: string, v: bigint): void {
  if (v < -NUMERIC78_MAX || v > NUMERIC78_MAX) throw new RangeError(`${what} ${v} has more than 78 digits`);
}

export function checkRequest(req: ReserveRequest): void {
  if (Number.isNaN(req.now.getTime())) throw new RangeError('reservation time is not a valid date');
  if (!Number.isSafeInteger(req.leaseMs)) throw new RangeError(`lease ${req.leaseMs} ms is not an integer`);
  for (const it of req.items) {
    checkText('client', it.client);
    checkText('request id', it.requestId);
    checkText('key id', it.keyId);
    checkNumeric('value', it.value);
    if (it.token) {
      checkText('token', it.token.contract);
      checkNumeric('token amount', it.token.amount);
    }
    if (it.nonce) {
      checkText('nonce account', it.nonce.account);
      checkInt8('chain id', it.nonce.chainId);
      checkInt8('nonce', it.nonce.nonce);
      checkNumeric('max fee per gas', it.nonce.maxFeePerGas);
      checkNumeric('max priority fee per gas', it.nonce.maxPriorityFeePerGas);
    }
  }
  for (const v of req.velocity) {
    checkText('velocity subject', v.subject);
    for (const token of v.tokens ?? []) checkText('velocity token', token);
    if (!Number.isFinite(v.windowSeconds)) throw new RangeError(`velocity window ${v.windowSeconds} s is not finite`);
  }
  if (req.attempt !== undefined) checkText('attempt', req.attempt);
  if (req.check) {
    checkText('key id', req.check.keyId);
    if (!Number.isInteger(req.check.version) || Math.abs(req.check.version) > INT4_MAX)
      throw new RangeError(`key version ${req.check.version} is not a 32-bit integer`);
  }
  if (req.batch) {
    checkText('client', req.batch.client);
    checkText('batch id', req.batch.batchId);
  }
}

/** Audit drafts, checked like reservations: a draft the columns cannot hold fails its own call only. */
export function checkDrafts(drafts: AuditDraft[]): void {
  for (const d of drafts) {
    if (!(d.at instanceof Date) || Number.isNaN(d.at.getTime())) {
      throw new RangeError('audit entry time is not a valid date');
    }
    const texts = {
      kind: d.kind,
      decision: d.decision,
      client: d.client,
      'key id': d.keyId,
      'request id': d.requestId,
      reason: d.reason,
    };
    for (const [what, v] of Object.entries(texts)) if (v !== null) checkText(`audit ${what}`, v);
    if (d.keyVersion !== null && !(Number.isInteger(d.keyVersion) && Math.abs(d.keyVersion) <= INT4_MAX)) {
      throw new RangeError(`audit key version ${d.keyVersion} is not a 32-bit integer`);
    }
    // What entryHash would refuse, refused now rather than under the audit lock.
    if (d.intent !== null) canonicalJson(d.intent);
  }
}

/** A seq range bound as a bigint parameter (ranges may be given as ±Infinity or fractions). */
export function seqBound(x: number, round: 'ceil' | 'floor'): number {
  if (Number.isNaN(x)) throw new RangeError('audit seq bound is not a number');
  return Math.max(-Number.MAX_SAFE_INTEGER, Math.min(Number.MAX_SAFE_INTEGER, Math[round](x)));
}
