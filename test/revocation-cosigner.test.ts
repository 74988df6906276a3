import { X509Certificate } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import t from 'tap';
import { watchConnection } from '../harness/connection.js';
import { COSIGNER_CLIENTS, startCosigners } from '../harness/cosigners.js';
import { DEFAULT_CLIENTS, issueClient, type KeyPair, makePki, writeCrl } from '../harness/pki.js';
import { eventually, refusal, refused } from '../harness/signer.js';
import { tempDir } from '../harness/token.js';
import { call } from '../src/client/client.js';
import { decodeError } from '../src/client/errors.js';
import { signerV1 } from '../src/infra/grpc/proto.js';

// The cosigner side of issue 11, point 2: a coordinator certificate revoked by the peer CA's
// CRL is refused at its next call on an open connection (after SIGHUP: this cosigner does not
// watch its files); a cosigner may take its peers from a CA of their own; connections age out.

const tmp = await tempDir('revoke-cosigner-');
t.teardown(() => tmp.cleanup());
const pki = await makePki(tmp.path, [...DEFAULT_CLIENTS, ...COSIGNER_CLIENTS]);
const crlFile = `${tmp.path}/peers.crl`;
await writeCrl(pki, crlFile, []);
const foreignCoordinator = await issueClient(pki, 'coordinator', { issuer: 'foreign' });
const nodes = await startCosigners(tmp.path, pki, 2, {}, (config, id) =>
  id === 1
    ? { ...config, tls: { ...config.tls, crlFile, watch: false } }
    : {
        ...config,
        // Peers from the foreign CA only; the ceremony identities stay under tls.caFile.
        tls: { ...config.tls, peerCaFile: pki.files.foreign.caCert },
        connections: { maxAgeMs: 1500, maxAgeGraceMs: 500 },
      },
);
t.teardown(() => Promise.all(nodes.map((n) => n.stop('SIGKILL'))));

const open: grpc.Client[] = [];
t.teardown(() => open.forEach((c) => c.close()));
/** A Cosigner client presenting `pair`; the cosigner's server certificate is from the test CA. */
const coordinator = (address: string, pair: KeyPair): grpc.Client => {
  const creds = grpc.credentials.createSsl(pki.caCert, pair.key, pair.cert);
  const c = new signerV1.Cosigner(address, creds, { 'grpc.ssl_target_name_override': 'localhost' });
  open.push(c);
  return c;
};
const info = (c: grpc.Client) => call<{ cosignerId: number }>(c, 'Info', {}, 5000);
const reloads = (i: number) =>
  nodes[i]!.proc.logs()
    .split('\n')
    .filter((l) => l.includes('"msg":"trust reloaded"'));

t.test('a cosigner refuses a revoked coordinator certificate at its next call, after SIGHUP', async (t) => {
  const original = pki.clients.coordinator!;
  const c = coordinator(nodes[0]!.address, original);
  const conn = watchConnection(c);
  t.equal((await info(c)).cosignerId, 1, 'the coordinator is a peer');
  await writeCrl(pki, crlFile, [original.cert]);
  await new Promise((r) => setTimeout(r, 300));
  t.equal((await info(c)).cosignerId, 1, 'a new CRL file alone changes nothing while the cosigner does not watch');
  const before = reloads(0).length;
  nodes[0]!.proc.child.kill('SIGHUP');
  t.ok(await eventually(() => reloads(0).length > before, 10_000), 'SIGHUP reloaded the CRL');
  t.match(reloads(0).at(-1), /"trigger":"SIGHUP"/);
  const d = await refused(t, info(c), grpc.status.UNAUTHENTICATED, 'CERTIFICATE_REVOKED');
  t.equal(d.metadata.client, 'coordinator');
  t.equal(d.metadata.serial, new X509Certificate(original.cert).serialNumber.toLowerCase().replace(/^0+/, ''));
  t.ok(conn.stayedReady(), `refused on the connection opened before (states: ${conn.changes.join(' > ')})`);

  const replacement = await issueClient(pki, 'coordinator');
  const renewed = coordinator(nodes[0]!.address, replacement);
  t.equal((await info(renewed)).cosignerId, 1, 'a replacement certificate is a peer');
  const stranger = coordinator(nodes[0]!.address, pki.clients['payment-engine']!);
  await refused(t, info(stranger), grpc.status.PERMISSION_DENIED, 'NOT_AUTHORIZED');
});

t.test('tls.peerCaFile: peers come from their own CA, not the default one', async (t) => {
  const c = coordinator(nodes[1]!.address, foreignCoordinator);
  t.equal((await info(c)).cosignerId, 2, 'a coordinator from the peer CA is admitted');
  const e = await refusal(info(coordinator(nodes[1]!.address, pki.clients.coordinator!)));
  t.equal(e.code, grpc.status.UNAVAILABLE, 'a coordinator from tls.caFile fails the handshake');
  t.equal(decodeError(e).reason, undefined, 'refused by TLS, before any handler');
});

t.test('connections.maxAgeMs closes a connection however busy it keeps', async (t) => {
  const c = coordinator(nodes[1]!.address, foreignCoordinator);
  const conn = watchConnection(c);
  await info(c);
  // Calls keep the connection busy; the server still sends GOAWAY at about 1.5 s (+/- jitter).
  const until = Date.now() + 5000;
  while (conn.stayedReady() && Date.now() < until) {
    await info(c);
    await new Promise((r) => setTimeout(r, 100));
  }
  t.notOk(conn.stayedReady(), `the connection was closed by its age (states: ${conn.changes.join(' > ')})`);
  t.equal((await info(c)).cosignerId, 2, 'the client reconnects and goes on');
});
