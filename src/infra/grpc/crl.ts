import type { X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import type * as Pkijs from 'pkijs';
import { caId, normaliseSerial } from './peer-cert.js';

/**
 * node:crypto parses certificates but not CRLs, so CRLs are read with PKIjs (pkijs), which
 * parses the DER and checks the CA's signature with WebCrypto: no ASN.1 or signature code here.
 * It is loaded on first use, so a server without a CRL does not pay for it at start.
 */
let pkijsModule: Promise<typeof Pkijs> | undefined;
const loadPkijs = () => {
  pkijsModule ??= import('pkijs');
  return pkijsModule;
};

/** The revoked serial numbers of each CA, from one CRL file. */
export interface RevocationSet {
  /** By CA (`caId`): normalised serial numbers. */
  readonly revoked: ReadonlyMap<string, ReadonlySet<string>>;
  /** Earliest nextUpdate among the CRLs, if any names one: after it the file is stale. */
  readonly nextUpdate: Date | undefined;
  readonly entries: number;
}

export class CrlError extends Error {
  override name = 'CrlError';
}

/**
 * Extensions a CRL (or entry) may mark critical and still mean "these serials are revoked":
 * authority key identifier and CRL number. Anything else critical (a delta CRL, an issuing
 * distribution point that narrows its scope, an indirect CRL's certificate issuer) changes
 * what the list means, so such a CRL is refused rather than half understood.
 */
const UNDERSTOOD = new Set(['2.5.29.35', '2.5.29.20']);

/**
 * Reads a CRL file (PEM with one or more CRLs, or one DER CRL) and checks each CRL's signature
 * against the CA among `cas` whose subject is its issuer. Throws CrlError when a CRL does not
 * parse, is not signed by one of `cas`, or has a critical extension it does not understand: a
 * caller keeps its previous set then.
 */
export async function readCrlFile(file: string, cas: readonly X509Certificate[]): Promise<RevocationSet> {
  let bytes: Buffer;
  try {
    bytes = await readFile(file);
  } catch (e) {
    throw new CrlError(`cannot read CRL file ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  const text = bytes.toString('latin1');
  const blocks = text.match(/-----BEGIN X509 CRL-----[\s\S]+?-----END X509 CRL-----/g);
  const ders = blocks
    ? blocks.map((b) => Buffer.from(b.replace(/-----[A-Z0-9 ]+-----/g, '').replace(/\s+/g, ''), 'base64'))
    : [bytes];
  if (!ders.length || ders.some((d) => d.length === 0)) throw new CrlError(`CRL file ${file} holds no CRL`);
  const pkijs = await loadPkijs();
  const issuers = cas.map((ca) => ({ id: caId(ca), cert: pkijs.Certificate.fromBER(new Uint8Array(ca.raw)) }));

  const revoked = new Map<string, Set<string>>();
  let nextUpdate: Date | undefined;
  let entries = 0;
  for (const [i, der] of ders.entries()) {
    const where = ders.length > 1 ? `CRL #${i + 1} of ${file}` : `CRL ${file}`;
    let crl: Pkijs.CertificateRevocationList;
    try {
      crl = pkijs.CertificateRevocationList.fromBER(new Uint8Array(der));
    } catch (e) {
      throw new CrlError(`${where} does not parse: ${(e as Error).message}`);
    }
    const critical = [
      ...(crl.crlExtensions?.extensions ?? []),
      ...(crl.revokedCertificates ?? []).flatMap((r) => r.crlEntryExtensions?.extensions ?? []),
    ].find((x) => x.critical && !UNDERSTOOD.has(x.extnID));
    if (critical) throw new CrlError(`${where} has a critical extension ${critical.extnID} this signer does not apply`);
    let issuer: string | undefined;
    for (const ca of issuers) {
      if (await crl.verify({ issuerCertificate: ca.cert }).catch(() => false)) {
        issuer = ca.id;
        break;
      }
    }
    if (!issuer) throw new CrlError(`${where} is not signed by a configured CA`);
    const set = revoked.get(issuer) ?? new Set<string>();
    // Several CRLs of one CA are united: a serial any of them lists stays refused.
    for (const r of crl.revokedCertificates ?? []) {
      set.add(normaliseSerial(Buffer.from(r.userCertificate.valueBlock.valueHexView).toString('hex')));
      entries++;
    }
    revoked.set(issuer, set);
    const next = crl.nextUpdate?.value;
    if (next && (!nextUpdate || next < nextUpdate)) nextUpdate = next;
  }
  return { revoked, nextUpdate, entries };
}

/** A set that revokes nothing: no CRL file configured. */
export const NO_REVOCATIONS: RevocationSet = { revoked: new Map(), nextUpdate: undefined, entries: 0 };
