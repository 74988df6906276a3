import { randomBytes, randomUUID } from 'node:crypto';
import type * as grpc from '@grpc/grpc-js';
import { status } from '@grpc/grpc-js';
import { secp256k1 } from '@noble/curves/secp256k1.js';
import pkcs11js from 'pkcs11js';
import t from 'tap';
import { refused, startTestSigner } from '../harness/signer.js';
import { call, nowTimestamp } from '../src/client/client.js';

const ts = await startTestSigner({ config: { refreshMs: 200 } });
t.teardown(() => ts.close());
const engine = ts.as('payment-engine');
const admin = ts.as('security-admin');

type Key = { keyId: string; version: number; state: string; publicKey: Buffer; retireAt: { seconds: string } | null };
type Signed = { signature: Buffer; keyVersion: number };
const sign = (keyId: string, digest: Buffer, keyVersion = 0) =>
  call<Signed>(engine.signer, 'Sign', {
    keyId,
    requestId: randomUUID(),
    clientTime: nowTimestamp(),
    digest,
    keyVersion,
  });
const versions = async (keyId: string) =>
  (await call<{ keys: Key[] }>(admin.signer, 'ListKeys', {})).keys
    .filter((k) => k.keyId === keyId)
    .map((k) => `v${k.version}:${k.state}`);

await call(admin.keyAdmin, 'CreateKey', { keyId: 'hot-rot', algorithm: 'ECDSA_SECP256K1' });

t.test('rotation under load: every request answered, each signature valid under the version it names', async (t) => {
  const pub = new Map<number, Buffer>();
  for (const k of (await call<{ keys: Key[] }>(admin.signer, 'ListKeys', {})).keys)
    if (k.keyId === 'hot-rot') pub.set(k.version, k.publicKey);
  const digests = Array.from({ length: 600 }, () => randomBytes(32));
  let next = 0;
  const results: Array<{ digest: Buffer; res: Signed }> = [];
  const worker = async () => {
    while (next < digests.length) {
      const digest = digests[next++]!;
      results.push({ digest, res: await sign('hot-rot', digest) });
    }
  };
  const load = Promise.all(Array.from({ length: 16 }, worker));
  await new Promise((r) => setTimeout(r, 100));
  const rotated = await call<{ active: Key; previous: Key }>(admin.keyAdmin, 'RotateKey', {
    keyId: 'hot-rot',
    overlapSeconds: 3600,
  });
  await load;
  pub.set(rotated.active.version, rotated.active.publicKey);
  t.equal(results.length, 600, 'every request answered');
  const bad = results.filter(
    ({ digest, res }) => !secp256k1.verify(res.signature, digest, pub.get(res.keyVersion)!, { prehash: false }),
  );
  t.equal(bad.length, 0, 'each signature verifies under the version the response names');
  const byVersion = new Set(results.map((r) => r.res.keyVersion));
  t.same([...byVersion].sort(), [1, 2], 'the load spans the switch');
  t.equal(rotated.previous.state, 'VERIFY_ONLY');
  t.ok(rotated.previous.retireAt, 'the overlap end is shown');
  t.same(await versions('hot-rot'), ['v1:VERIFY_ONLY', 'v2:ACTIVE']);
  const got = await call<Key & { versions: Key[] }>(engine.signer, 'GetPublicKey', { keyId: 'hot-rot' });
  t.equal(got.version, 2, 'GetPublicKey names the active version');
  t.same(
    got.versions.map((k) => `v${k.version}:${k.state}`),
    ['v1:VERIFY_ONLY', 'v2:ACTIVE'],
    'and lists every version',
  );
});

t.test('a pinned retired version is refused; the active one signs', async (t) => {
  await refused(t, sign('hot-rot', randomBytes(32), 1), status.FAILED_PRECONDITION, 'KEY_VERSION_RETIRED');
  await refused(t, sign('hot-rot', randomBytes(32), 7), status.NOT_FOUND, 'KEY_VERSION_NOT_FOUND');
  t.equal((await sign('hot-rot', randomBytes(32), 2)).keyVersion, 2);
});

