import { randomUUID } from 'node:crypto';
import { status } from '@grpc/grpc-js';
import { hexlify, Interface, Transaction } from 'ethers';
import t from 'tap';
import { ALICE, transfer } from '../harness/evm.js';
import { OPEN_POLICY, refused, startTestSigner, TEST_TOKEN } from '../harness/signer.js';
import { call, nowTimestamp } from '../src/client/client.js';

// An attacker holding the payment engine's certificate drains a token with many transfers each
// under the per-call cap (evm.tokens.maxAmount). The window's token total stops it, with the
// exact status and reason, and so does a batch's token total.
const PER_CALL = 100n;
const WINDOW = 1000n;
const STEP = 30n; // 33 transfers fit in the window (990); the 34th would make 1020
const erc20 = new Interface(['function transfer(address to, uint256 amount)']);

const drain = {
  ...OPEN_POLICY,
  keys: ['drain-*'],
  evm: { ...OPEN_POLICY.evm, maxValue: '0', tokens: { [TEST_TOKEN]: { maxAmount: String(PER_CALL) } } },
  velocity: [{ scope: 'key', windowSeconds: 3600, tokens: { [TEST_TOKEN]: { maxAmount: String(WINDOW) } } }],
  batch: { maxItems: 100, maxTotalValue: '0', maxTokenTotals: { [TEST_TOKEN]: '250' } },
};
const ts = await startTestSigner({ config: { policies: { open: OPEN_POLICY, drain } } });
t.teardown(() => ts.close());
const engine = ts.as('payment-engine');
const admin = ts.as('security-admin');
const keyOf = async (keyId: string) =>
  call<{ evmAddress: string }>(admin.keyAdmin, 'CreateKey', { keyId, algorithm: 'ECDSA_SECP256K1' });

const tokenTx = (nonce: number, amount: bigint) =>
  transfer({
    nonce,
    to: TEST_TOKEN,
    value: 0n,
    gasLimit: 60_000n,
    data: erc20.encodeFunctionData('transfer', [ALICE, amount]),
  }).payload;

t.test('many small transfers: refused at the window total, every signed one checked by ethers', async (t) => {
  const key = await keyOf('drain-1');
  const sign = (nonce: number, amount: bigint) =>
    call<{ evm: { signedTx: Buffer } }>(engine.signer, 'Sign', {
      keyId: 'drain-1',
      requestId: `drain-${nonce}`,
      clientTime: nowTimestamp(),
      ...tokenTx(nonce, amount),
    });
  let moved = 0n;
  let nonce = 0;
  for (; moved + STEP <= WINDOW; nonce++) {
    const res = await sign(nonce, STEP);
    const tx = Transaction.from(hexlify(res.evm.signedTx));
    const [to, amount] = erc20.decodeFunctionData('transfer', tx.data);
    t.ok(
      tx.from === key.evmAddress && tx.to?.toLowerCase() === TEST_TOKEN && to === ALICE && amount === STEP,
      `transfer ${nonce} signed by the key, ${STEP} to ALICE`,
    );
    moved += STEP;
  }
  t.equal(nonce, 33, '33 transfers of 30 fit under 1000');
  const d = await refused(t, sign(nonce, STEP), status.RESOURCE_EXHAUSTED, 'VELOCITY_LIMIT');
  t.equal(d.metadata.rule, 'velocity[0].tokens', 'the per-token window rule');
  t.equal(d.metadata.limit, String(WINDOW));
  t.equal(d.metadata.token, TEST_TOKEN);
  // What is left of the window still signs; one unit more does not.
  t.ok((await sign(nonce, WINDOW - moved)).evm.signedTx.length > 0, 'the last 10 fit');
  await refused(t, sign(nonce + 1, 1n), status.RESOURCE_EXHAUSTED, 'VELOCITY_LIMIT');
  // The per-call cap still applies on its own.
  await refused(t, sign(nonce + 1, PER_CALL + 1n), status.PERMISSION_DENIED, 'VALUE_LIMIT');
});

t.test("a batch's token total is capped, and its items count toward the window", async (t) => {
  await keyOf('drain-2');
  const batch = (items: object[]) =>
    call<{ results: Array<{ signed?: { evm: { signedTx: Buffer } } }> }>(engine.signer, 'SignBatch', {
      batchId: randomUUID(),
      keyId: 'drain-2',
      clientTime: nowTimestamp(),
      items,
    });
  const over = Array.from({ length: 3 }, (_, i) => tokenTx(i, 90n)); // 270 > 250
  const d = await refused(t, batch(over), status.PERMISSION_DENIED, 'BATCH_LIMIT');
  t.equal(d.metadata.rule, 'batch.maxTokenTotals');
  let nonce = 0;
  for (let i = 0; i < 4; i++) {
    const res = await batch(Array.from({ length: 5 }, () => tokenTx(nonce++, 50n))); // 250 each
    t.equal(res.results.filter((r) => r.signed).length, 5, `batch ${i}: 5 items signed`);
  }
  // 1000 reserved in the window: a fifth batch of 10 is refused as a whole.
  const e = await refused(
    t,
    batch(Array.from({ length: 1 }, () => tokenTx(nonce, 10n))),
    status.RESOURCE_EXHAUSTED,
    'VELOCITY_LIMIT',
  );
  t.equal(e.metadata.index, '0');
});
