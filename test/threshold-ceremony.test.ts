import { randomBytes, randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import { ed25519 } from '@noble/curves/ed25519.js';
import { schnorr } from '@noble/curves/secp256k1.js';
import Database from 'better-sqlite3';
import t from 'tap';
import {
  COSIGNER_CLIENTS,
  type CosignerNode,
  cosignerClient,
  startCosigners,
  thresholdConfig,
} from '../harness/cosigners.js';
import { DEFAULT_CLIENTS, makePki } from '../harness/pki.js';
import { freePort, type SignerProcess, startSignerProcess } from '../harness/process.js';
import { eventually, refused, testConfig } from '../harness/signer.js';
import { makeToken, tempDir } from '../harness/token.js';
import { call, connect, nowTimestamp, type SignerClients } from '../src/client/client.js';

// A real signer CHILD process coordinating three real cosigner processes (own SoftHSM tokens,
// mTLS). A test-only hook (SIGNER_TEST_CEREMONY_PAUSE) holds the coordinator at an exact point
// of a ceremony; the test then kills it with SIGKILL and starts it again on the same database.
const tmp = await tempDir('ceremony-');
t.teardown(() => tmp.cleanup());
const [pki, token] = await Promise.all([
  makePki(tmp.path, [...DEFAULT_CLIENTS, ...COSIGNER_CLIENTS]),
  makeToken(tmp.path),
]);
const nodes: CosignerNode[] = await startCosigners(tmp.path, pki, 3);
t.teardown(() => Promise.all(nodes.map((n) => n.stop())));
const port = await freePort();
const configFile = join(tmp.path, 'signer.json');
await writeFile(
  configFile,
  JSON.stringify({
    ...testConfig(tmp.path, pki, token),
    listen: `127.0.0.1:${port}`,
    threshold: thresholdConfig(nodes, pki),
    log: { level: 'info' },
  }),
);
const signerDb = join(tmp.path, 'signer.db');

let proc: SignerProcess | undefined;
let clients: SignerClients[] = [];
t.teardown(async () => {
  clients.forEach((c) => c.close());
  await proc?.stop('SIGKILL');
});
/** Starts the signer (held at `pause` = "<point>:<op>" when given); returns admin and engine clients. */
async function start(pause?: string) {
  const hold = pause ? join(tmp.path, `hold-${randomUUID()}`) : '';
  if (pause) await mkdir(hold);
  const env = pause ? { SIGNER_TEST_CEREMONY_PAUSE: `${pause}:${hold}` } : undefined;
  const startedAt = Date.now();
  proc = await startSignerProcess(configFile, 90_000, env ? { env } : {});
  const readyAt = Date.now();
  const as = (cn: string) => {
    const c = connect(`127.0.0.1:${port}`, { ca: pki.caCert, cert: pki.clients[cn]!.cert, key: pki.clients[cn]!.key });
    clients.push(c);
    return c;
  };
  return { admin: as('security-admin'), engine: as('payment-engine'), hold, startedAt, readyAt };
}
async function kill() {
  await proc!.stop('SIGKILL');
  clients.forEach((c) => c.close());
  clients = [];
}

type Key = { keyId: string; version: number; publicKey: Buffer; threshold: { epoch: number } | null };

const sign = (engine: SignerClients, keyId: string, payload: object) =>
  call<{ signature: Buffer }>(
    engine.signer,
    'Sign',
    { keyId, requestId: randomUUID(), clientTime: nowTimestamp(), ...payload },
    30_000,
  );

function rows<T>(path: string, sql: string, ...args: unknown[]): T[] {
  const db = new Database(path, { readonly: true });
  try {
    return db.prepare(sql).all(...args) as T[];
  } finally {
    db.close();
  }
}
type ShareRow = { version: number; epoch: number; state: string; session_id: string; group_id: Buffer };
const sharesOf = (n: CosignerNode, keyId: string) =>
  rows<ShareRow>(n.dbPath, 'SELECT * FROM shares WHERE key_id = ? ORDER BY version, epoch', keyId);
const ceremonies = () =>
  rows<{ key_id: string; step: string; session_id: string }>(signerDb, 'SELECT * FROM ceremonies');
const audit = (kind: string, keyId: string) =>
  rows<{ intent: string }>(
    signerDb,
    'SELECT intent FROM audit WHERE kind = ? AND key_id = ? ORDER BY seq',
    kind,
    keyId,
  ).map((r) => JSON.parse(r.intent) as Record<string, string>);
const reached = (hold: string, point: string) => eventually(() => existsSync(join(hold, `reached-${point}`)), 120_000);

let s = await start('prepared:refresh');
const ed = await call<Key>(s.admin.keyAdmin, 'CreateKey', { keyId: 'crash-ed', algorithm: 'FROST_ED25519' }, 60_000);

t.test('SIGKILL between storing the agreed package and the commits: the restarted signer resumes', async (t) => {
  const message = randomBytes(40);
  t.ok(ed25519.verify((await sign(s.engine, 'crash-ed', { message })).signature, message, ed.publicKey));
  const refresh = call(s.admin.keyAdmin, 'RefreshShares', { keyId: 'crash-ed' }, 120_000).catch((e) => e);
  t.ok(await reached(s.hold, 'prepared'), 'the coordinator is held after storing the prepared step');
  t.same(
    ceremonies().map((c) => [c.key_id, c.step]),
    [['crash-ed', 'prepared']],
    'the signer stored the ceremony as prepared',
  );
  for (const n of nodes) {
    t.same(
      sharesOf(n, 'crash-ed').map((r) => [r.epoch, r.state]),
      [
        [1, 'active'],
        [2, 'pending'],
      ],
      `cosigner ${n.id}: the old share still signs, the new one is pending`,
    );
  }
  // A second ceremony of the key version cannot replace the pending one on a cosigner.
  const row = sharesOf(nodes[0]!, 'crash-ed')[0]!;
  const rogue = cosignerClient(pki, nodes[0]!.address);
  t.teardown(() => rogue.close());
  await refused(
    t,
    call(rogue, 'Round1', {
      sessionId: randomBytes(18).toString('base64url'),
      ceremony: 'REFRESH',
      keyId: 'crash-ed',
      keyVersion: 1,
      algorithm: 'frost-ed25519',
      minSigners: 2,
      participants: [1, 2, 3],
      epoch: 1,
      groupId: row.group_id,
    }),
    status.ABORTED,
    'KEY_ROTATION_CONFLICT',
  );
  t.equal(sharesOf(nodes[0]!, 'crash-ed').filter((r) => r.state === 'pending').length, 1, 'its pending share stays');

  await kill();
  t.ok((await refresh) instanceof Error, 'the interrupted RefreshShares call failed');
  s = await start();
  const message2 = randomBytes(40);
  const signed = await sign(s.engine, 'crash-ed', { message: message2 });
  const ms = Date.now() - s.readyAt;
  t.ok(ed25519.verify(signed.signature, message2, ed.publicKey), 'a FROST signature verifies under the same key');
  // The resume runs during start-up, before the signer serves; the process start itself
  // (tsx, SoftHSM, store) is reported, not bounded: it depends on the machine's load.
  const at = (msg: string) => {
    const line = proc!
      .logs()
      .split('\n')
      .find((l) => l.includes(`"msg":"${msg}"`));
    return line ? (JSON.parse(line) as { time: number }).time : Number.NaN;
  };
  const resume = at('signer started') - at('resuming a threshold ceremony');
  t.ok(ms < 10_000, `signed ${ms} ms after the restarted signer served (limit 10 s)`);
  t.ok(resume < 10_000, `the resume took ${resume} ms of a ${s.readyAt - s.startedAt} ms restart`);
  const k = await call<Key>(s.engine.signer, 'GetPublicKey', { keyId: 'crash-ed' });
  t.equal(k.threshold?.epoch, 2, 'the refreshed package is active');
  t.same(ceremonies(), [], 'the ceremony is closed');
  t.match(audit('key.refresh', 'crash-ed').at(-1), { resumed: 'true', epoch: '2' }, 'audited as resumed');
  for (const n of nodes) {
    t.same(
      sharesOf(n, 'crash-ed').map((r) => [r.epoch, r.state]),
      [[2, 'active']],
      `cosigner ${n.id}: only the new share`,
    );
  }
  const again = await call<Key>(s.admin.keyAdmin, 'RefreshShares', { keyId: 'crash-ed' }, 60_000);
  t.equal(again.threshold?.epoch, 3, 'a second refresh succeeds');
  const message3 = randomBytes(40);
  t.ok(ed25519.verify((await sign(s.engine, 'crash-ed', { message: message3 })).signature, message3, ed.publicKey));
});

t.test('SIGKILL after round three, before the prepared step: the restarted signer rolls back', async (t) => {
  await kill();
  s = await start('round3:refresh');
  const refresh = call(s.admin.keyAdmin, 'RefreshShares', { keyId: 'crash-ed' }, 120_000).catch((e) => e);
  t.ok(await reached(s.hold, 'round3'), 'held after round three');
  t.same(
    ceremonies().map((c) => c.step),
    ['started'],
  );
  for (const n of nodes) t.equal(sharesOf(n, 'crash-ed').filter((r) => r.state === 'pending').length, 1);
  await kill();
  await refresh;
  s = await start();
  t.same(ceremonies(), [], 'the ceremony is closed');
  t.match(audit('ceremony.rollback', 'crash-ed').at(-1), { step: 'started' }, 'audited');
  for (const n of nodes) {
    t.same(
      sharesOf(n, 'crash-ed').map((r) => [r.epoch, r.state]),
      [[3, 'active']],
      `cosigner ${n.id}: the pending share is discarded, the old epoch stays`,
    );
  }
  const k = await call<Key>(s.engine.signer, 'GetPublicKey', { keyId: 'crash-ed' });
  t.equal(k.threshold?.epoch, 3, 'the old epoch is still the active one');
  const message = randomBytes(40);
  t.ok(ed25519.verify((await sign(s.engine, 'crash-ed', { message })).signature, message, ed.publicKey), 'and signs');
  const again = await call<Key>(s.admin.keyAdmin, 'RefreshShares', { keyId: 'crash-ed' }, 60_000);
  t.equal(again.threshold?.epoch, 4, 'a refresh after the rollback succeeds');
});

t.test('SIGKILL in a DKG before the commits: the restarted signer activates the key', async (t) => {
  await kill();
  s = await start('prepared:create');
  const created = call(s.admin.keyAdmin, 'CreateKey', { keyId: 'crash-tr', algorithm: 'FROST_SECP256K1_TR' }, 120_000);
  const outcome = created.catch((e) => e);
  t.ok(await reached(s.hold, 'prepared'), 'held with the DKG prepared');
  const listed = await call<{ keys: Key[] }>(s.engine.signer, 'ListKeys', {});
  t.notOk(
    listed.keys.some((k) => k.keyId === 'crash-tr'),
    'the key is not served before every cosigner committed',
  );
  await kill();
  t.ok((await outcome) instanceof Error);
  s = await start();
  const k = await call<Key>(s.engine.signer, 'GetPublicKey', { keyId: 'crash-tr' });
  t.equal(k.threshold?.epoch, 1);
  const digest = randomBytes(32);
  t.ok(
    schnorr.verify((await sign(s.engine, 'crash-tr', { digest })).signature, digest, k.publicKey),
    'BIP340 verifies',
  );
  t.match(audit('key.create', 'crash-tr'), [{ resumed: 'true' }], 'created once, audited as resumed');
});

t.test('Finish with nothing pending is refused; destroy keeps to its session', async (t) => {
  const c = cosignerClient(pki, nodes[1]!.address);
  t.teardown(() => c.close());
  const unknown = randomBytes(18).toString('base64url');
  const d = await refused(
    t,
    call(c, 'Finish', { sessionId: unknown, commit: true }),
    status.FAILED_PRECONDITION,
    'CEREMONY_NOT_PENDING',
  );
  t.equal(d.metadata.cosigner, '2');
  await refused(
    t,
    call(c, 'Finish', { sessionId: unknown, commit: false }),
    status.FAILED_PRECONDITION,
    'CEREMONY_NOT_PENDING',
  );
  const committed = sharesOf(nodes[1]!, 'crash-ed')[0]!;
  const again = await refused(
    t,
    call(c, 'Finish', { sessionId: committed.session_id, commit: true }),
    status.FAILED_PRECONDITION,
    'CEREMONY_NOT_PENDING',
  );
  t.equal(again.metadata.state, 'committed', 'a committed session is not committed twice');
  const gone = await call<{ destroyed: number }>(c, 'DestroyShares', {
    keyId: 'crash-ed',
    keyVersion: 1,
    sessionId: unknown,
  });
  t.equal(gone.destroyed, 0, "another session's cleanup destroys nothing");
  t.same(
    sharesOf(nodes[1]!, 'crash-ed').map((r) => [r.epoch, r.state]),
    [[4, 'active']],
  );
  const message = randomBytes(40);
  t.ok(ed25519.verify((await sign(s.engine, 'crash-ed', { message })).signature, message, ed.publicKey), 'still signs');
});

t.test('a cosigner reporting another package after its commit: nothing is activated', async (t) => {
  await kill();
  s = await start('prepared:create');
  const created = call(s.admin.keyAdmin, 'CreateKey', { keyId: 'bad-pkg', algorithm: 'FROST_ED25519' }, 120_000);
  const outcome = refused(t, created, status.FAILED_PRECONDITION, 'CEREMONY_FAILED');
  t.ok(await reached(s.hold, 'prepared'), 'held with the DKG prepared');
  // The attacker edits cosigner 3's database: its pending share now claims another package.
  const db = new Database(nodes[2]!.dbPath);
  db.pragma('busy_timeout = 5000');
  const { public_package: text } = db
    .prepare("SELECT public_package FROM shares WHERE key_id = 'bad-pkg' AND state = 'pending'")
    .get() as { public_package: string };
  let flipped = false;
  const tampered = JSON.stringify(JSON.parse(text), (_k, v) => {
    if (flipped || typeof v !== 'string' || !/^[0-9a-f]{64}$/.test(v)) return v;
    flipped = true;
    return v.slice(0, -1) + (v.endsWith('0') ? '1' : '0');
  });
  t.ok(flipped && tampered !== text, 'a hex value of the package changed');
  db.prepare("UPDATE shares SET public_package = ? WHERE key_id = 'bad-pkg'").run(tampered);
  db.close();
  await writeFile(join(s.hold, 'release-prepared'), '');
  const d = await outcome;
  t.equal(d.metadata.cosigner, '3', 'the cosigner whose report differs is named');
  const listed = await call<{ keys: Key[] }>(s.engine.signer, 'ListKeys', {});
  t.notOk(
    listed.keys.some((k) => k.keyId === 'bad-pkg'),
    'the key version is not activated',
  );
  t.same(
    ceremonies()
      .filter((c) => c.key_id === 'bad-pkg')
      .map((c) => c.step),
    ['prepared'],
    'the ceremony stays stored for an operator',
  );
  t.same(audit('key.create', 'bad-pkg'), [], 'no key.create entry');
});
