import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { x25519 } from '@noble/curves/ed25519.js';
import { hkdf } from '@noble/hashes/hkdf.js';
import { sha256 } from '@noble/hashes/sha2.js';

/**
 * Encryption of secret round-2 shares (DKG and refresh) from one cosigner to another, relayed by
 * the coordinator. Each cosigner makes an X25519 key pair per ceremony and publishes the public
 * half with its round-1 package; a share from A to B is sealed under
 * HKDF-SHA256(X25519(a, B), salt = session id, info = "A->B") with AES-256-GCM, so the relaying
 * coordinator (or anyone else) learns nothing of the shares it carries.
 */
export interface TransportKey {
  secret: Uint8Array;
  publicKey: Uint8Array;
}

export function transportKey(): TransportKey {
  const { secretKey, publicKey } = x25519.keygen();
  return { secret: secretKey, publicKey };
}

function channelKey(mine: TransportKey, theirs: Uint8Array, session: string, from: number, to: number): Buffer {
  if (theirs.length !== 32)
    throw new TransportError(`transport key of cosigner ${from === to ? from : `${from}/${to}`} is not 32 bytes`);
  const shared = x25519.getSharedSecret(mine.secret, theirs);
  return Buffer.from(
    hkdf(
      sha256,
      shared,
      new TextEncoder().encode(session),
      new TextEncoder().encode(`hsm-signer/share/${from}->${to}`),
      32,
    ),
  );
}

const aad = (session: string, from: number, to: number) => Buffer.from(`${session}\0${from}\0${to}`);

export function sealFor(
  mine: TransportKey,
  theirs: Uint8Array,
  session: string,
  from: number,
  to: number,
  plaintext: Uint8Array,
): Buffer {
  const iv = randomBytes(12);
  const c = createCipheriv('aes-256-gcm', channelKey(mine, theirs, session, from, to), iv);
  c.setAAD(aad(session, from, to));
  const body = Buffer.concat([c.update(plaintext), c.final()]);
  return Buffer.concat([iv, body, c.getAuthTag()]);
}

export function openFrom(
  mine: TransportKey,
  theirs: Uint8Array,
  session: string,
  from: number,
  to: number,
  sealed: Uint8Array,
): Buffer {
  if (sealed.length < 12 + 16) throw new TransportError(`share from cosigner ${from} is truncated`);
  const buf = Buffer.from(sealed);
  const d = createDecipheriv('aes-256-gcm', channelKey(mine, theirs, session, from, to), buf.subarray(0, 12));
  d.setAAD(aad(session, from, to));
  d.setAuthTag(buf.subarray(buf.length - 16));
  try {
    return Buffer.concat([d.update(buf.subarray(12, buf.length - 16)), d.final()]);
  } catch {
    throw new TransportError(`share from cosigner ${from} failed authentication`);
  }
}

export class TransportError extends Error {
  override name = 'TransportError';
}
