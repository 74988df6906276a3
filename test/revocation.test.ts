import { randomBytes, randomUUID, X509Certificate } from 'node:crypto';
import { rename, writeFile } from 'node:fs/promises';
import * as grpc from '@grpc/grpc-js';
import t from 'tap';
import { watchConnection } from '../harness/connection.js';
import { DEFAULT_CLIENTS, issueClient, type KeyPair, makePki, pinsOf, writeCrl } from '../harness/pki.js';
import { freePort, startSignerProcess } from '../harness/process.js';
import { eventually, refusal, refused, testConfig } from '../harness/signer.js';
import { makeToken, tempDir } from '../harness/token.js';
import { call, connect, nowTimestamp, type SignerClients } from '../src/client/client.js';
import { decodeError } from '../src/client/errors.js';

// Issue 11, point 2: a leaked client certificate can be revoked (CRL) or unpinned, and the
// change reaches connections that are already open at their next call, without a restart.
// The signer is a real child process (src/main.ts), so SIGHUP and the file watch are its own.

const tmp = await tempDir('revoke-');
t.teardown(() => tmp.cleanup());
const [pki, token] = await Promise.all([makePki(tmp.path, [...DEFAULT_CLIENTS, 'other-engine']), makeToken(tmp.path)]);
const crlFile = `${tmp.path}/clients.crl`;
await writeCrl(pki, crlFile, []);
const port = await freePort();
const configFile = `${tmp.path}/signer.json`;
const base = testConfig(tmp.path, pki, token);
/** Writes the config as an operator should: a new file renamed over the old one. */
async function writeConfig(pins: Record<string, string[]> = {}) {
  const clients = Object.fromEntries(
    Object.entries(base.clients).map(([cn, c]) => [cn, pins[cn] ? { ...c, pins: pins[cn] } : c]),
  );
  const tls = { ...base.tls, crlFile };
  const config = { ...base, clients, listen: `127.0.0.1:${port}`, tls, log: { level: 'info' } };
  await writeFile(`${configFile}.new`, JSON.stringify(config, null, 2));
  await rename(`${configFile}.new`, configFile);
}
await writeConfig();
// A loaded machine (2 cores, parallel test files) can take longer than the default 30 s.
const proc = await startSignerProcess(configFile, 90_000);
t.teardown(() => proc.stop('SIGKILL'));

const open: SignerClients[] = [];
t.teardown(() => open.forEach((c) => c.close()));
const clientWith = (pair: KeyPair): SignerClients => {
  const c = connect(`127.0.0.1:${port}`, { ca: pki.caCert, cert: pair.cert, key: pair.key });
  open.push(c);
  return c;
};
const sign = (c: SignerClients, keyId = 'hot-rv') =>
  call<{ signature: Buffer }>(
    c.signer,
    'Sign',
    { keyId, requestId: randomUUID(), clientTime: nowTimestamp(), digest: randomBytes(32) },
    5000,
  );
const logLines = (msg: string) =>
  proc
    .logs()
    .split('\n')
    .filter((l) => l.includes(`"msg":"${msg}`));
/** Runs `change` and waits until the signer logged one more reload (or failed reload). */
async function reloaded(change: () => Promise<unknown>, msg = 'trust reloaded'): Promise<string> {
  const before = logLines(msg).length;
  await change();
  if (!(await eventually(() => logLines(msg).length > before, 10_000))) {
    throw new Error(`no "${msg}" after the change; log ends: ${proc.logs().slice(-1500)}`);
  }
  return logLines(msg).at(-1)!;
}
const serialOf = (pem: Buffer) => new X509Certificate(pem).serialNumber.toLowerCase().replace(/^0+/, '');
/** The pin as the signer reports it: lowercase hex without colons. */
const canonical = (pin: string) =>
  pin.startsWith('spki-sha256:') && pin.endsWith('=')
    ? `spki-sha256:${Buffer.from(pin.slice(12), 'base64').toString('hex')}`
    : pin
        .replaceAll(':', '')
        .replace(/^(cert|spki)-sha256/, '$1-sha256:')
        .toLowerCase();

const admin = clientWith(pki.clients['security-admin']!);
await call(admin.keyAdmin, 'CreateKey', { keyId: 'hot-rv', algorithm: 'ECDSA_P256' });
await call(admin.keyAdmin, 'CreateKey', { keyId: 'shared-rv', algorithm: 'ECDSA_P256' });

const original = pki.clients['payment-engine']!;
let replacement: Awaited<ReturnType<typeof issueClient>>;

