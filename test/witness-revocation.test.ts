import { randomBytes, X509Certificate } from 'node:crypto';
import { rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { ed25519 } from '@noble/curves/ed25519.js';
import t from 'tap';
import { issueClient, type KeyPair, makePki, pinsOf, writeCrl } from '../harness/pki.js';
import { freePort, START_TIMEOUT_MS, startSignerProcess } from '../harness/process.js';
import { eventually, refused } from '../harness/signer.js';
import { makeToken, tempDir } from '../harness/token.js';
import { call } from '../src/client/client.js';
import { signCheckpoint } from '../src/core/audit/checkpoint.js';
import { consistencyProof, leafHash } from '../src/core/audit/merkle.js';
import { MemoryTree } from '../src/core/audit/merkle-memory.js';
import { ed25519Signer } from '../src/core/audit/note.js';
import { signerV1 } from '../src/infra/grpc/proto.js';

// Issue 11, point 2 for the witness program: it trusts signers by certificate, so it takes the
// same CRL, pins and reloads as the signer (src/infra/grpc/peer-trust.ts, crl.ts, reload.ts): a
// revoked signer certificate gets no cosignature. A real witness process on its own token; the
// CRL is applied by SIGHUP (the file watch is off here, so only the signal can have reloaded it).

const ORIGIN = 'audit.test/hsm-signer/witness-revocation';
const dir = await tempDir('witness-revoke-');
t.teardown(() => dir.cleanup());
const [pki, token] = await Promise.all([makePki(dir.path, ['signer-prod']), makeToken(join(dir.path, 'w'), 'w')]);
const crlFile = join(dir.path, 'clients.crl');
await writeCrl(pki, crlFile, []);
const secret = ed25519.utils.randomSecretKey();
const logKey = ed25519.getPublicKey(secret);
const port = await freePort();
const configFile = join(dir.path, 'witness.json');
async function writeConfig(clientPins: Record<string, string[]> = {}) {
  const config = {
    role: 'witness',
    listen: `127.0.0.1:${port}`,
    tls: {
      caFile: pki.files.caCert,
      certFile: pki.files.server.cert,
      keyFile: pki.files.server.key,
      crlFile,
      watch: false,
    },
    hsm: { uri: token.uri, sessions: 2, moduleEnv: token.env },
    store: { sqlite: { path: join(dir.path, 'witness.db') } },
    clients: {},
    witnessing: {
      name: 'witness-1.test',
      clients: ['signer-prod'],
      clientPins,
      logs: [{ origin: ORIGIN, publicKey: Buffer.from(logKey).toString('base64') }],
    },
    log: { level: 'info' },
  };
  await writeFile(`${configFile}.new`, JSON.stringify(config, null, 2));
  await rename(`${configFile}.new`, configFile);
}
await writeConfig();
const proc = await startSignerProcess(configFile, START_TIMEOUT_MS, { ready: 'witness started' });
t.teardown(() => proc.stop('SIGKILL'));

const reloads = () =>
  proc
    .logs()
    .split('\n')
    .filter((l) => l.includes('"msg":"trust reloaded"')).length;
async function sighup(): Promise<void> {
  const before = reloads();
  proc.child.kill('SIGHUP');
  if (!(await eventually(() => reloads() > before, 15_000))) throw new Error('no reload after SIGHUP');
}

const open: grpc.Client[] = [];
t.teardown(() => open.forEach((c) => c.close()));
function witnessAs(pair: KeyPair): grpc.Client {
  const c = new signerV1.Witness(`127.0.0.1:${port}`, grpc.credentials.createSsl(pki.caCert, pair.key, pair.cert), {
    'grpc.ssl_target_name_override': 'localhost',
    'grpc.default_authority': 'localhost',
  });
  open.push(c);
  return c;
}

/** The log: leaves in memory, checkpoints signed by its Ed25519 key. */
const tree = new MemoryTree();
let cosigned = 0;
async function grow(n: number): Promise<{ oldSize: number; consistencyProof: Buffer[]; checkpoint: string }> {
  tree.append(Array.from({ length: n }, () => leafHash(randomBytes(16))));
  const signer = ed25519Signer(ORIGIN, logKey, async (m) => ed25519.sign(m, secret));
  const checkpoint = await signCheckpoint({ origin: ORIGIN, size: tree.size, root: tree.root() }, signer);
  const proof = cosigned === 0 ? [] : (await consistencyProof(tree, cosigned, tree.size)).map((p) => Buffer.from(p));
  return { oldSize: cosigned, consistencyProof: proof, checkpoint };
}
const addCheckpoint = (c: grpc.Client, req: object) =>
  call<{ cosignature: string; size: string }>(c, 'AddCheckpoint', req);
const latestSize = async (c: grpc.Client) =>
  Number((await call<{ size: string }>(c, 'GetLatest', { origin: ORIGIN })).size);

const original = pki.clients['signer-prod']!;
let replacement: Awaited<ReturnType<typeof issueClient>>;

t.test('a revoked signer certificate gets no cosignature after SIGHUP; its replacement does', async (t) => {
  const signer = witnessAs(original);
  const first = await addCheckpoint(signer, await grow(3));
  t.equal(Number(first.size), 3, 'cosigned before the revocation');
  t.match(first.cosignature, /witness-1\.test/);
  cosigned = 3;

  await writeCrl(pki, crlFile, [original.cert]);
  const next = await grow(4);
  const before = await addCheckpoint(witnessAs(original), next).then(
    () => 'cosigned',
    () => 'refused',
  );
  t.equal(before, 'cosigned', 'the CRL file alone changes nothing (no watch): the signal applies it');
  cosigned = 7;

  await sighup();
  const d = await refused(t, addCheckpoint(signer, await grow(2)), grpc.status.UNAUTHENTICATED, 'CERTIFICATE_REVOKED');
  t.equal(d.metadata.client, 'signer-prod');
  t.equal(d.metadata.serial, new X509Certificate(original.cert).serialNumber.toLowerCase().replace(/^0+/, ''));
  await refused(t, latestSize(signer), grpc.status.UNAUTHENTICATED, 'CERTIFICATE_REVOKED');

  replacement = await issueClient(pki, 'signer-prod');
  const fresh = witnessAs(replacement);
  t.equal(await latestSize(fresh), 7, 'the refused checkpoint left the witness’s head as it was');
  const res = await addCheckpoint(fresh, await grow(0));
  t.equal(Number(res.size), 9, 'the replacement certificate gets the cosignature');
  cosigned = 9;
});

t.test('pins: a signer certificate that matches none of its pins is refused', async (t) => {
  const third = await issueClient(pki, 'signer-prod');
  const pin = await pinsOf(replacement.files.cert);
  await writeConfig({ 'signer-prod': [pin.spki] });
  await sighup();
  await refused(
    t,
    addCheckpoint(witnessAs(third), await grow(1)),
    grpc.status.UNAUTHENTICATED,
    'CERTIFICATE_NOT_PINNED',
  );
  const res = await addCheckpoint(witnessAs(replacement), await grow(0));
  t.equal(Number(res.size), 10, 'the pinned certificate is cosigned');
});
