/**
 * The audit hash chain: what an entry is, how it is hashed, and what a checkpoint signs.
 * Pure functions over data, shared by the server (which appends and checkpoints) and the
 * offline verifier (which recomputes). Changing anything here changes every hash: it needs a
 * new export format version.
 */
import { utf8ToBytes } from '@noble/hashes/utils.js';
import { leafHash } from './merkle.js';
import { sha256 } from './sha256.js';

/** The prevHash of entry seq 1: 32 zero bytes, hex. */
export const GENESIS = '00'.repeat(32);

/**
 * One audit entry as the server records and exports it.
 *
 * Every field is hashed and handed to auditors, and the chain cannot be redacted later without
 * breaking it: fields MUST NOT contain secrets (PINs, key material, share plaintext, raw
 * payloads or calldata). Record hashes of payloads and signatures instead. Absent values are
 * `null`, never `undefined` or `''`, and string fields hold no control characters (see
 * format.ts), so the JSONL and CSV forms of an entry are the same entry.
 */
export interface AuditEntry {
  /** 1, 2, 3, ... gapless, in chain order. */
  seq: number;
  /** ISO 8601 UTC, e.g. `2026-01-31T12:00:00.000Z`. */
  at: string;
  /** 'sign' | 'batch' | 'key.create' | 'key.rotate' | 'key.disable' | 'key.destroy' | 'policy.set' | 'service.start' | 'service.stop' | ... */
  kind: string;
  /** Client certificate CN. */
  client: string | null;
  keyId: string | null;
  keyVersion: number | null;
  /** Request id, or batch id for a batch entry. */
  requestId: string | null;
  /** Hex. */
  payloadHash: string | null;
  /** Decoded intent as the policy saw it, e.g. { chainId, nonce, to, value }. */
  intent: Record<string, string> | null;
  decision: 'allowed' | 'refused' | 'done';
  /** Refusal reason code. */
  reason: string | null;
  /** Hex sha256 of the signature bytes returned. */
  signatureHash: string | null;
  /**
   * The client's signed request this entry records (sign and batch entries of clients that sign
   * their requests). Absent, not null, in every other entry and in every entry written before
   * request signing existed: an entry without it hashes to exactly the bytes it did before.
   */
  request?: AuditRequest;
  /** Hex hash of entry seq-1 ({@link GENESIS} for seq 1). */
  prevHash: string;
  /** Hex {@link entryHash} of this entry. */
  hash: string;
}

/**
 * A client's request signature as the audit log keeps it (src/core/request-signing): the exact
 * bytes signed, so an auditor verifies them without the payload and reads off which client, key,
 * request id and client time they name.
 */
export interface AuditRequest {
  /** Hex of the canonical request bytes (format hsm-signer/sign-request/v1, their first line). */
  message: string;
  /** Hex of the client's signature over them (DER ECDSA P-256 or 64-byte Ed25519). */
  signature: string;
  /** `spki-sha256:<hex>` of the key that signed. */
  signingKey: string;
}

/**
 * Fields hashed only when present, each added after the first release of the format: an entry
 * without them hashes (and its leaf encodes) exactly as before, so old logs still verify.
 */
export const OPTIONAL_FIELDS = ['request'] as const;

/** The fields an entry's JSON body holds, i.e. every field but the two chain links. */
export const HASHED_FIELDS = [
  'seq',
  'at',
  'kind',
  'client',
  'keyId',
  'keyVersion',
  'requestId',
  'payloadHash',
  'intent',
  'decision',
  'reason',
  'signatureHash',
] as const;

const HEX32 = /^[0-9a-f]{64}$/;

/**
 * Canonical JSON: object keys sorted by UTF-16 code units, no whitespace, strings and numbers
 * serialised as JSON.stringify does (the RFC 8785 rules for the values an entry holds).
 * Accepts null, booleans, strings, finite numbers, arrays and plain objects; throws on
 * anything else (bigint, undefined, functions, symbols, NaN/Infinity, Dates, byte arrays),
 * including an object property whose value is undefined: a value that JSON would drop or
 * coerce would make two different entries hash alike.
 */
