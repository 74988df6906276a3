import { randomUUID, X509Certificate } from 'node:crypto';
import t from 'tap';
import { makePki } from '../harness/pki.js';
import { tempDir } from '../harness/token.js';
import { certificateSigner } from '../src/client/request-signing.js';
import { canonicalRequestBytes } from '../src/core/request-signing/canonical.js';
import { RequestCheck } from '../src/cosigner/request-check.js';
import { caId, normaliseSerial } from '../src/infra/grpc/peer-cert.js';

// A cosigner's check of a request signed with the client certificate's key (real test PKI, real
// signatures): the certificate's parse and CA signature are kept by its bytes, so these cases make
// sure what must be decided at every share still is: the clock, the CRL, the CN, the issuer.
const dir = await tempDir('cosigner-request-check-');
t.teardown(() => dir.cleanup());
const pki = await makePki(dir.path, ['payment-engine', 'other-engine']);
const ca = new X509Certificate(pki.caCert);
const cert = new X509Certificate(pki.clients['payment-engine']!.cert);
let now = Date.now();
const check = new RequestCheck({ 'payment-engine': {}, 'other-engine': {} }, [ca], 1, () => now);

/** What the coordinator forwards for a Sign that `tls`'s key signed, claimed for `client`. */
function share(tls: { cert: Buffer; key: Buffer }, client = 'payment-engine') {
  const signer = certificateSigner(tls);
  const requestId = randomUUID();
  const payload = Buffer.from(`pay ${requestId}`);
  const message = canonicalRequestBytes({
    kind: 'sign',
    client,
    keyId: 'k',
    keyVersion: 0,
    id: requestId,
    clientTimeMs: Date.now(),
    payloads: [{ kind: 'message', bytes: payload }],
  });
  return {
    keyId: 'k',
    keyVersion: 1,
    epoch: 1,
    client,
    requestId,
    payloadKind: 'message',
    payload,
    replayScope: null,
    nonceId: 'n',
    commitments: [],
    signedRequest: Buffer.from(message),
    requestSignature: signer.sign(message),
    requestSigningKey: signer.signingKey,
    clientCertificate: new X509Certificate(tls.cert).raw,
    payloadIndex: 0,
  };
}
const refused = (why: string, message: RegExp) => ({
  name: 'SignerError',
  reason: 'REQUEST_SIGNATURE_INVALID',
  metadata: { why },
  message,
});

t.test('a certificate checked once still meets the clock, the CRL and its CN at every share', async (t) => {
  const engine = pki.clients['payment-engine']!;
  t.equal(check.check(share(engine)).client, 'payment-engine', 'signed with the certificate key: verified');
  t.equal(check.check(share(engine)).client, 'payment-engine', 'and again (the certificate kept)');
  t.throws(() => check.check(share(engine, 'other-engine')), refused('certificate', /not for CN=other-engine/));

  now = Date.parse(cert.validTo) + 1000;
  t.throws(() => check.check(share(engine)), refused('certificate', /not valid now/), 'expired: refused');
  now = Date.now();
  t.equal(check.check(share(engine)).client, 'payment-engine', 'valid again on a clock within its validity');

  const serial = normaliseSerial(cert.serialNumber);
  check.setRevocations({ revoked: new Map([[caId(ca), new Set([serial])]]), nextUpdate: undefined, entries: 1 });
  t.throws(() => check.check(share(engine)), refused('certificate', /revoked/), 'revoked by a reloaded CRL: refused');
  check.setRevocations({ revoked: new Map(), nextUpdate: undefined, entries: 0 });
  t.equal(check.check(share(engine)).client, 'payment-engine');
});

t.test("a certificate from another CA is refused, every time, and a tampered one doesn't parse", async (t) => {
  const foreign = pki.foreign.client;
  for (const _ of [1, 2])
    t.throws(() => check.check(share(foreign)), refused('certificate', /not issued by this cosigner/));
  const s = share(pki.clients['payment-engine']!);
  const bent = Buffer.from(s.clientCertificate);
  bent[bent.length - 5]! ^= 0xff;
  t.throws(() => check.check({ ...s, clientCertificate: bent }), refused('certificate', /not issued|does not parse/));
  t.throws(
    () => check.check({ ...s, clientCertificate: Buffer.from('not a certificate') }),
    refused('certificate', /does not parse/),
  );
});
