/**
 * CSV form of `hsm-signer-audit/1` (RFC 4180): the column row {@link CSV_HEADER}, then one row
 * per record, CRLF-terminated, in the JSONL order. Columns a record type does not use are empty;
 * an empty cell is null; `intent` is its canonical JSON. The header record becomes one
 * `header` row per audit key (a header with no keys, one row with empty key cells).
 *
 * Cells a spreadsheet would run as a formula are neutralised (OWASP, CSV injection): a value
 * that starts with = + - @ tab or CR (or their full-width forms), after any leading single
 * quotes, is written with one more single quote in front, inside double quotes. The reader
 * removes exactly that quote, so the verifier hashes the original value and an escaped export
 * verifies like the JSONL one; a value starting with a quote but no formula character is
 * written and read verbatim. Since format.ts forbids control characters in string fields and
 * canonical JSON escapes them, every row is one physical line.
 */
import { canonicalJson } from './chain.js';
import { type ExportRecord, MalformedRecord, validateRecord } from './format.js';

export const CSV_COLUMNS = [
  'type',
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
  'prevHash',
  'hash',
  'headHash',
  'auditKeyId',
  'auditKeyVersion',
  'signature',
  'publicKey',
  'algorithm',
  'format',
  'exportedAt',
  'from',
  'to',
  // Added with request signing (an entry's optional `request`, canonical JSON); rows and
  // headers written before it lack this last column and still parse.
  'request',
] as const;
type Column = (typeof CSV_COLUMNS)[number];

/** The first line of a CSV export (without its CRLF). */
export const CSV_HEADER = CSV_COLUMNS.join(',');
/** The first line of CSV exports written before the `request` column. */
export const CSV_HEADER_BEFORE_REQUEST = CSV_COLUMNS.slice(0, -1).join(',');
/** Whether a first line is a CSV export's column row (this one or the one before `request`). */
export const isCsvHeader = (line: string): boolean => line === CSV_HEADER || line === CSV_HEADER_BEFORE_REQUEST;

const ENTRY_COLUMNS: Column[] = [
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
  'prevHash',
  'hash',
  'request',
];
const CHECKPOINT_COLUMNS: Column[] = ['seq', 'at', 'headHash', 'auditKeyId', 'auditKeyVersion', 'signature'];
const HEADER_COLUMNS: Column[] = [
  'format',
  'exportedAt',
  'from',
  'to',
  'auditKeyId',
  'auditKeyVersion',
  'algorithm',
  'publicKey',
];

/**
 * The CSV text of one record, without the final CRLF; a header with several audit keys gives
 * several rows joined by CRLF.
 */
export function toCsvRow(record: ExportRecord): string {
  switch (record.type) {
    case 'entry': {
      const { type, request, ...e } = record;
      const json = {
        intent: e.intent === null ? null : canonicalJson(e.intent),
        request: request ? canonicalJson(request) : null,
      };
      return row({ type, ...e, ...json });
    }
    case 'checkpoint': {
      const { auditKey, ...c } = record;
      return row({ ...c, auditKeyId: auditKey.keyId, auditKeyVersion: auditKey.version });
    }
    case 'header': {
      const { auditKeys, ...h } = record;
      const keys = auditKeys.length ? auditKeys : [null];
      return keys
        .map((k) =>
          row({
            ...h,
            ...(k && {
              auditKeyId: k.keyId,
              auditKeyVersion: k.version,
              algorithm: k.algorithm,
              publicKey: k.publicKey,
            }),
          }),
        )
        .join('\r\n');
    }
    case 'note':
      // Multi-line text and proof lists have no column: scripts/export-audit.ts writes the note
      // beside a CSV export (<out>.note), and the auditor passes it as --checkpoint.
      throw new TypeError('the checkpoint note record has no CSV form');
  }
}

function row(cells: Partial<Record<Column, string | number | null>>): string {
  return CSV_COLUMNS.map((c) => quote(cells[c] ?? null)).join(',');
}

/** A formula character after any run of single quotes: the cells that get (or carry) the escape. */
const NEEDS_ESCAPE = /^'*[=+\-@\t\r\uFF1D\uFF0B\uFF0D\uFF20]/;

