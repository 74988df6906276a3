import { X509Certificate } from 'node:crypto';
import { sha256 } from '@noble/hashes/sha2.js';
import { bytesToHex } from '@noble/hashes/utils.js';
import type { AuditRequest } from '../core/audit/chain.js';
import { SignerError } from '../core/errors.js';
import { canonicalRequestBytes, type ParsedRequest, parseCanonicalRequest } from '../core/request-signing/canonical.js';
import type { RequestKey } from '../core/request-signing/keys.js';
import { requestKeyOf } from '../infra/config/request-keys.js';
import { NO_REVOCATIONS, type RevocationSet } from '../infra/grpc/crl.js';
import { caId, normaliseSerial } from '../infra/grpc/peer-cert.js';
import { verifyRequestSignatureNative } from '../infra/request-verify-native.js';
import type { SignShareRequest } from './share-request.js';

/** What the cosigner's own config says about clients (config `cosigner.clients`). */
export type ClientConfig = Record<string, { requestKeys?: readonly string[] | undefined }>;

/** What a client certificate's bytes decide, checked once per certificate (certificateOf). */
interface CheckedCert {
  /** The client CA that issued it (caId), whose CRL may revoke it. */
  ca: string;
  serial: string;
  notBefore: number;
  notAfter: number;
  /** Subject lines (CN=..., O=...). */
  subject: string[];
  /** Its key as a request-signing key; undefined when it cannot sign requests. */
  key: RequestKey | undefined;
}

/** Distinct client certificates kept checked; the oldest goes first. */
const MAX_CERTS = 256;

/** A request whose client signature this cosigner verified itself. */
export interface VerifiedRequest {
  client: string;
  clientTime: Date;
  /** 'hot' for a Sign, 'batch' for a SignBatch item (the policy's traffic class). */
  traffic: 'hot' | 'batch';
  /** How many payloads the client signed (a batch's size). */
  payloads: number;
  /** As the audit entry keeps it (core/audit/chain.ts AuditRequest). */
  audit: AuditRequest;
}

/**
 * The cosigner's check of a client's signed request (README "What a cosigner checks"), so that
 * a share is released only for a payload a client asked for, whatever the coordinator says.
 * The signed bytes are parsed strictly (core/request-signing/canonical.ts); every field is held
 * to what this cosigner knows of the share asked for: the client, the key and version, the
 * request id, and this payload's own line, recomputed from the payload received (for a Sign the
 * whole message is rebuilt). The key that signed is trusted only through this cosigner's config:
 * a client certificate issued by its client CA with CN = the client, valid now and not on its
 * CRL, or a request key registered for the client here. The signature is verified as the
 * signer's edge does (infra/request-verify-native.ts: P-256 on OpenSSL, Ed25519 with @noble/curves).
 */
export class RequestCheck {
  private clients = new Map<string, readonly RequestKey[]>();
  /** Client certificates by their DER (base64): what their bytes alone decide (certificateOf). */
  private readonly certs = new Map<string, CheckedCert | string>();
  private revocations: RevocationSet = NO_REVOCATIONS;

  constructor(
    clients: ClientConfig,
    private readonly clientCas: readonly X509Certificate[],
    private readonly cosignerId: number,
    private readonly now: () => number = Date.now,
  ) {
    this.update(clients);
  }

  /** Applies reloaded clients (config file) from the next call on. */
  update(clients: ClientConfig): void {
    this.clients = new Map(
      Object.entries(clients).map(([cn, c]) => [cn, (c.requestKeys ?? []).map((k) => requestKeyOf(k, 'registered'))]),
    );
  }

  /** Applies a reloaded CRL (the cosigner's `tls.crlFile`). */
  setRevocations(r: RevocationSet): void {
    this.revocations = r;
  }

  /** The verified request; REQUEST_SIGNATURE_REQUIRED or REQUEST_SIGNATURE_INVALID otherwise. */
  check(r: SignShareRequest): VerifiedRequest {
    const cosigner = String(this.cosignerId);
    const signed = r.signedRequest ?? Buffer.alloc(0);
    const signature = r.requestSignature ?? Buffer.alloc(0);
    if (signature.length === 0 || signed.length === 0)
      throw new SignerError(
        'REQUEST_SIGNATURE_REQUIRED',
        `cosigner ${cosigner} releases shares only for requests signed by their client`,
        { cosigner },
      );
    const refuse = (why: string, message: string) =>
      new SignerError('REQUEST_SIGNATURE_INVALID', `cosigner ${cosigner}: ${message}`, { cosigner, why });
    let parsed: ParsedRequest;
    try {
      parsed = parseCanonicalRequest(Buffer.from(signed).toString('utf8'));
    } catch (e) {
      throw refuse('unencodable', `the signed request is not canonical request text: ${(e as Error).message}`);
    }
    const registered = this.clients.get(parsed.client);
    if (!registered) throw refuse('unknown_client', `client "${parsed.client}" is not a client of this cosigner`);
    if (parsed.client !== r.client) throw refuse('other_client', 'the signed request is another client’s');
    if (parsed.keyId !== r.keyId || (parsed.keyVersion !== 0 && parsed.keyVersion !== r.keyVersion))
      throw refuse('other_key', `the signed request names key "${parsed.keyId}" version ${parsed.keyVersion}`);
    const index = r.payloadIndex ?? 0;
    const ownId = parsed.kind === 'sign' ? parsed.id : `${parsed.id}#${index}`;
    if (ownId !== r.requestId || (parsed.kind === 'sign' && index !== 0) || index >= parsed.payloads.length)
      throw refuse('other_request', `the signed request is not request "${r.requestId}"`);
    if (!this.coversPayload(parsed, r, signed, index))
      throw refuse('other_payload', 'the signed request covers another payload (or replay scope)');
    const key = this.keyOf(parsed.client, registered, r, refuse);
    // P-256 on OpenSSL (held to @noble/curves by test/request-verify-native.test.ts): ~0.1 ms
    // instead of ~4 ms of this event loop per share; Ed25519 stays on noble.
    if (!verifyRequestSignatureNative(key, signed, signature))
      throw refuse('mismatch', 'request_signature does not verify over the signed request');
    return {
      client: parsed.client,
      clientTime: new Date(parsed.clientTimeMs),
      traffic: parsed.kind === 'sign' ? 'hot' : 'batch',
      payloads: parsed.payloads.length,
      audit: {
        message: Buffer.from(signed).toString('hex'),
        signature: Buffer.from(signature).toString('hex'),
        signingKey: key.fingerprint,
      },
    };
  }

