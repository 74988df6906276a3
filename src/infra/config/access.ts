import { type AccessDocument, normaliseAccess } from '../../core/admin/access.js';
import { accessDocumentSchema, type Config } from './schema.js';

/**
 * The access document a proposal carries, validated (roles, pins, request keys as the config
 * checks them) and normalised; throws an Error naming the first problem.
 */
export function parseAccessDocument(text: string): AccessDocument {
  const r = accessDocumentSchema.safeParse(JSON.parse(text));
  if (!r.success) {
    const i = r.error.issues[0]!;
    throw new Error(`${i.path.join('.') || 'document'}: ${i.message}`);
  }
  return normaliseAccess(r.data);
}

/** The access document the config file seeds: its clients (each flag made explicit) and keyAccess. */
export function accessFromConfig(c: Pick<Config, 'clients' | 'keyAccess' | 'requireSignedRequests'>): AccessDocument {
  const clients: AccessDocument['clients'] = {};
  for (const [cn, x] of Object.entries(c.clients)) {
    clients[cn] = {
      roles: [...x.roles],
      pins: [...(x.pins ?? [])],
      requestKeys: [...(x.requestKeys ?? [])],
      requireSignedRequests: x.requireSignedRequests ?? c.requireSignedRequests,
    };
  }
  return normaliseAccess({ clients, keyAccess: c.keyAccess });
}
