import { createHash, X509Certificate } from 'node:crypto';
import type { PeerCertificate } from 'node:tls';
import type { RequestKey } from '../../core/request-signing/keys.js';
import { pinOf } from '../config/pins.js';
import { requestKeyOf } from '../config/request-keys.js';

/** What the per-call checks need of a peer certificate, parsed once per certificate. */
export interface PeerCert {
  /** Subject CN: the identity config names clients and peers by. */
  cn: string;
  /** `cert-sha256:<hex>` and `spki-sha256:<hex>` (src/infra/config/pins.ts). */
  certPin: string;
  spkiPin: string;
  /** Serial number in lowercase hex without leading zeros, as CRL entries are compared. */
  serial: string;
  notBefore: number;
  notAfter: number;
  /** The configured CA that issued it (its cert-sha256 pin), or undefined when none did. */
  issuer: string | undefined;
  /** The certificate's key as a request-signing key (P-256 or Ed25519), undefined for others. */
  requestKey: RequestKey | undefined;
  /** DER: forwarded to cosigners, which check a request signed with its key themselves. */
  raw: Buffer;
}

/** A serial number (hex, any case, leading zeros or not) in the form CRL entries are compared in. */
export const normaliseSerial = (hex: string): string => hex.toLowerCase().replace(/^0+(?=.)/, '');

/**
 * Parses peer certificates once and keeps the result by fingerprint, so a connection's calls do
 * not each parse its certificate again. Only the parse is kept: revocation, pins and validity
 * are decided again at every call against the current CRL, pins and clock. Bounded: the oldest
 * entry is dropped past `max`.
 */
export class PeerCertCache {
  private readonly parsed = new Map<string, PeerCert | null>();

  constructor(
    /** CAs a certificate may be issued by (for the CRL lookup): the server's trust anchors. */
    private readonly cas: readonly X509Certificate[],
    private readonly max = 4096,
  ) {}

  /** The parsed certificate, or undefined when it has no single subject CN. */
  get(peer: PeerCertificate): PeerCert | undefined {
    const key = peer.fingerprint256;
    let hit = this.parsed.get(key);
    if (hit === undefined) {
      hit = this.parse(peer);
      if (this.parsed.size >= this.max) this.parsed.delete(this.parsed.keys().next().value!);
      this.parsed.set(key, hit);
    }
    return hit ?? undefined;
  }

  private parse(peer: PeerCertificate): PeerCert | null {
    const cn = peer.subject?.CN;
    if (typeof cn !== 'string' || cn === '') return null;
    const x = new X509Certificate(peer.raw);
    const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
    const issuer = this.cas.find((ca) => x.checkIssued(ca) && x.verify(ca.publicKey));
    return {
      cn,
      certPin: pinOf('cert-sha256', sha256(peer.raw)),
      spkiPin: pinOf('spki-sha256', sha256(x.publicKey.export({ type: 'spki', format: 'der' }))),
      serial: normaliseSerial(x.serialNumber),
      notBefore: Date.parse(x.validFrom),
      notAfter: Date.parse(x.validTo),
      issuer: issuer && caId(issuer),
      requestKey: certRequestKey(x),
      raw: peer.raw,
    };
  }
}

function certRequestKey(x: X509Certificate): RequestKey | undefined {
  try {
    return requestKeyOf(x.publicKey, 'certificate');
  } catch {
    return undefined;
  }
}

/** How a CA is named between the certificate cache and the CRL set. */
export const caId = (ca: X509Certificate): string =>
  pinOf('cert-sha256', createHash('sha256').update(ca.raw).digest('hex'));

/** Every certificate in a PEM file (a CA bundle may hold several, e.g. during a CA rollover). */
export function parseCertificates(pem: string): X509Certificate[] {
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  return blocks.map((b) => new X509Certificate(b));
}