  /**
   * Whether the signed request's line `index` is this payload's: kind, replay scope and SHA-256
   * recomputed here. A Sign's whole message is rebuilt from what this cosigner holds and must be
   * the signed bytes exactly; a batch's other lines are only hashes of payloads it never sees.
   */
  private coversPayload(parsed: ParsedRequest, r: SignShareRequest, signed: Buffer, index: number): boolean {
    if (r.payloadKind !== 'message' && r.payloadKind !== 'digest') return false;
    const s = r.replayScope;
    const scope = s ? { chainId: BigInt(s.chainId), nonce: BigInt(s.accountNonce) } : undefined;
    if (parsed.kind === 'sign') {
      const rebuilt = canonicalRequestBytes({
        kind: 'sign',
        client: r.client,
        keyId: r.keyId,
        keyVersion: parsed.keyVersion,
        id: r.requestId,
        clientTimeMs: parsed.clientTimeMs,
        payloads: [{ kind: r.payloadKind, bytes: r.payload, scope }],
      });
      return Buffer.from(rebuilt).equals(signed);
    }
    const line = parsed.payloads[index]!;
    const ownScope = scope ? `${scope.chainId}/${scope.nonce}` : '-';
    return line.kind === r.payloadKind && line.scope === ownScope && line.sha256 === bytesToHex(sha256(r.payload));
  }

  /** The key that signed, if this cosigner's config trusts it for the client. */
  private keyOf(
    client: string,
    registered: readonly RequestKey[],
    r: SignShareRequest,
    refuse: (why: string, message: string) => SignerError,
  ): RequestKey {
    const fingerprint = r.requestSigningKey ?? '';
    const reg = registered.find((k) => k.fingerprint === fingerprint);
    if (reg) return reg;
    if (!r.clientCertificate?.length)
      throw refuse('unknown_key', `the signing key is not registered for "${client}" here and no certificate came`);
    const cert = this.certificateOf(Buffer.from(r.clientCertificate));
    if (typeof cert === 'string') throw refuse('certificate', cert);
    const problem = this.certificateProblem(cert, client);
    if (problem) throw refuse('certificate', problem);
    if (!cert.key) throw refuse('certificate', 'the client certificate’s key cannot sign requests');
    if (cert.key.fingerprint !== fingerprint)
      throw refuse('unknown_key', 'the signing key is neither the certificate’s nor registered here');
    return cert.key;
  }

  /**
   * A client certificate as far as its bytes decide: parsed, its issuer among this cosigner's
   * client CAs with a valid signature, its validity, subject and key. Kept by the exact DER
   * (a client sends the same certificate with every share: parsing and checking its signature
   * was ~0.6 ms of each share). The client CAs are fixed for this object's life; the clock and
   * the CRL are checked at every call (certificateProblem).
   */
  private certificateOf(der: Buffer): CheckedCert | string {
    const id = der.toString('base64');
    const hit = this.certs.get(id);
    if (hit) return hit;
    let out: CheckedCert | string;
    try {
      const cert = new X509Certificate(der);
      const ca = this.clientCas.find((c) => cert.checkIssued(c) && cert.verify(c.publicKey));
      if (!ca) out = 'the client certificate is not issued by this cosigner’s client CA';
      else {
        let key: RequestKey | undefined;
        try {
          key = requestKeyOf(cert.publicKey, 'certificate');
        } catch {
          key = undefined;
        }
        out = {
          ca: caId(ca),
          serial: normaliseSerial(cert.serialNumber),
          notBefore: Date.parse(cert.validFrom),
          notAfter: Date.parse(cert.validTo),
          subject: cert.subject.split('\n'),
          key,
        };
      }
    } catch {
      out = 'the client certificate does not parse';
    }
    if (this.certs.size >= MAX_CERTS) this.certs.delete(this.certs.keys().next().value!);
    this.certs.set(id, out);
    return out;
  }

  private certificateProblem(cert: CheckedCert, client: string): string | undefined {
    const now = this.now();
    if (now < cert.notBefore || now > cert.notAfter) return 'the client certificate is not valid now';
    if (!cert.subject.includes(`CN=${client}`)) return `the client certificate is not for CN=${client}`;
    if (this.revocations.revoked.get(cert.ca)?.has(cert.serial)) return 'the client certificate is revoked by the CRL';
    return undefined;
  }
}