function quote(v: string | number | null): string {
  if (v === null) return '';
  const s = String(v);
  if (NEEDS_ESCAPE.test(s)) return `"'${s.replaceAll('"', '""')}"`;
  return /[",\r\n]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
}

/** The value of a cell written by `quote`: one escaping quote removed where `quote` added it. */
function unescapeCell(cell: string): string {
  return cell.startsWith("'") && NEEDS_ESCAPE.test(cell) ? cell.slice(1) : cell;
}

/**
 * Parses and validates one CSV row (one physical line, without its line end) into a record;
 * throws {@link MalformedRecord}. A `header` row carries at most one audit key: the reader
 * merges consecutive header rows.
 */
export function parseCsvLine(text: string, line: number): ExportRecord {
  const cells = splitRow(text, line).map(unescapeCell);
  // A row from before the `request` column: that cell is empty.
  if (cells.length === CSV_COLUMNS.length - 1) cells.push('');
  if (cells.length !== CSV_COLUMNS.length)
    throw new MalformedRecord(line, `a row must have ${CSV_COLUMNS.length} cells, not ${cells.length}`);
  const cell = Object.fromEntries(CSV_COLUMNS.map((c, i) => [c, cells[i] === '' ? null : cells[i]!])) as Record<
    Column,
    string | null
  >;
  const type = cell.type;
  const used =
    type === 'entry'
      ? ENTRY_COLUMNS
      : type === 'checkpoint'
        ? CHECKPOINT_COLUMNS
        : type === 'header'
          ? HEADER_COLUMNS
          : undefined;
  if (!used) throw new MalformedRecord(line, 'unknown record type: expected "header", "entry" or "checkpoint"');
  for (const c of CSV_COLUMNS) {
    if (c !== 'type' && cell[c] !== null && !used.includes(c))
      throw new MalformedRecord(line, `column ${c} must be empty in a ${type} row`);
  }
  let record: Record<string, unknown>;
  if (type === 'entry') {
    record = { type };
    for (const c of ENTRY_COLUMNS) record[c] = cell[c];
    record.seq = int(cell.seq);
    record.keyVersion = int(cell.keyVersion);
    record.intent = jsonCell(cell.intent, 'intent', line);
    if (cell.request === null) delete record.request;
    else record.request = jsonCell(cell.request, 'request', line);
  } else if (type === 'checkpoint') {
    const { seq, at, headHash, auditKeyId, auditKeyVersion, signature } = cell;
    record = {
      type,
      seq: int(seq),
      headHash,
      at,
      auditKey: { keyId: auditKeyId, version: int(auditKeyVersion) },
      signature,
    };
  } else {
    const { format, exportedAt, from, to, auditKeyId, auditKeyVersion, algorithm, publicKey } = cell;
    const keyCells = [auditKeyId, auditKeyVersion, algorithm, publicKey];
    const auditKeys = keyCells.every((c) => c === null)
      ? []
      : [{ keyId: auditKeyId, version: int(auditKeyVersion), algorithm, publicKey }];
    record = { type, format, exportedAt, from, to, auditKeys };
  }
  return validateRecord(record, line);
}

/** Decimal integers become numbers; anything else stays a string for the validator to refuse. */
function int(s: string | null): number | string | null {
  return s !== null && /^[1-9][0-9]{0,15}$/.test(s) ? Number(s) : s;
}

function jsonCell(s: string | null, column: string, line: number): unknown {
  if (s === null) return null;
  let v: unknown;
  try {
    v = JSON.parse(s);
  } catch {
    throw new MalformedRecord(line, `${column} must be canonical JSON`);
  }
  // One spelling per intent: otherwise the same entry could be written two ways.
  let canonical: string | undefined;
  try {
    canonical = canonicalJson(v);
  } catch {
    canonical = undefined;
  }
  if (canonical !== s) throw new MalformedRecord(line, `${column} must be canonical JSON`);
  return v;
}

/** RFC 4180 fields of one line: quoted fields may hold commas and doubled quotes. */
function splitRow(text: string, line: number): string[] {
  const cells: string[] = [];
  let i = 0;
  for (;;) {
    if (text[i] === '"') {
      let value = '';
      i++;
      for (;;) {
        const end = text.indexOf('"', i);
        if (end < 0) throw new MalformedRecord(line, 'unterminated quoted cell');
        value += text.slice(i, end);
        i = end + 1;
        if (text[i] !== '"') break;
        value += '"';
        i++;
      }
      cells.push(value);
      if (i < text.length && text[i] !== ',') throw new MalformedRecord(line, 'text after a quoted cell');
    } else {
      const end = text.indexOf(',', i);
      const value = end < 0 ? text.slice(i) : text.slice(i, end);
      if (value.includes('"')) throw new MalformedRecord(line, 'a quote inside an unquoted cell');
      cells.push(value);
      i = end < 0 ? text.length : end;
    }
    if (i >= text.length) return cells;
    i++; // the comma
  }
}
