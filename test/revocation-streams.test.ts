import { randomBytes, randomUUID, X509Certificate } from 'node:crypto';
import { rename, writeFile } from 'node:fs/promises';
import * as grpc from '@grpc/grpc-js';
import t from 'tap';
import { DEFAULT_CLIENTS, issueClient, type KeyPair, makePki, pinsOf, writeCrl } from '../harness/pki.js';
import { freePort, startSignerProcess } from '../harness/process.js';
import { eventually, testConfig } from '../harness/signer.js';
import { makeToken, tempDir } from '../harness/token.js';
import { call, connect, nowTimestamp, type SignerClients } from '../src/client/client.js';
import { type DecodedError, decodeError } from '../src/client/errors.js';

// Issue 11, point 2: a certificate revoked, unpinned or expired loses its open streams too, not
// only its next unary call. A WatchKeys stream makes no further calls, so the signer checks the
// open streams again at every trust reload (and expiries on its own). Real child process: the
// file watch and SIGHUP are its own.

const tmp = await tempDir('revoke-streams-');
t.teardown(() => tmp.cleanup());
const [pki, token] = await Promise.all([makePki(tmp.path, [...DEFAULT_CLIENTS, 'other-engine']), makeToken(tmp.path)]);
const crlFile = `${tmp.path}/clients.crl`;
await writeCrl(pki, crlFile, []);
const port = await freePort();
const configFile = `${tmp.path}/signer.json`;
const base = testConfig(tmp.path, pki, token);
async function writeConfig(pins: Record<string, string[]> = {}) {
  const clients = Object.fromEntries(
    Object.entries(base.clients).map(([cn, c]) => [cn, pins[cn] ? { ...c, pins: pins[cn] } : c]),
  );
  const config = {
    ...base,
    clients,
    listen: `127.0.0.1:${port}`,
    tls: { ...base.tls, crlFile },
    log: { level: 'info' },
  };
  await writeFile(`${configFile}.new`, JSON.stringify(config, null, 2));
  await rename(`${configFile}.new`, configFile);
}
await writeConfig();
const proc = await startSignerProcess(configFile, 90_000);
t.teardown(() => proc.stop('SIGKILL'));

const open: SignerClients[] = [];
t.teardown(() => open.forEach((c) => c.close()));
const clientWith = (pair: KeyPair): SignerClients => {
  const c = connect(`127.0.0.1:${port}`, { ca: pki.caCert, cert: pair.cert, key: pair.key });
  open.push(c);
  return c;
};
const reloads = () =>
  proc
    .logs()
    .split('\n')
    .filter((l) => l.includes('"msg":"trust reloaded"')).length;

interface Watch {
  keys: string[];
  /** When the stream ended with an error (ms), and the error. */
  ended?: { at: number; error: DecodedError };
  cancel(): void;
}
/** Opens WatchKeys and resolves once the first key arrived (the stream is established). */
async function watch(c: SignerClients): Promise<Watch> {
  const stream = (
    c.signer as unknown as { WatchKeys(r: object): grpc.ClientReadableStream<{ keyId: string }> }
  ).WatchKeys({ keyId: '' });
  const w: Watch = { keys: [], cancel: () => stream.cancel() };
  stream.on('data', (k) => w.keys.push(k.keyId));
  stream.on('error', (e: grpc.ServiceError) => {
    w.ended = { at: Date.now(), error: decodeError(e) };
  });
  if (!(await eventually(() => w.keys.length > 0 || w.ended !== undefined, 20_000))) throw new Error('no first key');
  if (w.ended) throw new Error(`the stream was refused: ${w.ended.error.reason}`);
  return w;
}
/** Runs `change`, then waits for the reload; returns when the reload was first seen (ms). */
async function reloadAfter(change: () => Promise<unknown>): Promise<number> {
  const before = reloads();
  await change();
  if (!(await eventually(() => reloads() > before, 15_000))) throw new Error('no reload');
  return Date.now();
}

const admin = clientWith(pki.clients['security-admin']!);
await call(admin.keyAdmin, 'CreateKey', { keyId: 'hot-ws', algorithm: 'ECDSA_P256' });
await call(admin.keyAdmin, 'CreateKey', { keyId: 'shared-ws', algorithm: 'ECDSA_P256' });
const original = pki.clients['payment-engine']!;
let replacement: Awaited<ReturnType<typeof issueClient>>;

