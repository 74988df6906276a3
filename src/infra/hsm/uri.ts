/**
 * PKCS#11 URIs (RFC 7512), the subset an operator needs to name a token and its objects without
 * depending on slot numbering, which changes when tokens are added or removed.
 */
export interface Pkcs11Uri {
  token?: string;
  serial?: string;
  object?: string;
  /** CKA_ID as raw bytes. */
  id?: Uint8Array;
  modulePath?: string;
  /** Only `file:` sources: a PIN never lives in the config itself. */
  pinFile?: string;
}

const PATH_ATTRS = new Set([
  'token',
  'serial',
  'object',
  'id',
  'manufacturer',
  'model',
  'type',
  'library-manufacturer',
  'library-description',
  'library-version',
]);
const QUERY_ATTRS = new Set(['module-path', 'pin-source']);

export class UriError extends Error {
  override name = 'UriError';
}

function pctDecode(s: string, what: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    throw new UriError(`bad percent-encoding in ${what}`);
  }
}

/**
 * Parses a PKCS#11 URI. Fails closed: unknown attributes, slot selectors and inline PINs
 * (`pin-value`) are rejected rather than ignored, so a typo cannot select the wrong token.
 */
export function parsePkcs11Uri(uri: string): Pkcs11Uri {
  if (!uri.startsWith('pkcs11:')) throw new UriError('PKCS#11 URI must start with "pkcs11:"');
  const rest = uri.slice('pkcs11:'.length);
  const q = rest.indexOf('?');
  const path = q < 0 ? rest : rest.slice(0, q);
  const query = q < 0 ? '' : rest.slice(q + 1);
  const out: Pkcs11Uri = {};
  for (const part of path.split(';').filter(Boolean)) {
    const [k = '', ...v] = part.split('=');
    if (k.startsWith('slot')) throw new UriError(`"${k}" is not accepted: name the token by label or serial`);
    if (!PATH_ATTRS.has(k)) throw new UriError(`unknown PKCS#11 URI path attribute "${k}"`);
    const value = pctDecode(v.join('='), k);
    if (k === 'token') out.token = value;
    else if (k === 'serial') out.serial = value;
    else if (k === 'object') out.object = value;
    else if (k === 'id') out.id = Buffer.from(value, 'latin1');
  }
  for (const part of query.split('&').filter(Boolean)) {
    const [k = '', ...v] = part.split('=');
    if (k === 'pin-value') throw new UriError('"pin-value" is not accepted: use pin-source=file:/path');
    if (!QUERY_ATTRS.has(k)) throw new UriError(`unknown PKCS#11 URI query attribute "${k}"`);
    const value = pctDecode(v.join('='), k);
    if (k === 'module-path') out.modulePath = value;
    else if (k === 'pin-source') {
      if (!value.startsWith('file:')) throw new UriError('pin-source must be a file: URI');
      out.pinFile = value.replace(/^file:(\/\/)?/, '');
    }
  }
  if (!out.token && !out.serial) throw new UriError('the URI must name a token (token= or serial=)');
  return out;
}
