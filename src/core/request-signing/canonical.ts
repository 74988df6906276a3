/**
 * The canonical bytes a client signs for a Sign or SignBatch request, format
 * `hsm-signer/sign-request/v1` (specified for clients in proto/signer/v1/signer.proto, next to
 * SignRequest). UTF-8 text, one field per line, every line ending in LF, in this order:
 *
 *   hsm-signer/sign-request/v1
 *   kind sign|batch
 *   client <client certificate CN>
 *   key <key_id>
 *   version <key_version as sent; 0 = active; always 0 for a batch>
 *   id <request_id or batch_id>
 *   time <client_time in milliseconds since the Unix epoch, decimal>
 *   payloads <n>
 *   <payload kind> <replay scope> <sha256 of the payload bytes, 64 lowercase hex>   (n lines, in order)
 *
 * payload kind is `digest`, `message` or `evm_transaction`; the payload bytes are the digest,
 * the message, or `unsigned_tx`; the replay scope is `-` or `<chain_id>/<account_nonce>`.
 * Numbers are decimal without leading zeros. Text values are the rest of their line: any UTF-8
 * but control characters (U+0000-U+001F, U+007F), so no value can add or shift a line.
 *
 * Why text lines: a Python, Go or shell client rebuilds them with string formatting and one
 * SHA-256 per payload, nothing to agree on about protobuf serialisation (which is not
 * canonical); the first line separates these signatures from any other use of the key (a TLS
 * handshake, a C2SP note); a hash per payload keeps the message small for large batches and lets
 * a cosigner check it from the payload it receives alone.
 */
import { sha256 } from '@noble/hashes/sha2.js';
import { bytesToHex, utf8ToBytes } from '@noble/hashes/utils.js';

export const SIGN_REQUEST_FORMAT = 'hsm-signer/sign-request/v1';

export type PayloadKind = 'digest' | 'message' | 'evm_transaction';

export interface CanonicalPayload {
  kind: PayloadKind;
  /** The digest, the message or the unsigned transaction. */
  bytes: Uint8Array;
  scope?: { chainId: bigint; nonce: bigint } | undefined;
}

export interface CanonicalRequest {
  kind: 'sign' | 'batch';
  client: string;
  keyId: string;
  /** 0 for the active version; a batch always has 0. */
  keyVersion: number;
  /** Request id, or batch id for a batch. */
  id: string;
  /** Client time in ms since the Unix epoch, as the signer reads client_time (nanos truncated). */
  clientTimeMs: number;
  payloads: readonly CanonicalPayload[];
}

// biome-ignore lint/suspicious/noControlCharactersInRegex: refusing control characters is the point
const CONTROL = /[\u0000-\u001f\u007f]/;
const KINDS: readonly PayloadKind[] = ['digest', 'message', 'evm_transaction'];

function textValue(field: string, v: string): string {
  if (typeof v !== 'string' || v === '' || CONTROL.test(v))
    throw new RangeError(`${field} must be a non-empty string without control characters`);
  return v;
}

function natural(field: string, v: number | bigint): string {
  const ok = typeof v === 'bigint' ? v >= 0n : Number.isSafeInteger(v) && v >= 0;
  if (!ok) throw new RangeError(`${field} must be a non-negative integer`);
  return v.toString();
}

/** The text of the canonical request (see the file comment); throws RangeError on a value it cannot carry. */
export function canonicalRequestText(r: CanonicalRequest): string {
  if (r.kind !== 'sign' && r.kind !== 'batch') throw new RangeError('kind must be "sign" or "batch"');
  if (r.payloads.length === 0) throw new RangeError('a request has at least one payload');
  const lines = [
    SIGN_REQUEST_FORMAT,
    `kind ${r.kind}`,
    `client ${textValue('client', r.client)}`,
    `key ${textValue('key', r.keyId)}`,
    `version ${natural('version', r.keyVersion)}`,
    `id ${textValue('id', r.id)}`,
    `time ${natural('time', r.clientTimeMs)}`,
    `payloads ${r.payloads.length}`,
  ];
  for (const p of r.payloads) {
    if (!KINDS.includes(p.kind)) throw new RangeError('payload kind must be digest, message or evm_transaction');
    const scope = p.scope ? `${natural('chain id', p.scope.chainId)}/${natural('nonce', p.scope.nonce)}` : '-';
    lines.push(`${p.kind} ${scope} ${bytesToHex(sha256(p.bytes))}`);
  }
  return `${lines.join('\n')}\n`;
}

/** The bytes a client signs: UTF-8 of {@link canonicalRequestText}. */
export function canonicalRequestBytes(r: CanonicalRequest): Uint8Array {
  return utf8ToBytes(canonicalRequestText(r));
}

/** The header fields of canonical request text (what an auditor compares with an audit entry). */
export interface ParsedRequest {
  kind: 'sign' | 'batch';
  client: string;
  keyId: string;
  keyVersion: number;
  id: string;
  clientTimeMs: number;
  payloads: Array<{ kind: PayloadKind; scope: string; sha256: string }>;
}

/**
 * Reads canonical request text back (the offline auditor's view of a stored request). Strict:
 * anything {@link canonicalRequestText} could not have written throws RangeError.
 */
export function parseCanonicalRequest(text: string): ParsedRequest {
  const lines = text.split('\n');
  if (lines.pop() !== '') throw new RangeError('canonical request text ends with LF');
  const field = (i: number, name: string): string => {
    const line = lines[i];
    if (line === undefined || !line.startsWith(`${name} `)) throw new RangeError(`line ${i + 1} must be "${name} ..."`);
    return line.slice(name.length + 1);
  };
  if (lines[0] !== SIGN_REQUEST_FORMAT) throw new RangeError(`line 1 must be ${SIGN_REQUEST_FORMAT}`);
  const kind = field(1, 'kind');
  if (kind !== 'sign' && kind !== 'batch') throw new RangeError('kind must be "sign" or "batch"');
  const num = (s: string, what: string) => {
    if (!/^(0|[1-9][0-9]*)$/.test(s) || !Number.isSafeInteger(Number(s)))
      throw new RangeError(`${what} is not a number`);
    return Number(s);
  };
  const n = num(field(7, 'payloads'), 'payloads');
  if (n < 1 || lines.length !== 8 + n) throw new RangeError('payload lines do not match their count');
  const payloads = lines.slice(8).map((line) => {
    const m = /^(digest|message|evm_transaction) (-|(?:0|[1-9][0-9]*)\/(?:0|[1-9][0-9]*)) ([0-9a-f]{64})$/.exec(line);
    if (!m) throw new RangeError('malformed payload line');
    return { kind: m[1] as PayloadKind, scope: m[2]!, sha256: m[3]! };
  });
  const parsed: ParsedRequest = {
    kind,
    client: field(2, 'client'),
    keyId: field(3, 'key'),
    keyVersion: num(field(4, 'version'), 'version'),
    id: field(5, 'id'),
    clientTimeMs: num(field(6, 'time'), 'time'),
    payloads,
  };
  for (const v of [parsed.client, parsed.keyId, parsed.id])
    if (v === '' || CONTROL.test(v)) throw new RangeError('empty text value');
  return parsed;
}
