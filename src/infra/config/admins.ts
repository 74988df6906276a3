import { createPublicKey, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { AdminSet } from '../../core/admin/approvals.js';
import type { PublicKey } from '../../core/signatures.js';
import type { Config } from './schema.js';

/**
 * The configured admins with their public keys, read once at start: a member's certificate
 * file gives its key (ECDSA P-256, as the dev PKI issues), a `publicKey` is PEM SPKI (P-256 or
 * Ed25519). Undefined when no quorum is configured (single-admin mode, SetPolicy applies).
 */
export function loadAdmins(config: Config['admins']): AdminSet | undefined {
  if (!config) return undefined;
  const members = new Map<string, PublicKey>();
  for (const [name, m] of Object.entries(config.members)) {
    try {
      const key = m.certificateFile
        ? new X509Certificate(readFileSync(m.certificateFile)).publicKey
        : createPublicKey(m.publicKey!);
      members.set(name, rawKey(key.export({ format: 'jwk' })));
    } catch (e) {
      throw new Error(`admins.members.${name}: ${(e as Error).message}`);
    }
  }
  return { quorum: config.quorum, members, delaySeconds: config.policyDelaySeconds };
}

function rawKey(jwk: { kty?: string; crv?: string; x?: string; y?: string }): PublicKey {
  const b = (s: string | undefined) => Buffer.from(s ?? '', 'base64url');
  if (jwk.kty === 'EC' && jwk.crv === 'P-256')
    return {
      algorithm: 'ecdsa-p256',
      publicKey: new Uint8Array(Buffer.concat([Buffer.from([4]), b(jwk.x), b(jwk.y)])),
    };
  if (jwk.kty === 'OKP' && jwk.crv === 'Ed25519') return { algorithm: 'ed25519', publicKey: new Uint8Array(b(jwk.x)) };
  throw new Error(`expected a P-256 or Ed25519 key, got ${jwk.kty} ${jwk.crv ?? ''}`);
}
