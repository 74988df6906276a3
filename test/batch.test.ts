import { randomUUID } from 'node:crypto';
import { status } from '@grpc/grpc-js';
import { hexlify, Transaction } from 'ethers';
import t from 'tap';
import { ALICE, ETH, transfer } from '../harness/evm.js';
import { OPEN_POLICY, refused, startTestSigner } from '../harness/signer.js';
import { call, nowTimestamp } from '../src/client/client.js';

const PAYOUT = {
  keys: ['payout-*'],
  traffic: 'batch',
  payloadKinds: ['evm'],
  freshness: { maxSkewSeconds: 60 },
  evm: { ...OPEN_POLICY.evm, maxValue: ETH.toString() },
  batch: { maxItems: 1000, maxTotalValue: (1000n * ETH).toString(), contiguousNonces: true },
};
const ts = await startTestSigner({
  config: { policies: { open: { ...OPEN_POLICY, keys: ['hot-*'] }, payout: PAYOUT } },
});
t.teardown(() => ts.close());
const engine = ts.as('payment-engine');
const admin = ts.as('security-admin');
type Key = { evmAddress: string };
const payout = await call<Key>(admin.keyAdmin, 'CreateKey', { keyId: 'payout-1', algorithm: 'ECDSA_SECP256K1' });
await call<Key>(admin.keyAdmin, 'CreateKey', { keyId: 'hot-1', algorithm: 'ECDSA_SECP256K1' });

type Result = {
  signed?: { evm: { signedTx: Buffer; nonce: string } } | null;
  error?: { reason: string } | null;
  result: string;
};
const batch = (keyId: string, items: object[], batchId = randomUUID()) =>
  call<{ batchId: string; results: Result[] }>(
    engine.signer,
    'SignBatch',
    { batchId, keyId, clientTime: nowTimestamp(), items },
    120_000,
  );
const txs = (from: number, n: number, over: Parameters<typeof transfer>[0] = {}) =>
  Array.from({ length: n }, (_, i) => transfer({ nonce: from + i, value: BigInt(i + 1), ...over }).payload);

t.test('a batch of 1,000 EVM payouts: every result in order and recoverable by ethers', async (t) => {
  const items = txs(0, 1000);
  const batchId = randomUUID();
  const res = await batch('payout-1', items, batchId);
  t.equal(res.results.length, 1000);
  let good = 0;
  res.results.forEach((r, i) => {
    const tx = Transaction.from(hexlify(r.signed!.evm.signedTx));
    if (tx.from === payout.evmAddress && tx.nonce === i && tx.value === BigInt(i + 1) && tx.to === ALICE) good++;
  });
  t.equal(good, 1000, 'each item is signed by the key, in request order');
  const again = await batch('payout-1', items, batchId);
  t.same(again, res, 'retrying the batch id returns the same results');
  await refused(t, batch('payout-1', txs(1000, 3), batchId), status.ALREADY_EXISTS, 'BATCH_ID_REUSED');
});

t.test('nonces: unique, contiguous from the next expected nonce', async (t) => {
  await refused(
    t,
    batch('payout-1', [...txs(1000, 2), transfer({ nonce: 1001, value: 9n }).payload]),
    status.INVALID_ARGUMENT,
    'BATCH_NONCES_NOT_UNIQUE',
  );
  const gap = await refused(t, batch('payout-1', txs(1001, 2)), status.FAILED_PRECONDITION, 'NONCE_GAP');
  t.equal(gap.metadata.expected, '1000', 'names the next expected nonce');
  await refused(
    t,
    batch('payout-1', [...txs(1000, 2), transfer({ nonce: 1003 }).payload]),
    status.FAILED_PRECONDITION,
    'NONCE_GAP',
  );
  await refused(t, batch('payout-1', txs(999, 2)), status.ALREADY_EXISTS, 'NONCE_ALREADY_SIGNED');
  const ok = await batch('payout-1', txs(1000, 3));
  t.equal(ok.results.length, 3, 'the refused batches reserved nothing: 1000.. is still next');
});

t.test('batch policy: all or nothing', async (t) => {
  const items = [...txs(1003, 2), transfer({ nonce: 1005, value: ETH + 1n }).payload];
  const d = await refused(t, batch('payout-1', items), status.PERMISSION_DENIED, 'VALUE_LIMIT');
  t.equal(d.metadata.index, '2', 'names the failing item');
  const tooMany = await refused(t, batch('payout-1', txs(1003, 1001)), status.PERMISSION_DENIED, 'BATCH_LIMIT');
  t.match(tooMany.message, /1001/);
  const bad = await refused(
    t,
    batch('payout-1', [txs(1003, 1)[0]!, { evmTransaction: { unsignedTx: Buffer.from('02c3', 'hex') } }]),
    status.INVALID_ARGUMENT,
    'PAYLOAD_INVALID',
  );
  t.equal(bad.metadata.index, '1');
  const ok = await batch('payout-1', txs(1003, 2));
  t.equal(ok.results.length, 2, 'nothing of the refused batches was reserved');
});

t.test('traffic classes: a batch-only key refuses hot signs; a both-classes key batches', async (t) => {
  await refused(
    t,
    call(engine.signer, 'Sign', {
      keyId: 'payout-1',
      requestId: randomUUID(),
      clientTime: nowTimestamp(),
      ...transfer({ nonce: 5000 }).payload,
    }),
    status.PERMISSION_DENIED,
    'TRAFFIC_CLASS_NOT_ALLOWED',
  );
  const hot = await call<{ results: Result[] }>(engine.signer, 'SignBatch', {
    batchId: randomUUID(),
    keyId: 'hot-1',
    clientTime: nowTimestamp(),
    items: txs(0, 2),
  });
  t.equal(hot.results.length, 2, 'the open policy allows both classes');
});
