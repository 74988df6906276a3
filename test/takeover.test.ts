import { status } from '@grpc/grpc-js';
import { hexlify, Transaction } from 'ethers';
import t from 'tap';
import { ETH, transfer } from '../harness/evm.js';
import { newFaults, releaseHeld, withFaults } from '../harness/pkcs11-faults.js';
import { eventually, OPEN_POLICY, refused, startTestSigner } from '../harness/signer.js';
import { call, nowTimestamp } from '../src/client/client.js';

// A lease takeover, acted out the way a stalled HSM call makes it happen: the first attempt's
// C_Sign hangs past the lease, the client retries, the retry takes the request over. The first
// attempt's late result must not replace the signature the retry returned, and the retry must be
// checked against the policy of now, not the decision the first attempt was given.
const LEASE_MS = 800;
const faults = newFaults();
const HOT = { ...OPEN_POLICY, keys: ['to-*'], evm: { ...OPEN_POLICY.evm, maxValue: String(ETH) } };
const ts = await startTestSigner({
  wrapModule: (p11) => withFaults(p11, faults),
  hsm: { callTimeoutMs: 60_000 },
  config: { policies: { open: OPEN_POLICY, hot: HOT }, replay: { leaseMs: LEASE_MS } },
});
t.teardown(() => ts.close());
const engine = ts.as('payment-engine');
const admin = ts.as('security-admin');
const key = await call<{ evmAddress: string }>(admin.keyAdmin, 'CreateKey', {
  keyId: 'to-1',
  algorithm: 'ECDSA_SECP256K1',
});

const sign = (requestId: string, nonce: number, value: bigint) =>
  call<{ evm: { signedTx: Buffer } }>(
    engine.signer,
    'Sign',
    { keyId: 'to-1', requestId, clientTime: nowTimestamp(), ...transfer({ nonce, value }).payload },
    30_000,
  );
const holding = () => eventually(() => (faults.calls.C_SignAsync ?? 0) > signsBefore, 5000);
let signsBefore = 0;
const stall = async () => {
  signsBefore = faults.calls.C_SignAsync ?? 0;
  faults.hold = true;
};
const pastLease = () => new Promise((r) => setTimeout(r, LEASE_MS + 300));

t.test('the first attempt completing late gets the retry signature, never its own', async (t) => {
  await stall();
  const first = sign('late-1', 0, ETH / 10n);
  t.ok(await holding(), 'the first attempt is inside C_Sign');
  await pastLease();
  faults.hold = false;
  const retry = hexlify((await sign('late-1', 0, ETH / 10n)).evm.signedTx);
  t.equal(Transaction.from(retry).from, key.evmAddress, "the retry's signature verifies (ethers)");
  t.equal(releaseHeld(), 1, 'now the first attempt gets its signature from the HSM');
  const late = hexlify((await first).evm.signedTx);
  t.equal(late, retry, 'the first call answers with the signature the retry returned');
  const replay = hexlify((await sign('late-1', 0, ETH / 10n)).evm.signedTx);
  t.equal(replay, retry, 'and so does every replay');
});

t.test('a takeover is checked against the policy in force now', async (t) => {
  await stall();
  const first = sign('tight-1', 1, ETH / 2n);
  t.ok(await holding());
  // Decided under "hot" (1 ETH per transaction); the policy is tightened while it hangs.
  await call(admin.keyAdmin, 'SetPolicy', {
    name: 'hot',
    document: JSON.stringify({ ...HOT, evm: { ...HOT.evm, maxValue: '1000' } }),
  });
  await pastLease();
  faults.hold = false;
  const d = await refused(t, sign('tight-1', 1, ETH / 2n), status.PERMISSION_DENIED, 'VALUE_LIMIT');
  t.equal(d.metadata.policy, 'hot');
  // The refused retry took nothing over: the first attempt, decided before the change, finishes.
  releaseHeld();
  const signed = hexlify((await first).evm.signedTx);
  t.equal(Transaction.from(signed).from, key.evmAddress);
  t.equal(hexlify((await sign('tight-1', 1, ETH / 2n)).evm.signedTx), signed, 'replays return it');
});
