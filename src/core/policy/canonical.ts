/**
 * The canonical text of a policy document: JSON with object keys sorted (by UTF-16 code units,
 * as RFC 8785 does), no whitespace, integers only. Admins sign a hash of this text, so two
 * spellings of one document (key order, spaces) are one document, and what an admin reviewed is
 * byte for byte what activates. Policies hold only strings, integers, booleans, arrays and
 * objects; anything else (a float, null) is refused rather than given a second spelling.
 */
export function canonicalJson(value: unknown): string {
  if (typeof value === 'string' || typeof value === 'boolean') return JSON.stringify(value);
  if (typeof value === 'number') {
    if (!Number.isSafeInteger(value)) throw new Error('canonical JSON: only safe integers are allowed as numbers');
    return String(value);
  }
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const keys = Object.keys(value).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    const obj = value as Record<string, unknown>;
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(obj[k])}`).join(',')}}`;
  }
  throw new Error(`canonical JSON: ${value === null ? 'null' : typeof value} is not allowed`);
}