t.test('the watch stream tells the engine when the active version changes', async (t) => {
  const stream = (engine.signer as unknown as { WatchKeys(r: object): grpc.ClientReadableStream<Key> }).WatchKeys({
    keyId: 'hot-rot',
  });
  const seen: string[] = [];
  const gotActive3 = new Promise<void>((resolve) =>
    stream.on('data', (k: Key) => {
      seen.push(`v${k.version}:${k.state}`);
      if (k.version === 3 && k.state === 'ACTIVE') resolve();
    }),
  );
  stream.on('error', () => undefined);
  await new Promise((r) => setTimeout(r, 200));
  await call(admin.keyAdmin, 'RotateKey', { keyId: 'hot-rot', overlapSeconds: 1 });
  await gotActive3;
  stream.cancel();
  t.ok(
    seen.includes('v2:ACTIVE') && seen.includes('v3:ACTIVE') && seen.includes('v2:VERIFY_ONLY'),
    `saw ${seen.join(' ')}`,
  );
});

t.test('after the overlap the previous version is disabled', async (t) => {
  const until = Date.now() + 5000;
  while (Date.now() < until && !(await versions('hot-rot')).includes('v2:DISABLED'))
    await new Promise((r) => setTimeout(r, 100));
  t.same(await versions('hot-rot'), ['v1:VERIFY_ONLY', 'v2:DISABLED', 'v3:ACTIVE']);
});

t.test('disable and destroy, with confirmation, only by admins', async (t) => {
  await refused(
    t,
    call(engine.keyAdmin, 'RotateKey', { keyId: 'hot-rot' }),
    status.PERMISSION_DENIED,
    'NOT_AUTHORIZED',
  );
  await refused(
    t,
    call(admin.keyAdmin, 'DestroyKeyVersion', { keyId: 'hot-rot', version: 1, confirmKeyId: 'hot-rot' }),
    status.FAILED_PRECONDITION,
    'KEY_STATE_INVALID',
  );
  const disabled = await call<Key>(admin.keyAdmin, 'DisableKeyVersion', { keyId: 'hot-rot', version: 1 });
  t.equal(disabled.state, 'DISABLED');
  await refused(
    t,
    call(admin.keyAdmin, 'DestroyKeyVersion', { keyId: 'hot-rot', version: 1, confirmKeyId: 'hot' }),
    status.INVALID_ARGUMENT,
    'CONFIRMATION_REQUIRED',
  );
  const v1 = ts.signer.keys.history('hot-rot').find((k) => k.version === 1)!;
  // An EVM key's version may hold funds: the operator confirms it was swept (test/sweep.test.ts).
  const destroyed = await call<Key>(admin.keyAdmin, 'DestroyKeyVersion', {
    keyId: 'hot-rot',
    version: 1,
    confirmKeyId: 'hot-rot',
    confirmSwept: true,
  });
  t.equal(destroyed.state, 'DESTROYED');
  t.same(destroyed.publicKey, v1.publicKey, 'its public key is still served');
  const left = await ts.signer.hsm.manage((s) =>
    ts.signer.hsm.find(s, [
      { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PRIVATE_KEY },
      { type: pkcs11js.CKA_ID, value: Buffer.from(v1.ckaId) },
    ]),
  );
  t.equal(left.length, 0, 'the private key object is gone from the token');
  await refused(t, sign('hot-rot', randomBytes(32), 1), status.NOT_FOUND, 'KEY_VERSION_NOT_FOUND');
});

t.test('every step is audited', async (t) => {
  const stream = (
    ts.as('auditor').audit as unknown as { ExportLog(r: object): grpc.ClientReadableStream<{ json: string }> }
  ).ExportLog({});
  const kinds: string[] = [];
  for await (const m of stream) {
    const r = JSON.parse(m.json);
    if (r.type === 'entry' && r.keyId === 'hot-rot' && r.kind.startsWith('key.'))
      kinds.push(`${r.kind}:v${r.keyVersion}`);
  }
  for (const want of [
    'key.create:v1',
    'key.rotate:v2',
    'key.rotate:v3',
    'key.disable:v2',
    'key.disable:v1',
    'key.destroy:v1',
  ])
    t.ok(kinds.includes(want), want);
});
