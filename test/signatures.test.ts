// The one verifier of admins' and clients' signatures (src/core/signatures.ts) and the two rule
// sets its callers name: what each accepts, case by case, over signatures made by OpenSSL
// (node:crypto), not by the verifier's own library.
import { generateKeyPairSync, type KeyObject, sign } from 'node:crypto';
import { p256 } from '@noble/curves/nist.js';
import t from 'tap';
import {
  APPROVAL_RULES,
  type PublicKey,
  REQUEST_RULES,
  type VerifyRules,
  verifySignature,
} from '../src/core/signatures.js';

const message = new TextEncoder().encode('proposal or request bytes');

function p256Key(): { key: PublicKey; priv: KeyObject } {
  const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const j = publicKey.export({ format: 'jwk' });
  const point = Buffer.concat([Buffer.from([4]), Buffer.from(j.x!, 'base64url'), Buffer.from(j.y!, 'base64url')]);
  return { key: { algorithm: 'ecdsa-p256', publicKey: new Uint8Array(point) }, priv: privateKey };
}

function edKey(): { key: PublicKey; priv: KeyObject } {
  const { publicKey, privateKey } = generateKeyPairSync('ed25519');
  const raw = Buffer.from(publicKey.export({ format: 'jwk' }).x!, 'base64url');
  return { key: { algorithm: 'ed25519', publicKey: new Uint8Array(raw) }, priv: privateKey };
}

/** The same P-256 signature with s replaced by n - s (still valid ECDSA; OpenSSL emits either). */
function otherS(der: Uint8Array): Uint8Array {
  const sig = p256.Signature.fromBytes(der, 'der');
  return new p256.Signature(sig.r, p256.Point.CURVE().n - sig.s).toBytes('der');
}

/** Little-endian 32 bytes: Ed25519's encoding of a field element. */
function le32(n: bigint): Uint8Array {
  const b = new Uint8Array(32);
  for (let i = 0; i < 32; i++, n >>= 8n) b[i] = Number(n & 255n);
  return b;
}

t.test('what each rule set accepts', async (t) => {
  const ec = p256Key();
  const ed = edKey();
  const der = new Uint8Array(sign('sha256', message, ec.priv));
  const compact = new Uint8Array(sign('sha256', message, { key: ec.priv, dsaEncoding: 'ieee-p1363' }));
  const edSig = new Uint8Array(sign(null, message, ed.priv));
  // ZIP-215 only: R is the identity with its y written as p + 1 (not reduced), S = 0, and the key
  // the identity: the cofactored equation holds for any message, but RFC 8032 refuses the encoding.
  const zip215Key: PublicKey = { algorithm: 'ed25519', publicKey: le32(1n) };
  const zip215Sig = new Uint8Array(64);
  zip215Sig.set(le32((1n << 255n) - 19n + 1n), 0);
  const tampered = Uint8Array.from(der);
  tampered[tampered.length - 1]! ^= 1;

  // [case, key, signature, approvals, requests]
  const cases: Array<[string, PublicKey, Uint8Array, boolean, boolean]> = [
    ['P-256, DER', ec.key, der, true, true],
    ['P-256, DER with the other s (high or low)', ec.key, otherS(der), true, true],
    ['P-256, 64-byte r||s', ec.key, compact, true, false],
    ['P-256, DER with one byte changed', ec.key, tampered, false, false],
    ['P-256, an Ed25519 signature', ec.key, edSig, false, false],
    ['P-256, empty signature', ec.key, new Uint8Array(0), false, false],
    ['P-256, a key that is not a point', { algorithm: 'ecdsa-p256', publicKey: new Uint8Array(65) }, der, false, false],
    ['Ed25519', ed.key, edSig, true, true],
    ['Ed25519, valid only under ZIP-215 (non-canonical R, small-order key)', zip215Key, zip215Sig, true, false],
    ['Ed25519, a P-256 signature', ed.key, der, false, false],
    ['Ed25519, a 31-byte key', { algorithm: 'ed25519', publicKey: new Uint8Array(31) }, edSig, false, false],
    ['an unknown algorithm', { algorithm: 'rsa' as 'ed25519', publicKey: ed.key.publicKey }, edSig, false, false],
  ];
  for (const [name, key, sig, approval, request] of cases) {
    t.equal(verifySignature(key, message, sig, APPROVAL_RULES), approval, `${name}: approval rules`);
    t.equal(verifySignature(key, message, sig, REQUEST_RULES), request, `${name}: request rules`);
  }
  const other = new TextEncoder().encode('other bytes');
  for (const rules of [APPROVAL_RULES, REQUEST_RULES] as VerifyRules[]) {
    t.notOk(verifySignature(ec.key, other, der, rules), 'P-256: another message fails');
    t.notOk(verifySignature(ed.key, other, edSig, rules), 'Ed25519: another message fails');
  }
});

t.test('the rules each caller names', async (t) => {
  t.same(APPROVAL_RULES, { p256: 'der-or-compact', ed25519: 'zip215' }, 'admins: any common encoding counts once');
  t.same(REQUEST_RULES, { p256: 'der', ed25519: 'strict' }, 'clients: DER and strict RFC 8032, as documented');
});
