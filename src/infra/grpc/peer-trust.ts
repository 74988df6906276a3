import type { X509Certificate } from 'node:crypto';
import type { ServerUnaryCall } from '@grpc/grpc-js';
import { SignerError } from '../../core/errors.js';
import type { Logger } from '../log.js';
import { NO_REVOCATIONS, type RevocationSet, readCrlFile } from './crl.js';
import { caId, type PeerCert, PeerCertCache } from './peer-cert.js';

export type Call = Pick<ServerUnaryCall<unknown, unknown>, 'getAuthContext'>;

/** The part of the trust that reloads: pins by CN, and whether a CN without pins is admitted. */
export interface PinConfig {
  pins: Readonly<Record<string, readonly string[] | undefined>>;
  requirePins: boolean;
}

/**
 * Decides at every call whether the peer certificate the TLS layer verified may still be used:
 * it is within its validity, not on the CRL of its CA, and matches its CN's pins. The TLS
 * handshake checks the chain once per connection; these checks are repeated per call, so a
 * revocation, a removed pin or an expiry reaches connections that were open before it.
 */
export class PeerTrust {
  private readonly certs: PeerCertCache;
  private revocations: RevocationSet = NO_REVOCATIONS;
  private pins: PinConfig;
  private readonly logged = new Map<string, number>();

  constructor(
    private readonly cas: readonly X509Certificate[],
    pins: PinConfig,
    private readonly crlFile?: string,
    /** Refusals are security events (a leaked key in use?): each is logged with CN and serial. */
    private readonly log?: Logger,
    private readonly now: () => number = Date.now,
  ) {
    this.certs = new PeerCertCache(cas);
    this.pins = pins;
  }

  /**
   * Reads and checks the CRL file (if configured) without applying it: a caller applies it with
   * `setRevocations` only when everything it reloads together is good. Throws CrlError.
   */
  async readCrl(): Promise<RevocationSet | undefined> {
    return this.crlFile ? readCrlFile(this.crlFile, this.cas) : undefined;
  }

  setRevocations(next: RevocationSet): void {
    this.revocations = next;
    const uncovered = this.cas.filter((ca) => !next.revoked.has(caId(ca))).map((ca) => ca.subject.replace(/\n/g, ','));
    if (uncovered.length) {
      this.log?.warn({ crlFile: this.crlFile, cas: uncovered }, 'no CRL for these CAs: none of theirs can be revoked');
    }
    // A stale CRL is still applied (refusing every client would stop payments), but said loudly.
    if (next.nextUpdate && next.nextUpdate.getTime() < this.now()) {
      const stale = { crlFile: this.crlFile, nextUpdate: next.nextUpdate.toISOString() };
      this.log?.warn(stale, 'CRL is past its nextUpdate: publish a new one');
    }
  }

  setPins(pins: PinConfig): void {
    this.pins = pins;
  }

  /**
   * The peer certificate of `call`, if it may be used now; a SignerError otherwise, checked in
   * this order: NOT_AUTHENTICATED (no verified certificate with a subject CN), CERTIFICATE_EXPIRED,
   * NOT_AUTHENTICATED (a CRL is configured but the issuer is not in the CA file),
   * CERTIFICATE_REVOKED, CERTIFICATE_NOT_PINNED.
   */
  verify(call: Call): PeerCert {
    try {
      return this.check(call);
    } catch (e) {
      if (e instanceof SignerError && e.metadata.client) this.logRefusal(e);
      throw e;
    }
  }

  /** One line per certificate and reason a minute: a revoked client retrying must not flood the log. */
  private logRefusal(e: SignerError): void {
    const key = `${e.reason} ${e.metadata.client} ${e.metadata.serial}`;
    const now = this.now();
    if ((this.logged.get(key) ?? -Infinity) > now - 60_000) return;
    if (this.logged.size >= 1024) this.logged.clear();
    this.logged.set(key, now);
    this.log?.warn({ reason: e.reason, ...e.metadata }, 'peer certificate refused');
  }

  private check(call: Call): PeerCert {
    const peer = call.getAuthContext()?.sslPeerCertificate;
    const cert = peer && this.certs.get(peer);
    if (!cert) throw new SignerError('NOT_AUTHENTICATED', 'a client certificate with a subject CN is required');
    const meta = { client: cert.cn, serial: cert.serial };
    const now = this.now();
    if (now > cert.notAfter || now < cert.notBefore) {
      const when =
        now > cert.notAfter ? `expired at ${iso(cert.notAfter)}` : `is not valid before ${iso(cert.notBefore)}`;
      const message = `the certificate of "${cert.cn}" ${when}; connect with a current one`;
      throw new SignerError('CERTIFICATE_EXPIRED', message, {
        ...meta,
        notBefore: iso(cert.notBefore),
        notAfter: iso(cert.notAfter),
      });
    }
    if (this.crlFile && !cert.issuer) {
      // Issued under an intermediate that is not in the CA file: no CRL read could name it.
      const message = `the issuer of the certificate of "${cert.cn}" is not in the CA file: no CRL can apply`;
      throw new SignerError('NOT_AUTHENTICATED', message, meta);
    }
    if (cert.issuer && this.revocations.revoked.get(cert.issuer)?.has(cert.serial)) {
      const message = `the certificate of "${cert.cn}" (serial ${cert.serial}) is revoked by the CRL`;
      throw new SignerError('CERTIFICATE_REVOKED', message, meta);
    }
    const pins = this.pins.pins[cert.cn];
    if (pins?.length || this.pins.requirePins) {
      if (!pins?.some((p) => p === cert.certPin || p === cert.spkiPin)) {
        throw new SignerError(
          'CERTIFICATE_NOT_PINNED',
          `the certificate of "${cert.cn}" matches none of its pins; ` +
            `pin ${cert.spkiPin} or ${cert.certPin} to admit it`,
          { ...meta, certPin: cert.certPin, spkiPin: cert.spkiPin },
        );
      }
    }
    return cert;
  }
}

const iso = (ms: number) => new Date(ms).toISOString();