export function canonicalJson(v: unknown): string {
  if (v === null) return 'null';
  switch (typeof v) {
    case 'string':
    case 'boolean':
      return JSON.stringify(v);
    case 'number':
      if (!Number.isFinite(v)) throw new TypeError(`canonicalJson: ${v} is not a JSON number`);
      return JSON.stringify(v);
    case 'object': {
      if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`;
      const proto = Object.getPrototypeOf(v);
      if (proto !== Object.prototype && proto !== null) throw new TypeError('canonicalJson: only plain objects');
      const o = v as Record<string, unknown>;
      const body = Object.keys(o)
        .sort()
        .map((k) => {
          if (o[k] === undefined) throw new TypeError(`canonicalJson: field ${JSON.stringify(k)} is undefined`);
          return `${JSON.stringify(k)}:${canonicalJson(o[k])}`;
        });
      return `{${body.join(',')}}`;
    }
    default:
      throw new TypeError(`canonicalJson: a ${typeof v} is not JSON`);
  }
}

/**
 * The hash of an entry: hex sha256( 32 bytes of prevHash || utf8(canonicalJson(body)) ), where
 * body is the entry's {@link HASHED_FIELDS} and those of its {@link OPTIONAL_FIELDS} it has,
 * i.e. the entry without prevHash and hash.
 *
 * prevHash stays outside the JSON on purpose: the link is a fixed-length binary prefix that no
 * field value can imitate or shift and no canonicalisation rule touches, and the JSON hashed is
 * exactly what the export shows minus the two chain fields.
 *
 * `e` MUST hold exactly the AuditEntry fields (`hash`, if present, is ignored); an unknown
 * field throws rather than going unhashed, and so does a missing one.
 */
export function entryHash(e: Omit<AuditEntry, 'hash'>): string {
  return entryDigests(e, false).hash;
}

/**
 * An entry's chain hash ({@link entryHash}) and its Merkle leaf hash (leaf.ts entryLeafHash),
 * from one canonical serialisation of its fields: the two bodies differ only by `prevHash`,
 * which the leaf includes, so each field value is serialised once and both bodies are joined
 * from the same pieces (canonicalJson of an object is its sorted `"key":value` pairs). Byte for
 * byte what entryHash and entryLeafHash give (test/audit-sha256.test.ts); the store's append
 * path calls this instead of both.
 */
export function entryDigests(e: Omit<AuditEntry, 'hash'>): { hash: string; leaf: Uint8Array };
export function entryDigests(e: Omit<AuditEntry, 'hash'>, withLeaf: false): { hash: string; leaf?: undefined };
export function entryDigests(e: Omit<AuditEntry, 'hash'>, withLeaf = true): { hash: string; leaf?: Uint8Array } {
  const o = e as unknown as Record<string, unknown>;
  for (const k of Object.keys(o)) {
    if (
      k !== 'prevHash' &&
      k !== 'hash' &&
      !(HASHED_FIELDS as readonly string[]).includes(k) &&
      !(OPTIONAL_FIELDS as readonly string[]).includes(k)
    ) {
      throw new TypeError(`entryHash: unknown field ${JSON.stringify(k)}`);
    }
  }
  if (typeof e.prevHash !== 'string' || !HEX32.test(e.prevHash))
    throw new TypeError('entryHash: prevHash must be 64 lowercase hex digits');
  const pairs: Array<[string, string]> = [];
  for (const k of HASHED_FIELDS) {
    if (o[k] === undefined) throw new TypeError(`canonicalJson: field ${JSON.stringify(k)} is undefined`);
    pairs.push([k, `${JSON.stringify(k)}:${canonicalJson(o[k])}`]);
  }
  for (const k of OPTIONAL_FIELDS)
    if (o[k] !== undefined) pairs.push([k, `${JSON.stringify(k)}:${canonicalJson(o[k])}`]);
  const bodyOf = (list: Array<[string, string]>) =>
    `{${list
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([, v]) => v)
      .join(',')}}`;
  const hash = Buffer.from(sha256(Buffer.from(e.prevHash, 'hex'), utf8ToBytes(bodyOf(pairs)))).toString('hex');
  if (!withLeaf) return { hash };
  pairs.push(['prevHash', `"prevHash":${JSON.stringify(e.prevHash)}`]);
  return { hash, leaf: leafHash(utf8ToBytes(bodyOf(pairs))) };
}

/**
 * The bytes an audit-key checkpoint signs (Ed25519): utf8 of
 * `hsm-signer-audit-checkpoint/1\n<seq>\n<headHash>`. The prefix keeps the audit key's
 * signatures from meaning anything in another protocol; the signature vouches that the chain
 * ending at entry `seq` has hash `headHash`, which in turn vouches for every entry before it.
 */
export function checkpointMessage(seq: number, headHash: string): Uint8Array {
  if (!Number.isSafeInteger(seq) || seq < 1) throw new RangeError('checkpointMessage: seq must be a positive integer');
  if (!HEX32.test(headHash)) throw new TypeError('checkpointMessage: headHash must be 64 lowercase hex digits');
  return utf8ToBytes(`hsm-signer-audit-checkpoint/1\n${seq}\n${headHash}`);
}

/** A signed statement by the audit key that entry `seq` of the chain has hash `headHash`. */
export interface AuditCheckpoint {
  seq: number;
  headHash: string;
  /** ISO 8601 UTC time of signing. */
  at: string;
  /** Which audit key signed; the export header lists its public key. */
  auditKey: { keyId: string; version: number };
  /** Hex Ed25519 signature (64 bytes) over {@link checkpointMessage}(seq, headHash). */
  signature: string;
}
