import { type Reason, SignerError } from '../../core/errors.js';

/**
 * The grammar of every id a client sends, checked at the gRPC edge before the id reaches a
 * message, ErrorInfo metadata, a log field, an audit entry or a metric label. Until it has
 * passed, an id is the client's bytes: it is quoted back only through {@link preview}.
 */
export const ID_GRAMMAR = {
  /** Key ids and policy names (what CreateKey and SetPolicy accept). */
  key: { pattern: /^[a-z0-9][a-z0-9._-]{0,63}$/, says: '1..64 of [a-z0-9._-], starting with a letter or digit' },
  /** Printable ASCII: no space, no control character, so every audit and CSV cell is one line. */
  request: { pattern: /^[\x21-\x7e]{1,128}$/, says: '1..128 printable ASCII characters without spaces' },
  /** Item i is recorded as "<batch_id>#<i>": 100 + "#9999" stays within the request id grammar. */
  batch: { pattern: /^[\x21-\x7e]{1,100}$/, says: '1..100 printable ASCII characters without spaces' },
} as const;

export type IdKind = keyof typeof ID_GRAMMAR;

/** How much of a refused id is quoted back. */
export const PREVIEW_CHARS = 64;

/**
 * At most {@link PREVIEW_CHARS} characters of a client-supplied string, anything but printable
 * ASCII shown as "?", and "…" when cut: safe in a message, a header and a log line.
 */
export function preview(value: string): string {
  // Enough UTF-16 units for PREVIEW_CHARS + 1 code points, so a cut is seen without a 64 KiB copy.
  const points = [...value.slice(0, PREVIEW_CHARS * 2 + 2)];
  const shown = points
    .slice(0, PREVIEW_CHARS)
    .map((c) => (/^[\x20-\x7e]$/.test(c) ? c : '?'))
    .join('');
  return points.length > PREVIEW_CHARS ? `${shown}…` : shown;
}

/**
 * `value` when it matches the grammar of `kind`; REQUEST_INVALID otherwise, naming the field,
 * quoting the value only through {@link preview} and giving its length in metadata. `reason`
 * keeps a method's published refusal (SetPolicy refuses a bad name with POLICY_INVALID).
 */
export function requireId(field: string, kind: IdKind, value: string, reason: Reason = 'REQUEST_INVALID'): string {
  const g = ID_GRAMMAR[kind];
  if (typeof value === 'string' && g.pattern.test(value)) return value;
  const length = typeof value === 'string' ? value.length : 0;
  const what =
    length === 0 ? `${field} is required` : `${field} "${preview(value)}" (${length} characters) is not valid`;
  throw new SignerError(reason, `${what}: ${field} is ${g.says}`, { field, length: String(length) });
}
