// The signer checks P-256 request signatures with Node's OpenSSL (src/signer/grpc/
// request-verify-native.ts) for speed; @noble/curves (src/core/signatures.ts, REQUEST_RULES) is
// the reference, and what auditors run offline. This holds both to the same answer, case by case:
// valid signatures from noble and from OpenSSL, their high-s twins (accepted by the scheme),
// every single-byte change, truncations, trailing bytes, another message or key, out-of-range
// r and s, and DER that is valid BER but not minimal (long-form lengths, extra leading zeros).
import { sign as nodeSign, randomBytes } from 'node:crypto';
import { p256 } from '@noble/curves/nist.js';
import t from 'tap';
import type { RequestKey } from '../src/core/request-signing/keys.js';
import { REQUEST_RULES, verifySignature } from '../src/core/signatures.js';
import { verifyRequestSignatureNative } from '../src/infra/request-verify-native.js';

const N = p256.Point.CURVE().n;
let cases = 0;
let accepted = 0;
const disagreements: string[] = [];

function check(key: RequestKey, msg: Uint8Array, sig: Uint8Array, what: string): void {
  const reference = verifySignature(key, msg, sig, REQUEST_RULES);
  const native = verifyRequestSignatureNative(key, msg, sig);
  cases++;
  if (reference) accepted++;
  if (reference !== native) disagreements.push(`${what}: noble ${reference}, OpenSSL ${native}`);
}

const keyOf = (publicKey: Uint8Array, i: number): RequestKey => ({
  fingerprint: `spki-sha256:test-${i}`,
  algorithm: 'ecdsa-p256',
  publicKey,
  source: 'registered',
});

/** DER INTEGER of a non-negative bigint, minimal. */
function derInt(v: bigint): Buffer {
  let hex = v.toString(16);
  if (hex.length % 2) hex = `0${hex}`;
  let b = Buffer.from(hex, 'hex');
  if (b[0]! & 0x80) b = Buffer.concat([Buffer.from([0]), b]);
  return Buffer.concat([Buffer.from([0x02, b.length]), b]);
}
const derSig = (r: bigint, s: bigint) => {
  const body = Buffer.concat([derInt(r), derInt(s)]);
  return Buffer.concat([Buffer.from([0x30, body.length]), body]);
};

t.test('OpenSSL and noble give the same answer on every case', async (t) => {
  for (let i = 0; i < 24; i++) {
    const secret = p256.utils.randomSecretKey();
    const pub = p256.getPublicKey(secret, false);
    const key = keyOf(pub, i);
    const msg = randomBytes(64 + i);
    const fromNoble = p256.sign(msg, secret, { prehash: true, format: 'der' });
    const { r, s } = p256.Signature.fromBytes(fromNoble, 'der');
    const highS = derSig(r, N - s);
    // OpenSSL signs with the same key imported as a JWK.
    const jwk = {
      kty: 'EC',
      crv: 'P-256',
      x: Buffer.from(pub.slice(1, 33)).toString('base64url'),
      y: Buffer.from(pub.slice(33)).toString('base64url'),
      d: Buffer.from(secret).toString('base64url'),
    };
    const fromNode = nodeSign('sha256', msg, { key: jwk, format: 'jwk', dsaEncoding: 'der' });
    for (const [name, sig] of [
      ['noble', fromNoble],
      ['high s', highS],
      ['OpenSSL', fromNode],
    ] as const) {
      check(key, msg, sig, `${i} ${name}`);
      for (let j = 0; j < sig.length; j++) {
        const m = Buffer.from(sig);
        m[j]! ^= 1 << (j % 8);
        check(key, msg, m, `${i} ${name} byte ${j} changed`);
      }
      for (const cut of [0, 1, 2, 8, sig.length - 1]) check(key, msg, sig.slice(0, cut), `${i} ${name} cut to ${cut}`);
      check(key, msg, Buffer.concat([sig, Buffer.from([0])]), `${i} ${name} trailing byte`);
      const other = Buffer.from(msg);
      other[0]! ^= 1;
      check(key, other, sig, `${i} ${name} other message`);
      check(keyOf(p256.getPublicKey(p256.utils.randomSecretKey(), false), 100 + i), msg, sig, `${i} ${name} other key`);
    }
    // Valid BER, not minimal DER: a long-form sequence length, an extra leading zero on r.
    const der = Buffer.from(fromNoble);
    check(key, msg, Buffer.concat([Buffer.from([0x30, 0x81, der[1]!]), der.subarray(2)]), `${i} long-form length`);
    const rInt = derInt(r);
    const padded = Buffer.concat([Buffer.from([0x02, rInt[1]! + 1, 0]), rInt.subarray(2)]);
    const body = Buffer.concat([padded, derInt(s)]);
    check(key, msg, Buffer.concat([Buffer.from([0x30, body.length]), body]), `${i} r with a needless zero`);
    for (const [rr, ss, what] of [
      [0n, s, 'r = 0'],
      [r, 0n, 's = 0'],
      [N, s, 'r = n'],
      [r, N, 's = n'],
      [r + N, s, 'r + n'],
    ] as const)
      check(key, msg, derSig(rr, ss), `${i} ${what}`);
  }
  t.same(disagreements, [], 'no case where the two verifiers differ');
  t.ok(cases > 5000, `${cases} cases compared`);
  // Both outcomes occur: the comparison is not all-false (or all-true) by accident.
  t.equal(accepted, 24 * 3, 'exactly the valid signatures and their high-s twins are accepted');
});
