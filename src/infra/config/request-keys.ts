import { createHash, createPublicKey, type KeyObject } from 'node:crypto';
import type { RequestKey, RequestKeySource } from '../../core/request-signing/keys.js';
import { pinOf } from './pins.js';

/**
 * A request-signing key from a public key (SPKI DER, PEM, or a KeyObject): P-256 or Ed25519;
 * throws on any other kind. Node only parses here; verification is @noble/curves' (core).
 */
export function requestKeyOf(key: KeyObject | string | Buffer, source: RequestKey['source']): RequestKey {
  const k = typeof key === 'string' ? createPublicKey(key) : Buffer.isBuffer(key) ? spki(key) : key;
  const der = k.export({ type: 'spki', format: 'der' });
  const fingerprint = pinOf('spki-sha256', createHash('sha256').update(der).digest('hex'));
  const jwk = k.export({ format: 'jwk' });
  if (k.asymmetricKeyType === 'ed25519') {
    return { fingerprint, algorithm: 'ed25519', publicKey: Buffer.from(jwk.x!, 'base64url'), source };
  }
  if (k.asymmetricKeyType === 'ec' && jwk.crv === 'P-256') {
    const point = Buffer.concat([Buffer.of(4), Buffer.from(jwk.x!, 'base64url'), Buffer.from(jwk.y!, 'base64url')]);
    return { fingerprint, algorithm: 'ecdsa-p256', publicKey: point, source };
  }
  throw new Error('a request-signing key is P-256 or Ed25519');
}

/** The part of `clients` this reads (config schema). */
type ClientKeys = Record<string, { requestKeys?: readonly string[] | undefined }>;

const spki = (der: Buffer) => createPublicKey({ key: der, format: 'der', type: 'spki' });

/** The keys registered in the config (`clients.<name>.requestKeys`), parsed once per config. */
export class ConfigRequestKeys implements RequestKeySource {
  private keys = new Map<string, readonly RequestKey[]>();

  constructor(clients: ClientKeys) {
    this.update(clients);
  }

  update(clients: ClientKeys): void {
    this.keys = new Map(
      Object.entries(clients).map(([cn, c]) => [
        cn,
        (c.requestKeys ?? []).map((pem) => requestKeyOf(pem, 'registered')),
      ]),
    );
  }

  keysFor(client: string): readonly RequestKey[] {
    return this.keys.get(client) ?? [];
  }
}