t.test('revoking the engine certificate while it streams Sign calls refuses its next call there', async (t) => {
  const engine = clientWith(original);
  const conn = watchConnection(engine.signer);
  let signed = 0;
  let revokedAt = Infinity;
  /** Calls that started after the signer logged the reload and still signed: must stay 0. */
  let signedAfterReload = 0;
  let refusedBy: grpc.ServiceError | undefined;
  const until = Date.now() + 20_000;
  // One client, one connection, a steady stream of calls; the CRL lands in the middle of it.
  while (!refusedBy && Date.now() < until) {
    const reloadedBefore = logLines('trust reloaded').length > revokedAt;
    try {
      await sign(engine);
      signed++;
      if (reloadedBefore) signedAfterReload++;
    } catch (e) {
      refusedBy = e as grpc.ServiceError;
      break;
    }
    if (signed === 10) {
      revokedAt = logLines('trust reloaded').length;
      void writeCrl(pki, crlFile, [original.cert]);
    }
  }
  t.ok(signed >= 10, `${signed} calls signed before the revocation`);
  t.ok(refusedBy, 'a call was refused once the CRL was reloaded');
  t.ok(logLines('trust reloaded').length > revokedAt, 'the file watch reloaded the CRL (no signal, no restart)');
  t.equal(signedAfterReload, 0, 'no call that started after the reload was signed');
  const d = decodeError(refusedBy!);
  t.equal(d.code, grpc.status.UNAUTHENTICATED);
  t.equal(d.reason, 'CERTIFICATE_REVOKED');
  t.equal(d.metadata.serial, serialOf(original.cert), 'ErrorInfo names the revoked serial');
  t.equal(d.metadata.client, 'payment-engine');
  t.match(d.message, /revoked/);
  for (let i = 0; i < 3; i++) await refused(t, sign(engine), grpc.status.UNAUTHENTICATED, 'CERTIFICATE_REVOKED');
  t.ok(conn.stayedReady(), `all of it over one connection (states: ${conn.changes.join(' > ')})`);
  conn.stop();
  // TLS still accepts the certificate (the CRL is not in the handshake); the first call is refused.
  await refused(t, sign(clientWith(original)), grpc.status.UNAUTHENTICATED, 'CERTIFICATE_REVOKED');
});

t.test('a replacement certificate (same CN, new key) works', async (t) => {
  replacement = await issueClient(pki, 'payment-engine');
  const res = await sign(clientWith(replacement));
  t.equal(res.signature.length, 64, 'the replacement signs');
});

t.test('pins: an unpinned certificate with the right CN is refused until its pin is added', async (t) => {
  const engineB = clientWith(replacement);
  await sign(engineB);
  const pinB = await pinsOf(replacement.files.cert);
  // Pin the replacement's key (base64, as openssl prints it).
  await reloaded(() => writeConfig({ 'payment-engine': [pinB.spki] }));
  await sign(engineB);
  t.pass('the pinned replacement still signs on its open connection');

  const third = await issueClient(pki, 'payment-engine');
  const pinC = await pinsOf(third.files.cert);
  const engineC = clientWith(third);
  const conn = watchConnection(engineC.signer);
  const d = await refused(t, sign(engineC), grpc.status.UNAUTHENTICATED, 'CERTIFICATE_NOT_PINNED');
  t.equal(d.metadata.certPin, canonical(pinC.cert), 'ErrorInfo carries the pin that would admit it');
  t.equal(d.metadata.spkiPin, canonical(pinC.spki));

  // Rollover: both pinned (the certificate fingerprint this time, colon form from openssl).
  await reloaded(() => writeConfig({ 'payment-engine': [pinB.spki, pinC.cert] }));
  await sign(engineC);
  await sign(engineB);
  t.pass('with both pinned, both sign');
  t.ok(conn.stayedReady(), 'the refused connection was admitted as it was, without reconnecting');

  // Rollover done: unpinning B reaches B's open connection at its next call.
  await reloaded(() => writeConfig({ 'payment-engine': [pinC.cert] }));
  await refused(t, sign(engineB), grpc.status.UNAUTHENTICATED, 'CERTIFICATE_NOT_PINNED');
  await sign(engineC);
  t.pass('the new certificate still signs');
});

t.test('an expired certificate is refused at its next call on an open connection', async (t) => {
  const short = await issueClient(pki, 'other-engine', { validSeconds: 4 });
  const notAfter = Date.parse(new X509Certificate(short.cert).validTo);
  const other = clientWith(short);
  const conn = watchConnection(other.signer);
  await sign(other, 'shared-rv');
  t.ok(Date.now() < notAfter, 'signed while the certificate was valid');
  await new Promise((r) => setTimeout(r, notAfter - Date.now() + 1200));
  const d = await refused(t, sign(other, 'shared-rv'), grpc.status.UNAUTHENTICATED, 'CERTIFICATE_EXPIRED');
  t.equal(d.metadata.notAfter, new Date(notAfter).toISOString(), 'ErrorInfo says when it expired');
  t.ok(conn.stayedReady(), `refused on the connection opened while valid (states: ${conn.changes.join(' > ')})`);
});

t.test('a CRL that does not verify is refused and the previous one stays in force', async (t) => {
  const line = await reloaded(() => writeCrl(pki, crlFile, [], { issuer: 'foreign' }), 'trust reload failed');
  t.match(line, /not signed by a configured CA/, 'the log says why');
  await refused(t, sign(clientWith(original)), grpc.status.UNAUTHENTICATED, 'CERTIFICATE_REVOKED');
  // A DER CRL is read as well.
  await reloaded(() => writeCrl(pki, crlFile, [original.cert], { der: true }));
  await refused(t, sign(clientWith(original)), grpc.status.UNAUTHENTICATED, 'CERTIFICATE_REVOKED');
});

t.test('SIGHUP reloads without stopping the signer', async (t) => {
  const line = await reloaded(async () => proc.child.kill('SIGHUP'));
  t.match(line, /"trigger":"SIGHUP"/);
  t.equal(proc.child.exitCode, null, 'still running');
  const d = decodeError(await refusal(sign(clientWith(original))));
  t.equal(d.reason, 'CERTIFICATE_REVOKED', 'the revocation survives the reload');
});
