/**
 * Client certificate pins (`clients.<name>.pins`, `cosigner.peerPins`). Two kinds:
 *
 * - `cert-sha256:<hash>`: SHA-256 of the certificate's DER, as `openssl x509 -noout -fingerprint
 *   -sha256` prints it (colons and case do not matter). Pins one certificate.
 * - `spki-sha256:<hash>`: SHA-256 of the DER SubjectPublicKeyInfo, in hex or base64. Pins one
 *   key: a certificate re-issued for the same key still matches.
 *
 * Both are normalised to `<kind>:<64 lowercase hex digits>`, the form `PeerCert` is compared in.
 */
export type PinKind = 'cert-sha256' | 'spki-sha256';

const HEX = /^(?:[0-9a-f]{2}:?){31}[0-9a-f]{2}$/i;
const BASE64 = /^[A-Za-z0-9+/]{43}=$/;

/** The pin in canonical form, or a reason it is not one. */
export function normalisePin(pin: string): { pin: string } | { problem: string } {
  const i = pin.indexOf(':');
  const kind = pin.slice(0, i);
  const value = pin.slice(i + 1).trim();
  if (i < 0 || (kind !== 'cert-sha256' && kind !== 'spki-sha256')) {
    return { problem: 'a pin is "cert-sha256:<hex>" or "spki-sha256:<hex or base64>"' };
  }
  if (HEX.test(value)) return { pin: `${kind}:${value.replaceAll(':', '').toLowerCase()}` };
  if (kind === 'spki-sha256' && BASE64.test(value)) {
    return { pin: `${kind}:${Buffer.from(value, 'base64').toString('hex')}` };
  }
  const forms = kind === 'spki-sha256' ? '64 hex digits or 44 base64 characters' : '64 hex digits';
  return { problem: `${kind} needs a SHA-256 hash: ${forms}` };
}

export const pinOf = (kind: PinKind, sha256Hex: string): string => `${kind}:${sha256Hex}`;
