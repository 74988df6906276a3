/**
 * The Python example client (examples/python, grpcio + cryptography on /usr/bin/python3, stubs
 * generated here by protoc into a temporary directory) against a real signer over mTLS: its
 * canonical bytes are the vectors', its signed Sign and SignBatch are accepted, the signatures
 * it gets verify (noble), its request signature verifies over the bytes the audit log kept, and
 * a request signed with a key that is not the client's is refused with the exact reason.
 */
import { execFile } from 'node:child_process';
import { createHash, generateKeyPairSync, randomBytes, randomUUID, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import type * as grpc from '@grpc/grpc-js';
import { p256 } from '@noble/curves/nist.js';
import { secp256k1 } from '@noble/curves/secp256k1.js';
import t from 'tap';
import { startTestSigner } from '../harness/signer.js';
import { repoRoot } from '../harness/token.js';
import { call } from '../src/client/client.js';
import type { AuditEntry } from '../src/core/audit/chain.js';
import { canonicalRequestText } from '../src/core/request-signing/canonical.js';

const run = promisify(execFile);
const PYTHON = process.env.HSM_SIGNER_PYTHON ?? '/usr/bin/python3';
const CLIENT = `${repoRoot}/examples/python/hsm_signer_client.py`;

const ts = await startTestSigner({ config: { audit: { checkpointEveryEntries: 1000, checkpointEveryMs: 200 } } });
t.teardown(() => ts.close());
const stubs = `${ts.dir}/python-stubs`;
await mkdir(stubs);
await run('protoc', [
  `-I${repoRoot}/proto`,
  `--python_out=${stubs}`,
  `--grpc_python_out=${stubs}`,
  '--plugin=protoc-gen-grpc_python=/usr/bin/grpc_python_plugin',
  `${repoRoot}/proto/signer/v1/signer.proto`,
]);
const files = ts.pki.files;
const python = async (args: string[]) => {
  const { stdout } = await run(PYTHON, [CLIENT, ...args], { env: { ...process.env, PYTHONPATH: stubs } });
  return JSON.parse(stdout) as Record<string, any>;
};
const conn = [
  '--address',
  ts.address,
  '--ca',
  files.caCert,
  '--cert',
  files.clients['payment-engine']!.cert,
  '--key',
  files.clients['payment-engine']!.key,
];
const admin = ts.as('security-admin');
const auditor = ts.as('auditor');
const key = await call<{ publicKey: Buffer }>(admin.keyAdmin, 'CreateKey', {
  keyId: 'hot-py',
  algorithm: 'ECDSA_SECP256K1',
});
const certPoint = (() => {
  const jwk = new X509Certificate(ts.pki.clients['payment-engine']!.cert).publicKey.export({ format: 'jwk' });
  return Buffer.concat([Buffer.of(4), Buffer.from(jwk.x!, 'base64url'), Buffer.from(jwk.y!, 'base64url')]);
})();

async function entries(): Promise<AuditEntry[]> {
  const stream = (
    auditor.audit as unknown as { ExportLog(r: object): grpc.ClientReadableStream<{ json: string }> }
  ).ExportLog({});
  const out: AuditEntry[] = [];
  for await (const m of stream) {
    const r = JSON.parse(m.json);
    if (r.type === 'entry') out.push(r);
  }
  return out;
}

t.test('the Python encoder gives the vectors and verifies their signatures', async (t) => {
  const file = `${repoRoot}/test/vectors/sign-request/vectors.json`;
  const doc = JSON.parse(readFileSync(file, 'utf8'));
  const out = await python(['vectors', file]);
  t.equal(out.vectors.length, doc.vectors.length);
  out.vectors.forEach((v: { text: string; verifies: Record<string, boolean> }, i: number) => {
    t.equal(v.text, doc.vectors[i].text, `${doc.vectors[i].name}: same bytes`);
    t.same(v.verifies, { p256: true, ed25519: true }, 'both vector signatures verify (cryptography)');
  });
  t.same(out.fingerprints, { p256: doc.keys.p256.fingerprint, ed25519: doc.keys.ed25519.fingerprint });
  t.ok(
    out.invalid.every((x: { refused: boolean }) => x.refused),
    'every invalid vector is refused',
  );
});

t.test('a Python-signed Sign is accepted; both signatures verify (noble)', async (t) => {
  const digest = randomBytes(32);
  const requestId = randomUUID();
  const out = await python([
    'sign',
    ...conn,
    '--key-id',
    'hot-py',
    '--digest',
    digest.toString('hex'),
    '--request-id',
    requestId,
    '--chain-id',
    '1',
    '--account-nonce',
    '5',
  ]);
  t.notOk(out.error, `no refusal: ${JSON.stringify(out.error)}`);
  const sig = Buffer.from(out.signature, 'hex');
  t.ok(secp256k1.verify(sig, digest, key.publicKey, { prehash: false }), 'the HSM signature verifies over the digest');
  const canonical = Buffer.from(out.canonical, 'hex');
  t.ok(
    p256.verify(Buffer.from(out.requestSignature, 'hex'), canonical, certPoint, { format: 'der', lowS: false }),
    'request signature (cert key)',
  );
  // The TypeScript encoder gives the same bytes for the same request.
  const time = Number(/\ntime (\d+)\n/.exec(canonical.toString())![1]);
  const ts_ = canonicalRequestText({
    kind: 'sign',
    client: 'payment-engine',
    keyId: 'hot-py',
    keyVersion: 0,
    id: requestId,
    clientTimeMs: time,
    payloads: [{ kind: 'digest', bytes: digest, scope: { chainId: 1n, nonce: 5n } }],
  });
  t.equal(canonical.toString('utf8'), ts_, 'Python and TypeScript encode the request alike');
  const entry = (await entries()).find((e) => e.requestId === requestId && e.signatureHash);
  t.equal(entry?.request?.message, out.canonical, 'the audit log kept the bytes Python signed');
  t.equal(entry?.request?.signature, out.requestSignature);
  t.equal(entry?.signatureHash, createHash('sha256').update(sig).digest('hex'));
});

t.test('a Python-signed SignBatch is accepted', async (t) => {
  const digests = [randomBytes(32), randomBytes(32)];
  const out = await python([
    'batch',
    ...conn,
    '--key-id',
    'hot-py',
    ...digests.flatMap((d) => ['--digest', d.toString('hex')]),
  ]);
  t.notOk(out.error, `no refusal: ${JSON.stringify(out.error)}`);
  t.equal(out.signatures.length, 2);
  out.signatures.forEach((s: string, i: number) =>
    t.ok(secp256k1.verify(Buffer.from(s, 'hex'), digests[i]!, key.publicKey, { prehash: false }), `item ${i} verifies`),
  );
  const entry = (await entries()).find(
    (e) => e.kind === 'batch' && e.requestId === out.batchId && e.decision === 'allowed',
  );
  t.equal(entry?.request?.message, out.canonical);
});

t.test("Python signing with a key that is not the client's: UNAUTHENTICATED / REQUEST_SIGNATURE_INVALID", async (t) => {
  const rogue = `${ts.dir}/rogue.key`;
  await writeFile(
    rogue,
    generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }),
  );
  const out = await python([
    'sign',
    ...conn,
    '--key-id',
    'hot-py',
    '--digest',
    randomBytes(32).toString('hex'),
    '--request-key',
    rogue,
  ]);
  t.same(
    { code: out.error?.code, reason: out.error?.reason },
    { code: 'UNAUTHENTICATED', reason: 'REQUEST_SIGNATURE_INVALID' },
  );
});
