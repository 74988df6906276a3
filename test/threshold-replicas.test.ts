import { randomBytes, randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import { ed25519 } from '@noble/curves/ed25519.js';
import Database from 'better-sqlite3';
import t from 'tap';
import { COSIGNER_CLIENTS, type CosignerNode, startCosigners, thresholdConfig } from '../harness/cosigners.js';
import { DEFAULT_CLIENTS, makePki } from '../harness/pki.js';
import { startPostgres } from '../harness/postgres.js';
import { freePort, startSignerProcess } from '../harness/process.js';
import { eventually, refused, testConfig } from '../harness/signer.js';
import { makeToken, tempDir } from '../harness/token.js';
import { call, connect, nowTimestamp, type SignerClients } from '../src/client/client.js';

// Two signer replicas (child processes) on one PostgreSQL coordinate the same three cosigner
// processes and race RotateKey on one FROST key. Replica A is held (test-only hook) inside its
// rotation's DKG, after every cosigner agreed on the package and before any commits, while B's
// RotateKey arrives: the job lock A holds refuses B.
const pg = await startPostgres();
t.teardown(() => pg.stop());
const tmp = await tempDir('tss-replicas-');
t.teardown(() => tmp.cleanup());
const [pki, token] = await Promise.all([
  makePki(tmp.path, [...DEFAULT_CLIENTS, ...COSIGNER_CLIENTS]),
  makeToken(tmp.path),
]);
const nodes: CosignerNode[] = await startCosigners(tmp.path, pki, 3);
t.teardown(() => Promise.all(nodes.map((n) => n.stop())));
const hold = join(tmp.path, 'hold');
await mkdir(hold);

const open: SignerClients[] = [];
t.teardown(() => open.forEach((c) => c.close()));
async function replica(name: string, env?: Record<string, string>) {
  const port = await freePort();
  const file = join(tmp.path, `${name}.json`);
  await writeFile(
    file,
    JSON.stringify({
      ...testConfig(tmp.path, pki, token),
      listen: `127.0.0.1:${port}`,
      store: { postgres: { url: pg.url } },
      threshold: thresholdConfig(nodes, pki),
      log: { level: 'info' },
      refreshMs: 500,
    }),
  );
  const proc = await startSignerProcess(file, 90_000, env ? { env } : {});
  t.teardown(() => proc.stop('SIGKILL'));
  const as = (cn: string) => {
    const c = connect(`127.0.0.1:${port}`, { ca: pki.caCert, cert: pki.clients[cn]!.cert, key: pki.clients[cn]!.key });
    open.push(c);
    return c;
  };
  return { proc, admin: as('security-admin'), engine: as('payment-engine') };
}

const a = await replica('a', { SIGNER_TEST_CEREMONY_PAUSE: `prepared:rotate:${hold}` });
const b = await replica('b');

type Key = { keyId: string; version: number; state: string; publicKey: Buffer; threshold: { epoch: number } | null };
const versions = async () =>
  (await call<{ keys: Key[] }>(b.engine.signer, 'ListKeys', {})).keys.filter((k) => k.keyId === 'race-ed');
const sharesOf = (n: CosignerNode) => {
  const db = new Database(n.dbPath, { readonly: true });
  try {
    return db
      .prepare("SELECT version, epoch, state FROM shares WHERE key_id = 'race-ed' ORDER BY version")
      .all() as Array<{ version: number; epoch: number; state: string }>;
  } finally {
    db.close();
  }
};
const sign = (engine: SignerClients, message: Uint8Array) =>
  call<{ signature: Buffer; keyVersion: number }>(
    engine.signer,
    'Sign',
    { keyId: 'race-ed', requestId: randomUUID(), clientTime: nowTimestamp(), message },
    30_000,
  );

await call(b.admin.keyAdmin, 'CreateKey', { keyId: 'race-ed', algorithm: 'FROST_ED25519' }, 60_000);

t.test('two replicas racing RotateKey on one FROST key: exactly one new version', async (t) => {
  const first = call<{ active: Key }>(a.admin.keyAdmin, 'RotateKey', { keyId: 'race-ed' }, 120_000);
  t.ok(await eventually(() => existsSync(join(hold, 'reached-prepared')), 120_000), 'replica A is inside its DKG');
  await refused(
    t,
    call(b.admin.keyAdmin, 'RotateKey', { keyId: 'race-ed' }, 60_000),
    status.ABORTED,
    'KEY_ROTATION_CONFLICT',
  );
  t.same(
    (await versions()).map((k) => [k.version, k.state]),
    [[1, 'ACTIVE']],
    'nothing activated before the cosigners commit',
  );
  await writeFile(join(hold, 'release-prepared'), '');
  const won = await first;
  t.equal(won.active.version, 2);
  t.ok(
    await eventually(async () => (await versions()).some((k) => k.version === 2), 5000),
    'replica B sees the new version',
  );
  const all = await versions();
  t.same(
    all.map((k) => [k.version, k.state]),
    [
      [1, 'VERIFY_ONLY'],
      [2, 'ACTIVE'],
    ],
    'exactly one new version',
  );
  for (const n of nodes) {
    t.same(
      sharesOf(n).map((r) => [r.version, r.epoch, r.state]),
      [
        [1, 1, 'active'],
        [2, 1, 'active'],
      ],
      `cosigner ${n.id} holds an active share of the new version`,
    );
  }
  const v2 = all.find((k) => k.version === 2)!;
  for (const [name, r] of [
    ['A', a],
    ['B', b],
  ] as const) {
    const message = randomBytes(40);
    const signed = await sign(r.engine, message);
    t.equal(signed.keyVersion, 2, `replica ${name} signs with the new version`);
    t.ok(ed25519.verify(signed.signature, message, v2.publicKey, { zip215: false }), 'and the signature verifies');
  }
});

t.test('both replicas rotating at once: every rotation that succeeded is one version, nothing orphaned', async (t) => {
  // A's hook is released: nothing holds either replica now.
  const outcomes = await Promise.allSettled([
    call<{ active: Key }>(a.admin.keyAdmin, 'RotateKey', { keyId: 'race-ed' }, 120_000),
    call<{ active: Key }>(b.admin.keyAdmin, 'RotateKey', { keyId: 'race-ed' }, 120_000),
  ]);
  const won = outcomes.filter((o) => o.status === 'fulfilled').length;
  t.ok(won >= 1, `${won} of the two rotations succeeded`);
  for (const o of outcomes) {
    if (o.status === 'rejected') t.match(o.reason, { code: status.ABORTED }, 'the other was refused as a conflict');
  }
  // Read through B, which sees A's change at its next reload (refreshMs 500).
  await eventually(async () => (await versions()).length >= 2 + won, 5000);
  const all = await versions();
  t.equal(all.length, 2 + won, 'one version per successful rotation');
  t.equal(all.filter((k) => k.state === 'ACTIVE').length, 1, 'one active version');
  const latest = all.at(-1)!;
  for (const n of nodes) {
    t.ok(
      sharesOf(n).some((r) => r.version === latest.version && r.state === 'active'),
      `cosigner ${n.id} holds the active version's share`,
    );
    t.notOk(
      sharesOf(n).some((r) => r.state === 'pending'),
      `cosigner ${n.id} holds no pending share`,
    );
  }
  const message = randomBytes(40);
  const signed = await sign(b.engine, message);
  t.equal(signed.keyVersion, latest.version);
  t.ok(ed25519.verify(signed.signature, message, latest.publicKey, { zip215: false }), 'the active version signs');
});
