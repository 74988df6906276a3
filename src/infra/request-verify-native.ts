/**
 * Request-signature checks (the signer's edge, each cosigner's share check), with P-256 on
 * Node's OpenSSL instead of @noble/curves.
 *
 * Why: every signed Sign and SignBatch is verified on the event loop before anything else runs,
 * and noble's P-256 verify costs about 4 ms of that thread against OpenSSL's 0.13 ms (measured
 * here on one core), more than the rest of a request. The scheme is unchanged (ECDSA P-256,
 * SHA-256 of the canonical bytes, DER, high s accepted) and test/request-verify-native.test.ts
 * holds both verifiers to the same answer on valid, high-s, mutated, truncated and non-minimal
 * DER signatures. Ed25519 and the auditor's offline check (core/request-signing) stay on noble.
 */
import { createPublicKey, type KeyObject, verify } from 'node:crypto';
import type { RequestKey } from '../core/request-signing/keys.js';
import { REQUEST_RULES, verifySignature } from '../core/signatures.js';

/** DER SubjectPublicKeyInfo header of an uncompressed P-256 point (id-ecPublicKey, prime256v1). */
const P256_SPKI_HEADER = Buffer.from('3059301306072a8648ce3d020106082a8648ce3d030107034200', 'hex');
/** Keys are few (clients' certificates and registered keys): a bound, not an eviction policy. */
const MAX_CACHED = 1024;
const keyObjects = new Map<string, KeyObject>();

function keyObjectOf(key: RequestKey): KeyObject {
  let k = keyObjects.get(key.fingerprint);
  if (!k) {
    if (keyObjects.size >= MAX_CACHED) keyObjects.clear();
    k = createPublicKey({ key: Buffer.concat([P256_SPKI_HEADER, key.publicKey]), format: 'der', type: 'spki' });
    keyObjects.set(key.fingerprint, k);
  }
  return k;
}

/** As verifySignature (core) under REQUEST_RULES: whether `signature` is `key`'s over `message`; false if malformed. */
export function verifyRequestSignatureNative(key: RequestKey, message: Uint8Array, signature: Uint8Array): boolean {
  if (key.algorithm !== 'ecdsa-p256' || key.publicKey.length !== 65)
    return verifySignature(key, message, signature, REQUEST_RULES);
  try {
    return verify('sha256', message, { key: keyObjectOf(key), dsaEncoding: 'der' }, signature);
  } catch {
    return false;
  }
}
