import { writeFile } from 'node:fs/promises';
import { status } from '@grpc/grpc-js';
import { Transaction } from 'ethers';
import t from 'tap';
import { transfer } from '../harness/evm.js';
import { makePki } from '../harness/pki.js';
import { startPostgres } from '../harness/postgres.js';
import { freePort, startSignerProcess } from '../harness/process.js';
import { OPEN_POLICY, refused, testConfig } from '../harness/signer.js';
import { makeToken, tempDir } from '../harness/token.js';
import { call, connect, nowTimestamp } from '../src/client/client.js';

// Two signer processes on one PostgreSQL, each reloading keys and policies only once a minute:
// what one replica changes must bind the other at its very next reservation, not a minute later.
const pg = await startPostgres();
t.teardown(() => pg.stop());
const tmp = await tempDir('replicas-policy-');
const procs: Array<{ stop(signal: NodeJS.Signals): Promise<unknown> }> = [];
// The processes first: their token and files must not be in use when the directory goes.
t.teardown(async () => {
  await Promise.all(procs.map((p) => p.stop('SIGKILL')));
  await tmp.cleanup();
});
const [pki, token] = await Promise.all([makePki(tmp.path), makeToken(tmp.path)]);

async function replica(name: string) {
  const port = await freePort();
  const file = `${tmp.path}/${name}.json`;
  await writeFile(
    file,
    JSON.stringify({
      ...testConfig(tmp.path, pki, token),
      listen: `127.0.0.1:${port}`,
      store: { postgres: { url: pg.url } },
      refreshMs: 60_000,
      log: { level: 'info' },
    }),
  );
  procs.push(await startSignerProcess(file));
  const as = (cn: string) => {
    const c = pki.clients[cn]!;
    const clients = connect(`127.0.0.1:${port}`, { ca: pki.caCert, cert: c.cert, key: c.key });
    t.teardown(() => clients.close());
    return clients;
  };
  return { engine: as('payment-engine'), admin: as('security-admin') };
}

const a = await replica('a');
for (const keyId of ['rep-1', 'pol-1'])
  await call(a.admin.keyAdmin, 'CreateKey', { keyId, algorithm: 'ECDSA_SECP256K1' });
const b = await replica('b'); // loads both keys and the config policies at start, then not for a minute

let n = 0;
const signOnB = (keyId: string, value = 10n ** 15n) => {
  const nonce = n++;
  return call<{ evm: { signedTx: Buffer } }>(b.engine.signer, 'Sign', {
    keyId,
    requestId: `b-${keyId}-${nonce}`,
    clientTime: nowTimestamp(),
    ...transfer({ nonce, value }).payload,
  });
};

type Key = { version: number; evmAddress: string };
const fromOf = (signed: { evm: { signedTx: Buffer } }) =>
  Transaction.from(`0x${signed.evm.signedTx.toString('hex')}`).from;
const keyOnA = (keyId: string) => call<Key & { versions: Key[] }>(a.engine.signer, 'GetPublicKey', { keyId });

t.test('a rotation on one replica: the other signs with the new version at once', async (t) => {
  const v1 = await keyOnA('rep-1');
  t.equal(fromOf(await signOnB('rep-1')), v1.evmAddress, 'B signs with v1 (checked by ethers)');
  await call(a.admin.keyAdmin, 'RotateKey', { keyId: 'rep-1' });
  const v2 = await keyOnA('rep-1');
  t.equal(v2.version, 2);
  t.not(v2.evmAddress, v1.evmAddress);
  t.equal(fromOf(await signOnB('rep-1')), v2.evmAddress, "B's next signature is v2's, not the retired v1's");
});

t.test('DisableKeyVersion on one replica stops signing on the other at once', async (t) => {
  await call(a.admin.keyAdmin, 'DisableKeyVersion', { keyId: 'rep-1', version: 2 });
  // What A itself answers now, B answers too, without waiting for its minute-long refresh.
  await refused(t, signOnB('rep-1'), status.NOT_FOUND, 'KEY_NOT_FOUND');
});

t.test('a policy set on one replica binds the other at its next request', async (t) => {
  t.ok((await signOnB('pol-1')).evm.signedTx.length > 0, 'pol-1 signs under "open" (keys: *)');
  const strict = { ...OPEN_POLICY, keys: ['pol-*'], evm: { ...OPEN_POLICY.evm, maxValue: '1000' } };
  await call(a.admin.keyAdmin, 'SetPolicy', { name: 'strict', document: JSON.stringify(strict) });
  const d = await refused(t, signOnB('pol-1'), status.PERMISSION_DENIED, 'VALUE_LIMIT');
  t.equal(d.metadata.policy, 'strict', 'B applied the policy A just stored');
  t.ok((await signOnB('pol-1', 1000n)).evm.signedTx.length > 0, 'within it, B signs');
});
