import { SignerError } from '../../core/errors.js';
import type { RequestKey } from '../../core/request-signing/keys.js';
import type { Config, Role } from '../config/schema.js';
import type { Call, PeerTrust } from './peer-trust.js';

export interface Identity {
  /** Subject CN of the verified client certificate. */
  client: string;
  roles: ReadonlySet<Role>;
  /** When the certificate's validity ends (ms since the epoch): a stream held open ends then. */
  notAfter: number;
  /** The certificate's key, when it can sign requests (P-256 or Ed25519). */
  certKey?: RequestKey | undefined;
  /** The certificate (DER), for cosigners that check a request signed with its key. */
  certificate?: Uint8Array | undefined;
}

/**
 * Identity comes only from the client certificate that the TLS layer verified against the client
 * CA; nothing the client sends in a request can change it. It is derived again at every call,
 * after `PeerTrust` has checked the certificate's validity, revocation and pins, so a change of
 * clients, pins or CRL (`update`, `TrustReloader`) reaches open connections.
 */
export class Authorizer {
  constructor(
    private readonly trust: PeerTrust,
    private clients: Config['clients'],
    private keyAccess: Config['keyAccess'],
    requirePins = false,
  ) {
    this.update(clients, keyAccess, requirePins);
  }

  /** Applies reloaded clients (roles and pins) and key access from the next call on. */
  update(clients: Config['clients'], keyAccess: Config['keyAccess'], requirePins: boolean): void {
    this.clients = clients;
    this.keyAccess = keyAccess;
    const pins = Object.fromEntries(Object.entries(clients).map(([cn, c]) => [cn, c.pins]));
    this.trust.setPins({ pins, requirePins });
  }

  identify(call: Call): Identity {
    const cert = this.trust.verify(perConnection(call));
    const roles = new Set(this.clients[cert.cn]?.roles ?? []);
    return { client: cert.cn, roles, notAfter: cert.notAfter, certKey: cert.requestKey, certificate: cert.raw };
  }

  /** The caller's identity if it holds `role`; PERMISSION_DENIED otherwise. */
  require(call: Call, role: Role): Identity {
    const id = this.identify(call);
    if (!id.roles.has(role))
      throw new SignerError('NOT_AUTHORIZED', `client "${id.client}" lacks the ${role} role`, {
        client: id.client,
        role,
      });
    return id;
  }

  /** Whether the client may sign with the key: exact key ids or `prefix*` patterns in config. */
  maySign(client: string, keyId: string): boolean {
    for (const [pattern, allowed] of Object.entries(this.keyAccess)) {
      const match = pattern.endsWith('*') ? keyId.startsWith(pattern.slice(0, -1)) : keyId === pattern;
      if (match && allowed.includes(client)) return true;
    }
    return false;
  }

  requireKey(id: Identity, keyId: string): void {
    if (!this.maySign(id.client, keyId)) {
      throw new SignerError('NOT_AUTHORIZED', `client "${id.client}" may not sign with key "${keyId}"`, {
        client: id.client,
        keyId,
      });
    }
  }
}

type AuthContext = ReturnType<Call['getAuthContext']>;

/** Auth contexts by HTTP/2 session: one per connection, gone with it. */
const contexts = new WeakMap<object, AuthContext>();

/**
 * The HTTP/2 session of a grpc-js server call: the handler's call wraps the interceptor chain
 * (`call`, then `nextCall`...) down to the base call holding the HTTP/2 stream. grpc-js 1.x
 * internals: when they are not found, the call is used as it is (uncached, as before);
 * test/auth-peer-cache.test.ts fails if this version of grpc-js no longer matches.
 */
function sessionOf(call: Call): object | undefined {
  type Link = { call?: Link; nextCall?: Link; stream?: { session?: object } };
  let c = (call as Link).call;
  for (let depth = 0; c && depth < 8; depth++) {
    if (c.stream?.session) return c.stream.session;
    c = c.nextCall;
  }
  return undefined;
}

/**
 * The call with its TLS auth context read once per connection. grpc-js builds it at every call
 * (TLSSocket.getPeerCertificate: the whole certificate as JS objects and its fingerprints, tens
 * of microseconds a request), yet the peer certificate cannot change on a connection: TLS 1.3
 * has no renegotiation, and Node forbids it on HTTP/2 sockets (RFC 9113 9.2.1). Only the
 * reading is cached: validity, CRL and pins are still checked at every call (PeerTrust).
 */
function perConnection(call: Call): Call {
  const session = sessionOf(call);
  if (!session) return call;
  let ctx = contexts.get(session);
  if (ctx === undefined) {
    ctx = call.getAuthContext();
    if (ctx?.sslPeerCertificate) contexts.set(session, ctx);
  }
  const known = ctx;
  return { getAuthContext: () => known };
}

/**
 * A cosigner's callers: coordinators named by certificate CN in `cosigner.peers`, checked like a
 * signer's clients (validity, CRL, `cosigner.peerPins`) at every call.
 */
export class PeerAuthorizer {
  constructor(
    private readonly trust: PeerTrust,
    private peers: ReadonlySet<string>,
  ) {}

  update(peers: Iterable<string>, pins: Record<string, readonly string[]>, requirePins: boolean): void {
    this.peers = new Set(peers);
    this.trust.setPins({ pins, requirePins });
  }

  /** The caller's CN if it is a peer whose certificate may be used now; a SignerError otherwise. */
  require(call: Call): string {
    const cn = this.trust.verify(perConnection(call)).cn;
    if (!this.peers.has(cn)) {
      throw new SignerError('NOT_AUTHORIZED', `client "${cn}" is not a peer of this cosigner`, { client: cn });
    }
    return cn;
  }
}
