/**
 * Export format `hsm-signer-audit/1`, JSONL form: one JSON object per line.
 *
 *   line 1   {"type":"header","format":"hsm-signer-audit/1","exportedAt":ISO,"from":ISO|null,
 *             "to":ISO|null,"auditKeys":[{"keyId","version","algorithm":"ed25519","publicKey":hex32}]}
 *   then     {"type":"entry",...AuditEntry} in seq order, each {"type":"checkpoint",...AuditCheckpoint}
 *            right after the entry whose seq it covers; the export ends with a checkpoint over
 *            its last entry.
 *   last     {"type":"note","size":N,"note":signed note,"inclusion":[hex32],"consistency":[hex32]}
 *            (JSONL only; exports before it lack it): the C2SP tree checkpoint the export ends
 *            under (size N >= its last seq, the log's signature and the witness cosignatures
 *            collected so far) with the proofs that tie the export's entries to it offline:
 *            the audit path of the first entry in the tree of N (its left half is the tree
 *            before the period; empty when the export starts at seq 1) and the consistency
 *            proof from the last entry's size to N (empty when N is the last seq). Untrusted
 *            like every proof: only the note's signatures and the recomputed leaves count.
 *
 * An entry may carry one optional field, `request` (the client's signed request, chain.ts
 * AuditRequest), added after the format's first release: entries without it, i.e. every older
 * entry, are read, hashed and verified exactly as before; a reader of the first release refuses
 * an entry that has it (unknown field) rather than verifying it without it.
 *
 * The header is not signed: it only names the audit public keys, which the auditor MUST
 * compare with the ones they hold. Records are validated strictly (no unknown or missing
 * fields, lowercase hex, ISO UTC times, no control characters in string fields) so one record
 * has exactly one reading in both JSONL and CSV (csv.ts).
 */
import type { AuditCheckpoint, AuditEntry, AuditRequest } from './chain.js';

export const EXPORT_FORMAT = 'hsm-signer-audit/1';

/** An Ed25519 audit public key, raw 32 bytes as hex. */
export interface AuditKeyInfo {
  keyId: string;
  version: number;
  algorithm: 'ed25519';
  publicKey: string;
}

export interface ExportHeader {
  type: 'header';
  format: typeof EXPORT_FORMAT;
  exportedAt: string;
  /** The period asked for (not authenticated). */
  from: string | null;
  to: string | null;
  auditKeys: AuditKeyInfo[];
}

export type EntryRecord = { type: 'entry' } & AuditEntry;
export type CheckpointRecord = { type: 'checkpoint' } & AuditCheckpoint;
export interface NoteRecord {
  type: 'note';
  size: number;
  note: string;
  inclusion: string[];
  consistency: string[];
}
export type ExportRecord = ExportHeader | EntryRecord | CheckpointRecord | NoteRecord;

/** A line that is not a valid record; `line` is 1-based. The message names fields, never values. */
export class MalformedRecord extends Error {
  constructor(
    readonly line: number,
    message: string,
  ) {
    super(message);
    this.name = 'MalformedRecord';
  }
}

/** One JSONL line for a record (no newline). */
export function toJsonLine(record: ExportRecord): string {
  return JSON.stringify(record);
}

/** Parses and validates one JSONL line; throws {@link MalformedRecord}. */
export function parseJsonLine(text: string, line: number): ExportRecord {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    // JSON.parse's own message quotes the input; a report must not echo arbitrary bytes.
    throw new MalformedRecord(line, 'not a JSON record');
  }
  return validateRecord(value, line);
}

type Rule = readonly [test: (v: unknown) => boolean, expected: string];

const ISO_UTC = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z$/;
// C0 controls and DEL: they would split a CSV or log line or drive an auditor's terminal.
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point
const CONTROL = /[\u0000-\u001f\u007f]/;

const positive: Rule = [(v) => Number.isSafeInteger(v) && (v as number) >= 1, 'a positive integer'];
const text: Rule = [
  (v) => typeof v === 'string' && v.length > 0 && !CONTROL.test(v),
  'a non-empty string without control characters',
];
const time: Rule = [
  (v) => typeof v === 'string' && ISO_UTC.test(v) && !Number.isNaN(Date.parse(v)),
  'an ISO 8601 UTC time',
];
const hex32: Rule = [(v) => typeof v === 'string' && /^[0-9a-f]{64}$/.test(v), '64 lowercase hex digits'];
const hex64: Rule = [(v) => typeof v === 'string' && /^[0-9a-f]{128}$/.test(v), '128 lowercase hex digits'];
const hex: Rule = [(v) => typeof v === 'string' && /^(?:[0-9a-f]{2})+$/.test(v), 'lowercase hex bytes'];
const kind: Rule = [
  (v) => typeof v === 'string' && /^[a-z][a-z0-9._-]{0,63}$/.test(v),
  'a lowercase event name like "key.create"',
];
const intent: Rule = [
  (v) => isPlainObject(v) && Object.values(v).every((x) => typeof x === 'string'),
  'an object of strings',
];
const oneOf = (...values: string[]): Rule => [
  (v) => values.includes(v as string),
  values.map((x) => JSON.stringify(x)).join(' or '),
];
const orNull = ([test, expected]: Rule): Rule => [(v) => v === null || test(v), `${expected} or null`];

