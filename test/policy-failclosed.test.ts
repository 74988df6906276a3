import { status } from '@grpc/grpc-js';
import Database from 'better-sqlite3';
import { Transaction } from 'ethers';
import t from 'tap';
import { transfer } from '../harness/evm.js';
import { captureLog } from '../harness/log-capture.js';
import { freePort } from '../harness/process.js';
import { eventually, OPEN_POLICY, refused, startTestSigner } from '../harness/signer.js';
import { call, nowTimestamp } from '../src/client/client.js';

// A stored policy that no longer compiles (written by a newer release, restored from an old
// backup, edited in the database) must refuse the keys it governs, not hand them to a broader
// pattern such as `*`, and must keep saying so until an operator fixes it.
const capture = captureLog('info');
const metricsPort = await freePort();
const HOT = { ...OPEN_POLICY, keys: ['hot-*'], evm: { ...OPEN_POLICY.evm, maxValue: '1000' } };
const ts = await startTestSigner({
  log: capture.log,
  config: {
    policies: { open: OPEN_POLICY, hot: HOT },
    refreshMs: 200,
    metrics: { listen: `127.0.0.1:${metricsPort}` },
  },
});
t.teardown(() => ts.close());
const engine = ts.as('payment-engine');
const admin = ts.as('security-admin');
for (const keyId of ['hot-1', 'cold-1'])
  await call(admin.keyAdmin, 'CreateKey', { keyId, algorithm: 'ECDSA_SECP256K1' });

let nonce = 0;
const sign = (keyId: string, value = 1n) =>
  call<{ evm: { signedTx: Buffer } }>(engine.signer, 'Sign', {
    keyId,
    requestId: `r-${keyId}-${nonce}`,
    clientTime: nowTimestamp(),
    ...transfer({ nonce: nonce++, value }).payload,
  });
const gauge = async () => {
  const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  return Number(/^signer_policies_invalid (\d+)/m.exec(text)?.[1] ?? Number.NaN);
};
const complaints = () => capture.lines.filter((l) => String(l.msg).includes('stored policy does not compile')).length;

/** Appends a policy version straight into the database, as a hand edit or another release would. */
function storeRaw(name: string, document: string) {
  const db = new Database(`${ts.dir}/signer.db`);
  try {
    const { v } = db.prepare('SELECT coalesce(max(version), 0) + 1 AS v FROM policies WHERE name = ?').get(name) as {
      v: number;
    };
    db.prepare('INSERT INTO policies (name, version, document, updated_at, updated_by) VALUES (?, ?, ?, ?, ?)').run(
      name,
      v,
      document,
      Date.now(),
      'db-edit',
    );
  } finally {
    db.close();
  }
}

t.test('a policy that no longer compiles refuses its keys; the others keep signing', async (t) => {
  const before = await sign('hot-1');
  t.ok(Transaction.from(`0x${before.evm.signedTx.toString('hex')}`).from, 'hot-1 signs under "hot"');
  await refused(t, sign('hot-1', 2000n), status.PERMISSION_DENIED, 'VALUE_LIMIT'); // "hot" governs it, not "open"
  t.equal(await gauge(), 0);

  // A field this release does not know: the document is refused by the schema (strict).
  storeRaw('hot', JSON.stringify({ ...HOT, maxValuePerDay: '5' }));
  t.ok(
    await eventually(async () => {
      try {
        await sign('hot-1');
        return false;
      } catch {
        return true;
      }
    }),
    'after a reload, hot-1 is refused',
  );
  const d = await refused(t, sign('hot-1'), status.FAILED_PRECONDITION, 'POLICY_UNAVAILABLE');
  t.equal(d.metadata.policy, 'hot', 'the refusal names the policy');
  // Before: the key fell to "open" (keys: *), which would have signed this 1 ETH transfer.
  await refused(t, sign('hot-1', 10n ** 18n), status.FAILED_PRECONDITION, 'POLICY_UNAVAILABLE');
  const cold = await sign('cold-1');
  t.ok(cold.evm.signedTx.length > 0, 'a key under "open" still signs');
  t.equal(await gauge(), 1, 'signer_policies_invalid counts it');
  const seen = complaints();
  await new Promise((r) => setTimeout(r, 700));
  t.ok(complaints() >= seen + 2, 'and the log complains at every reload');
});

t.test('a policy whose key patterns cannot be read refuses every key', async (t) => {
  storeRaw('mystery', '{"keys": [1], "traffic": ');
  t.ok(
    await eventually(async () => {
      try {
        await sign('cold-1');
        return false;
      } catch {
        return true;
      }
    }),
  );
  await refused(t, sign('cold-1'), status.FAILED_PRECONDITION, 'POLICY_UNAVAILABLE');
  t.equal(await gauge(), 2);
  // The operator's fix: a valid version through the API (validated, audited).
  const mystery = { ...OPEN_POLICY, keys: ['mystery-*'] };
  await call(admin.keyAdmin, 'SetPolicy', { name: 'mystery', document: JSON.stringify(mystery) });
  await call(admin.keyAdmin, 'SetPolicy', { name: 'hot', document: JSON.stringify(HOT) });
  t.equal(await gauge(), 0, 'fixed: nothing invalid');
  t.ok((await sign('cold-1')).evm.signedTx.length > 0, 'cold-1 signs again');
  t.ok((await sign('hot-1')).evm.signedTx.length > 0, 'hot-1 signs again, under "hot"');
  await refused(t, sign('hot-1', 2000n), status.PERMISSION_DENIED, 'VALUE_LIMIT');
});
