import type { ServerUnaryCall } from '@grpc/grpc-js';
import type { Config, Role } from '../config/schema.js';
import { SignerError } from '../../core/errors.js';

type Call = Pick<ServerUnaryCall<unknown, unknown>, 'getAuthContext'>;

export interface Identity {
  /** Subject CN of the verified client certificate. */
  client: string;
  roles: ReadonlySet<Role>;
}

/**
 * Identity comes only from the client certificate that the TLS layer verified against our CA;
 * nothing the client sends in a request can change it.
 */
export class Authorizer {
  constructor(
    private readonly clients: Config['clients'],
    private readonly keyAccess: Config['keyAccess'],
  ) {}

  identify(call: Call): Identity {
    const cert = call.getAuthContext()?.sslPeerCertificate;
    const cn = cert?.subject?.CN;
    const client = Array.isArray(cn) ? undefined : cn;
    if (!client) throw new SignerError('NOT_AUTHENTICATED', 'a client certificate with a subject CN is required');
    const roles = new Set(this.clients[client]?.roles ?? []);
    return { client, roles };
  }

  /** The caller's identity if it holds `role`; PERMISSION_DENIED otherwise. */
  require(call: Call, role: Role): Identity {
    const id = this.identify(call);
    if (!id.roles.has(role)) throw new SignerError('NOT_AUTHORIZED', `client "${id.client}" lacks the ${role} role`, { client: id.client, role });
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
      throw new SignerError('NOT_AUTHORIZED', `client "${id.client}" may not sign with key "${keyId}"`, { client: id.client, keyId });
    }
  }
}