/** Fields an entry may lack (chain.ts OPTIONAL_FIELDS); when present they follow these rules. */
const ENTRY_OPTIONAL: Record<string, Rule> = {
  request: [(v) => isPlainObject(v), 'an object'],
};
const REQUEST: Record<keyof AuditRequest, Rule> = {
  message: hex,
  signature: hex,
  signingKey: [
    (v) => typeof v === 'string' && /^spki-sha256:[0-9a-f]{64}$/.test(v),
    '"spki-sha256:" and 64 lowercase hex digits',
  ],
};

const ENTRY: Record<Exclude<keyof EntryRecord, 'request'>, Rule> = {
  type: oneOf('entry'),
  seq: positive,
  at: time,
  kind,
  client: orNull(text),
  keyId: orNull(text),
  keyVersion: orNull(positive),
  requestId: orNull(text),
  payloadHash: orNull(hex),
  intent: orNull(intent),
  decision: oneOf('allowed', 'refused', 'done'),
  reason: orNull(text),
  signatureHash: orNull(hex32),
  prevHash: hex32,
  hash: hex32,
};

const CHECKPOINT: Record<keyof CheckpointRecord, Rule> = {
  type: oneOf('checkpoint'),
  seq: positive,
  headHash: hex32,
  at: time,
  auditKey: [(v) => isPlainObject(v), 'an object'],
  signature: hex64,
};
const proof: Rule = [
  (v) => Array.isArray(v) && v.length <= 128 && v.every((h) => hex32[0](h)),
  'an array of at most 128 hashes of 64 lowercase hex digits',
];
const NOTE: Record<keyof NoteRecord, Rule> = {
  type: oneOf('note'),
  size: positive,
  // A signed note is lines of text: newlines, and no other control character.
  note: [
    (v) => typeof v === 'string' && v.length > 0 && v.length <= 65_536 && !CONTROL.test(v.replaceAll('\n', '')),
    'a signed note (text lines, at most 64 KiB)',
  ],
  inclusion: proof,
  consistency: proof,
};
const KEY_REF: Record<keyof AuditCheckpoint['auditKey'], Rule> = { keyId: text, version: positive };

const HEADER: Record<keyof ExportHeader, Rule> = {
  type: oneOf('header'),
  format: oneOf(EXPORT_FORMAT),
  exportedAt: time,
  from: orNull(time),
  to: orNull(time),
  auditKeys: [Array.isArray, 'an array'],
};
const AUDIT_KEY: Record<keyof AuditKeyInfo, Rule> = {
  keyId: text,
  version: positive,
  algorithm: oneOf('ed25519'),
  publicKey: hex32,
};

/**
 * Checks that a parsed value is a record of this format: exactly the fields of its type, each
 * of the right shape. Returns it typed; throws {@link MalformedRecord} naming the first bad field.
 */
export function validateRecord(value: unknown, line: number): ExportRecord {
  if (!isPlainObject(value)) throw new MalformedRecord(line, 'a record must be a JSON object');
  switch (value.type) {
    case 'entry':
      check(value, ENTRY, 'entry', line, ENTRY_OPTIONAL);
      if (value.request !== undefined) check(value.request, REQUEST, 'entry.request', line);
      return value as unknown as EntryRecord;
    case 'checkpoint':
      check(value, CHECKPOINT, 'checkpoint', line);
      check(value.auditKey, KEY_REF, 'checkpoint.auditKey', line);
      return value as unknown as CheckpointRecord;
    case 'note':
      return check(value, NOTE, 'note', line) as unknown as NoteRecord;
    case 'header':
      if (value.format !== EXPORT_FORMAT)
        throw new MalformedRecord(line, `unknown format: this verifier reads ${EXPORT_FORMAT} only`);
      check(value, HEADER, 'header', line);
      (value.auditKeys as unknown[]).forEach((k, i) => check(k, AUDIT_KEY, `header.auditKeys[${i}]`, line));
      return value as unknown as ExportHeader;
    default:
      throw new MalformedRecord(line, 'unknown record type: expected "header", "entry", "checkpoint" or "note"');
  }
}

function check(
  value: unknown,
  rules: Record<string, Rule>,
  what: string,
  line: number,
  optional: Record<string, Rule> = {},
): Record<string, unknown> {
  if (!isPlainObject(value)) throw new MalformedRecord(line, `${what} must be an object`);
  for (const k of Object.keys(value)) {
    if (Object.hasOwn(optional, k)) {
      const [test, expected] = optional[k]!;
      if (!test(value[k])) throw new MalformedRecord(line, `${what}.${k} must be ${expected}`);
      continue;
    }
    if (!Object.hasOwn(rules, k))
      throw new MalformedRecord(line, `${what} has an unknown field ${JSON.stringify(k.slice(0, 40))}`);
  }
  for (const [k, [test, expected]] of Object.entries(rules)) {
    if (!Object.hasOwn(value, k)) throw new MalformedRecord(line, `${what} lacks the field "${k}"`);
    if (!test(value[k])) throw new MalformedRecord(line, `${what}.${k} must be ${expected}`);
  }
  return value;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
