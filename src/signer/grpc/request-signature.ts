import type { AuditRequest } from '../../core/audit/chain.js';
import { SignerError } from '../../core/errors.js';
import { type CanonicalRequest, canonicalRequestBytes } from '../../core/request-signing/canonical.js';
import type { RequestKeySource } from '../../core/request-signing/keys.js';
import type { Config } from '../../infra/config/schema.js';
import type { Identity } from '../../infra/grpc/auth.js';
import { verifyRequestSignatureNative } from '../../infra/request-verify-native.js';

/** What a request carries of its signature (proto fields 30 and 31). */
export interface WireRequestSignature {
  requestSignature?: Buffer | null;
  requestSigningKey?: string | null;
}

/**
 * The edge's check of client request signatures (README "How a payment engine signs its
 * requests"), run on Sign and SignBatch after the request parsed and before anything is decided
 * or reserved. A signature is checked whenever one is sent; an unsigned request passes only for a
 * client without `requireSignedRequests`. The keys a client may sign with: its certificate's key
 * (the one of this very call) and the keys registered for it (`RequestKeySource`).
 */
export class RequestSignatures {
  private required = new Map<string, boolean>();
  private requireByDefault = false;

  constructor(
    config: Pick<Config, 'clients' | 'requireSignedRequests'>,
    private readonly registered: RequestKeySource & { update?(clients: Config['clients']): void },
  ) {
    this.update(config);
  }

  /** Applies reloaded clients from the next call on. */
  update(config: Pick<Config, 'clients' | 'requireSignedRequests'>): void {
    this.requireByDefault = config.requireSignedRequests;
    this.required = new Map(
      Object.entries(config.clients).map(([cn, c]) => [cn, c.requireSignedRequests ?? config.requireSignedRequests]),
    );
    this.registered.update?.(config.clients);
  }

  /** Whether the client's requests must be signed. */
  requires(client: string): boolean {
    return this.required.get(client) ?? this.requireByDefault;
  }

  /** Signer clients that may send unsigned requests (for the warning at start). */
  unsignedClients(clients: Config['clients']): string[] {
    return Object.entries(clients)
      .filter(([cn, c]) => c.roles.includes('signer') && !this.requires(cn))
      .map(([cn]) => cn);
  }

  /**
   * The signed request to keep with the audit entry, or undefined for an unsigned request that
   * may pass; throws REQUEST_SIGNATURE_REQUIRED or REQUEST_SIGNATURE_INVALID.
   */
  check(id: Identity, request: () => CanonicalRequest, wire: WireRequestSignature): AuditRequest | undefined {
    const signature = wire.requestSignature ?? Buffer.alloc(0);
    const signingKey = wire.requestSigningKey ?? '';
    const meta = { client: id.client };
    if (signature.length === 0 && signingKey === '') {
      if (!this.requires(id.client)) return undefined;
      throw new SignerError(
        'REQUEST_SIGNATURE_REQUIRED',
        `client "${id.client}" must sign its requests (request_signature, request_signing_key)`,
        meta,
      );
    }
    const refuse = (why: string, message: string) =>
      new SignerError('REQUEST_SIGNATURE_INVALID', message, { ...meta, signingKey: signingKey.slice(0, 80), why });
    const keys = [...(id.certKey ? [id.certKey] : []), ...this.registered.keysFor(id.client)];
    const key = keys.find((k) => k.fingerprint === signingKey);
    if (!key)
      throw refuse(
        'unknown_key',
        `request_signing_key is neither the key of the certificate of "${id.client}" nor a key registered for it`,
      );
    let message: Uint8Array;
    try {
      message = canonicalRequestBytes(request());
    } catch (e) {
      throw refuse('unencodable', `the request has no canonical form: ${(e as Error).message}`);
    }
    if (!verifyRequestSignatureNative(key, message, signature))
      throw refuse(
        'mismatch',
        'request_signature does not verify over this request (another payload, key, version, id, time or client?)',
      );
    return {
      message: Buffer.from(message).toString('hex'),
      signature: Buffer.from(signature).toString('hex'),
      signingKey: key.fingerprint,
    };
  }
}