t.test('revoking a certificate by CRL ends its open WatchKeys stream at the reload', async (t) => {
  const engine = await watch(clientWith(original));
  const other = await watch(clientWith(pki.clients['other-engine']!));
  const engineAgain = await watch(clientWith(original));
  const reloadedAt = await reloadAfter(() => writeCrl(pki, crlFile, [original.cert]));
  t.ok(await eventually(() => engine.ended !== undefined && engineAgain.ended !== undefined, 5000), 'both ended');
  for (const w of [engine, engineAgain]) {
    t.equal(w.ended!.error.code, grpc.status.UNAUTHENTICATED, 'UNAUTHENTICATED');
    t.equal(w.ended!.error.reason, 'CERTIFICATE_REVOKED', 'CERTIFICATE_REVOKED');
    t.equal(w.ended!.error.metadata.client, 'payment-engine');
    t.ok(w.ended!.at - reloadedAt < 1500, `ended ${w.ended!.at - reloadedAt} ms after the reload was logged`);
  }
  // Another client's stream stays, and still follows changes.
  await call(admin.keyAdmin, 'CreateKey', { keyId: 'shared-ws2', algorithm: 'ECDSA_P256' });
  t.ok(await eventually(() => other.keys.includes('shared-ws2'), 10_000), 'other-engine still receives changes');
  t.equal(other.ended, undefined, 'other-engine’s stream is open');
  other.cancel();
});

t.test('the replacement certificate opens a new stream', async (t) => {
  replacement = await issueClient(pki, 'payment-engine');
  const w = await watch(clientWith(replacement));
  t.ok(w.keys.includes('hot-ws'), 'it receives the keys');
  w.cancel();
});

t.test('removing a pin ends the unpinned certificate’s stream', async (t) => {
  const pinR = await pinsOf(replacement.files.cert);
  const third = await issueClient(pki, 'payment-engine');
  const pinT = await pinsOf(third.files.cert);
  await reloadAfter(() => writeConfig({ 'payment-engine': [pinR.spki, pinT.spki] }));
  const r = await watch(clientWith(replacement));
  const th = await watch(clientWith(third));
  // Unpin the replacement: the config file's watch reloads it.
  const reloadedAt = await reloadAfter(() => writeConfig({ 'payment-engine': [pinT.spki] }));
  t.ok(await eventually(() => r.ended !== undefined, 5000), 'the unpinned certificate’s stream ended');
  t.equal(r.ended!.error.code, grpc.status.UNAUTHENTICATED);
  t.equal(r.ended!.error.reason, 'CERTIFICATE_NOT_PINNED');
  t.ok(r.ended!.at - reloadedAt < 1500, `within ${r.ended!.at - reloadedAt} ms of the reload`);
  t.equal(th.ended, undefined, 'the pinned one’s stream stays open');
  th.cancel();
  await reloadAfter(() => writeConfig());
});

t.test('an expiring certificate’s stream ends at its expiry, without a reload', async (t) => {
  const short = await issueClient(pki, 'other-engine', { validSeconds: 5 });
  const notAfter = Date.parse(new X509Certificate(short.cert).validTo);
  const w = await watch(clientWith(short));
  const before = reloads();
  t.ok(await eventually(() => w.ended !== undefined, notAfter - Date.now() + 5000), 'ended');
  t.equal(w.ended!.error.code, grpc.status.UNAUTHENTICATED);
  t.equal(w.ended!.error.reason, 'CERTIFICATE_EXPIRED');
  t.ok(w.ended!.at >= notAfter && w.ended!.at - notAfter < 2500, `${w.ended!.at - notAfter} ms after notAfter`);
  t.equal(reloads(), before, 'no reload was needed');
});

t.test('a revoked auditor’s open ExportLog stream ends with the revocation', async (t) => {
  // Enough entries that the export outlasts the client's pause: 600 signatures in one batch.
  const engine = clientWith(replacement);
  const items = Array.from({ length: 600 }, () => ({ digest: randomBytes(32) }));
  await call(
    engine.signer,
    'SignBatch',
    { batchId: randomUUID(), keyId: 'hot-ws', clientTime: nowTimestamp(), items },
    300_000,
  );
  const pair = await issueClient(pki, 'auditor');
  const stream = (
    clientWith(pair).audit as unknown as { ExportLog(r: object): grpc.ClientReadableStream<{ json: string }> }
  ).ExportLog({});
  let records = 0;
  let ended: DecodedError | undefined;
  let finished = false;
  stream.on('data', () => {
    records++;
    if (records === 1) stream.pause();
  });
  stream.on('error', (e: grpc.ServiceError) => {
    ended = decodeError(e);
  });
  stream.on('end', () => {
    finished = true;
  });
  t.ok(await eventually(() => records > 0, 20_000), 'the export started');
  // The server fills the flow-control window and waits; meanwhile the auditor is revoked.
  await new Promise((r) => setTimeout(r, 500));
  await reloadAfter(() => writeCrl(pki, crlFile, [original.cert, pair.cert]));
  stream.resume();
  // grpc-js ends the readable side before it reports the status: the status is what counts.
  t.ok(await eventually(() => ended !== undefined || finished, 30_000), 'the stream ended');
  t.ok(await eventually(() => ended !== undefined, 2000), 'with an error status, not OK');
  t.equal(ended?.code, grpc.status.UNAUTHENTICATED);
  t.equal(ended?.reason, 'CERTIFICATE_REVOKED');
  t.ok(records < 600, `${records} records before the refusal`);
});
