import { execFile } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import type * as grpc from '@grpc/grpc-js';
import { status } from '@grpc/grpc-js';
import { hexlify, Interface, Transaction } from 'ethers';
import t from 'tap';
import { BOB, GWEI, transfer } from '../harness/evm.js';
import { tsx } from '../harness/process.js';
import { eventually, OPEN_POLICY, refused, startTestSigner, TEST_TOKEN } from '../harness/signer.js';
import { repoRoot, tempDir } from '../harness/token.js';
import { call, nowTimestamp } from '../src/client/client.js';
import { parseConfig } from '../src/infra/config/load.js';

const run = promisify(execFile);
const erc20 = new Interface(['function transfer(address to, uint256 amount)', 'function approve(address, uint256)']);

/** Normal traffic may only pay ALICE; retired versions may sweep on chain 1 under a 100 gwei cap. */
const SWEEP_POLICY = {
  keys: ['sweep-k'],
  traffic: 'hot',
  payloadKinds: ['evm', 'digest'],
  freshness: { maxSkewSeconds: 300 },
  evm: {
    chains: ['1'],
    maxValue: '1000000000000000000',
    destinations: { allow: ['0x000000000000000000000000000000000000a11c'] },
    tokens: { [TEST_TOKEN]: { maxAmount: '1000' } },
    maxFeePerGas: (1000n * GWEI).toString(),
    maxGas: '1000000',
  },
  sweep: { chains: ['1'], tokens: [TEST_TOKEN], maxFeePerGas: (100n * GWEI).toString(), maxGas: '200000' },
};
const { sweep: _dropped, ...NO_SWEEP_POLICY } = { ...SWEEP_POLICY, keys: ['nosweep-k'] };

const SCHED_POLICY = { ...SWEEP_POLICY, keys: ['sched-evm'] };
const ts = await startTestSigner({
  config: {
    policies: { open: OPEN_POLICY, sweepy: SWEEP_POLICY, unswept: NO_SWEEP_POLICY, schedy: SCHED_POLICY },
    // Every second, once the active version is 2 s old: the fire-time check is what stops it.
    rotation: { overlapSeconds: 3600, schedules: { 'sched-evm': { cron: '* * * * * *', minAgeSeconds: 2 } } },
  },
});
t.teardown(() => ts.close());
const engine = ts.as('payment-engine');
const admin = ts.as('security-admin');
const tmp = await tempDir('sweep-');
t.teardown(() => tmp.cleanup());

type Key = { keyId: string; version: number; state: string; evmAddress: string };
type Signed = { keyVersion: number; evm: { signedTx: Buffer; from: string } };

const signAs = (keyId: string, keyVersion: number, payload: object, requestId = randomUUID()) =>
  call<Signed>(engine.signer, 'Sign', { keyId, keyVersion, requestId, clientTime: nowTimestamp(), ...payload });
/** The sender ethers recovers from the signed transaction: who the chain would debit. */
const sender = (s: Signed) => Transaction.from(hexlify(s.evm.signedTx)).from;

await call(admin.keyAdmin, 'CreateKey', { keyId: 'sweep-k', algorithm: 'ECDSA_SECP256K1' });
const rotated = await call<{ active: Key; previous: Key }>(admin.keyAdmin, 'RotateKey', {
  keyId: 'sweep-k',
  overlapSeconds: 3600,
});
const old = rotated.previous;
const active = rotated.active;

t.test('a retired version sweeps its native balance to the active address', async (t) => {
  t.equal(old.state, 'VERIFY_ONLY');
  t.not(old.evmAddress, active.evmAddress, 'rotation moved the address');
  const res = await signAs('sweep-k', 1, transfer({ nonce: 0, to: active.evmAddress, value: 5n * 10n ** 18n }).payload);
  t.equal(res.keyVersion, 1, 'signed by the retired version');
  t.equal(sender(res), old.evmAddress, "ethers recovers the retired version's address as the sender");
  t.equal(Transaction.from(hexlify(res.evm.signedTx)).to, active.evmAddress, 'paid to the active address');
  t.equal(res.evm.from, old.evmAddress);
});

t.test('a retired version transfers an allowed ERC-20 to the active address', async (t) => {
  const data = erc20.encodeFunctionData('transfer', [active.evmAddress, 10n ** 24n]);
  const tx = transfer({ nonce: 1, to: TEST_TOKEN, value: 0n, data, gasLimit: 100_000n });
  const res = await signAs('sweep-k', 1, tx.payload);
  t.equal(sender(res), old.evmAddress, 'the retired version signed it');
  const parsed = Transaction.from(hexlify(res.evm.signedTx));
  t.equal(parsed.to?.toLowerCase(), TEST_TOKEN, 'to the token contract');
  t.same(erc20.decodeFunctionData('transfer', parsed.data).map(String), [active.evmAddress, String(10n ** 24n)]);
});

t.test('anything else from a retired version is refused', async (t) => {
  const toBob = await refused(
    t,
    signAs('sweep-k', 1, transfer({ nonce: 2, to: BOB, value: 1n }).payload),
    status.PERMISSION_DENIED,
    'SWEEP_NOT_ALLOWED',
  );
  t.equal(toBob.metadata.rule, 'sweep.destination', 'names the rule');
  const tokenToBob = transfer({
    nonce: 2,
    to: TEST_TOKEN,
    value: 0n,
    data: erc20.encodeFunctionData('transfer', [BOB, 5n]),
    gasLimit: 100_000n,
  });
  await refused(t, signAs('sweep-k', 1, tokenToBob.payload), status.PERMISSION_DENIED, 'SWEEP_NOT_ALLOWED');
  const approve = transfer({
    nonce: 2,
    to: TEST_TOKEN,
    value: 0n,
    data: erc20.encodeFunctionData('approve', [active.evmAddress, 5n]),
    gasLimit: 100_000n,
  });
  await refused(t, signAs('sweep-k', 1, approve.payload), status.PERMISSION_DENIED, 'SWEEP_NOT_ALLOWED');
  const otherToken = transfer({
    nonce: 2,
    to: '0x00000000000000000000000000000000000b0b0b',
    value: 0n,
    data: erc20.encodeFunctionData('transfer', [active.evmAddress, 5n]),
    gasLimit: 100_000n,
  });
  const unlisted = await refused(
    t,
    signAs('sweep-k', 1, otherToken.payload),
    status.PERMISSION_DENIED,
    'SWEEP_NOT_ALLOWED',
  );
  t.equal(unlisted.metadata.rule, 'sweep.tokens');
  const chain = await refused(
    t,
    signAs('sweep-k', 1, transfer({ nonce: 2, chainId: 10n, to: active.evmAddress }).payload),
    status.PERMISSION_DENIED,
    'CHAIN_NOT_ALLOWED',
  );
  t.equal(chain.metadata.rule, 'sweep.chains');
  await refused(
    t,
    signAs('sweep-k', 1, { digest: randomBytes(32) }),
    status.FAILED_PRECONDITION,
    'KEY_VERSION_RETIRED',
  );
});

t.test('the sweep fee caps apply', async (t) => {
  const pricey = transfer({ nonce: 2, to: active.evmAddress, maxFeePerGas: 101n * GWEI });
  const d = await refused(t, signAs('sweep-k', 1, pricey.payload), status.PERMISSION_DENIED, 'FEE_LIMIT');
  t.equal(d.metadata.rule, 'sweep.maxFeePerGas');
  const heavy = transfer({ nonce: 2, to: active.evmAddress, gasLimit: 200_001n });
  t.equal(
    (await refused(t, signAs('sweep-k', 1, heavy.payload), status.PERMISSION_DENIED, 'FEE_LIMIT')).metadata.rule,
    'sweep.maxGas',
  );
});

t.test('sweeps are replay-protected per address and chain like any EVM payload', async (t) => {
  const again = transfer({ nonce: 0, to: active.evmAddress, value: 4n * 10n ** 18n });
  await refused(t, signAs('sweep-k', 1, again.payload), status.ALREADY_EXISTS, 'NONCE_ALREADY_SIGNED');
  const first = transfer({ nonce: 3, to: active.evmAddress, value: 7n });
  const id = randomUUID();
  const a = await signAs('sweep-k', 1, first.payload, id);
  const b = await signAs('sweep-k', 1, first.payload, id);
  t.same(b.evm.signedTx, a.evm.signedTx, 'a retry replays the stored signature');
  // The active version's nonce 3 is another account's: not taken by the sweep.
  const own = await signAs('sweep-k', 0, transfer({ nonce: 3, value: 1n }).payload);
  t.equal(sender(own), active.evmAddress);
});

t.test('a policy without a sweep rule: retired versions sign nothing', async (t) => {
  await call(admin.keyAdmin, 'CreateKey', { keyId: 'nosweep-k', algorithm: 'ECDSA_SECP256K1' });
  const r = await call<{ active: Key }>(admin.keyAdmin, 'RotateKey', { keyId: 'nosweep-k', overlapSeconds: 60 });
  const d = await refused(
    t,
    signAs('nosweep-k', 1, transfer({ to: r.active.evmAddress }).payload),
    status.FAILED_PRECONDITION,
    'KEY_VERSION_RETIRED',
  );
  t.equal(d.metadata.rule, 'sweep');
});

t.test('sweep-plan lists what the retired version holds and transactions the signer signs', async (t) => {
  const other = '0x00000000000000000000000000000000000c0c0c';
  const file = `${tmp.path}/balances.json`;
  await writeFile(
    file,
    JSON.stringify([
      {
        keyId: 'sweep-k',
        version: 1,
        chainId: 1,
        native: String(10n ** 18n),
        tokens: { [TEST_TOKEN]: '42' },
        nonce: 4,
      },
      { keyId: 'sweep-k', version: 2, chainId: 1, native: '5', nonce: 0 },
      { keyId: 'sweep-k', version: 1, chainId: 1, native: '0', tokens: { [other]: '0' }, nonce: 9 },
    ]),
  );
  const tls = [
    '--address',
    ts.address,
    '--ca',
    ts.pki.files.caCert,
    '--cert',
    ts.pki.files.clients['security-admin']!.cert,
    '--key',
    ts.pki.files.clients['security-admin']!.key,
  ];
  const args = ['scripts/sweep-plan.ts', '--balances', file, '--max-fee-per-gas', String(50n * GWEI), ...tls];
  const out = await run(tsx, [...args, '--json'], { cwd: repoRoot, timeout: 60_000 });
  const plans = JSON.parse(out.stdout) as Array<{
    status: string;
    transactions: Array<{ kind: string; nonce: number; value: string; unsignedTx: string }>;
  }>;
  t.same(
    plans.map((p) => p.status),
    ['sweep', 'active', 'nothing'],
  );
  const txs = plans[0]!.transactions;
  t.same(
    txs.map((x) => `${x.kind}@${x.nonce}`),
    ['erc20@4', 'native@5'],
    'token first, then the native rest',
  );
  const reserve = (100_000n + 21_000n) * 50n * GWEI;
  t.equal(txs[1]!.value, String(10n ** 18n - reserve), 'the native rest after the maximum fees');
  for (const x of txs) {
    const res = await signAs('sweep-k', 1, {
      evmTransaction: { unsignedTx: Buffer.from(x.unsignedTx.slice(2), 'hex') },
    });
    t.equal(sender(res), old.evmAddress, `planned ${x.kind} sweep is signed by the retired version`);
  }
  const human = await run(tsx, args, { cwd: repoRoot, timeout: 60_000 });
  t.match(human.stdout, /sweep-k v1 VERIFY_ONLY chain 1 .*: sweep/);
  t.match(human.stdout, new RegExp(`to v2 ${active.evmAddress}`));
  t.match(human.stdout, /nonce 5\tnative value \d+\tgas 21000\t0x02/);
});

t.test('sweeps are audited as such; destroy needs confirm_swept, audited', async (t) => {
  await call(admin.keyAdmin, 'DisableKeyVersion', { keyId: 'sweep-k', version: 1 });
  const late = await signAs('sweep-k', 1, transfer({ nonce: 6, to: active.evmAddress }).payload);
  t.equal(sender(late), old.evmAddress, 'a disabled version still sweeps');
  const destroy = (confirmSwept?: boolean) =>
    call<Key>(admin.keyAdmin, 'DestroyKeyVersion', {
      keyId: 'sweep-k',
      version: 1,
      confirmKeyId: 'sweep-k',
      ...(confirmSwept === undefined ? {} : { confirmSwept }),
    });
  const d = await refused(t, destroy(), status.INVALID_ARGUMENT, 'CONFIRMATION_REQUIRED');
  t.equal(d.metadata.confirm, 'confirm_swept');
  await refused(t, destroy(false), status.INVALID_ARGUMENT, 'CONFIRMATION_REQUIRED');
  t.equal((await destroy(true)).state, 'DESTROYED');
  await refused(
    t,
    signAs('sweep-k', 1, transfer({ nonce: 7, to: active.evmAddress }).payload),
    status.NOT_FOUND,
    'KEY_VERSION_NOT_FOUND',
  );

  const stream = (
    ts.as('auditor').audit as unknown as { ExportLog(r: object): grpc.ClientReadableStream<{ json: string }> }
  ).ExportLog({});
  const entries: Array<Record<string, any>> = [];
  for await (const m of stream) {
    const r = JSON.parse(m.json);
    if (r.type === 'entry' && r.keyId === 'sweep-k') entries.push(r);
  }
  const sweeps = entries.filter((e) => e.kind === 'sign' && e.intent?.purpose === 'sweep');
  const allowed = sweeps.filter((e) => e.decision === 'allowed' && !e.reason);
  t.ok(allowed.length >= 5, `signed sweeps are audited as sweeps (${allowed.length})`);
  t.ok(
    allowed.every((e) => e.keyVersion === 1 && e.intent.activeAddress === active.evmAddress),
    'each names the retired version and the active address it pays',
  );
  t.ok(
    sweeps.some((e) => e.decision === 'refused' && e.reason === 'SWEEP_NOT_ALLOWED'),
    'refused sweeps too',
  );
  const destroyed = entries.filter((e) => e.kind === 'key.destroy');
  t.equal(destroyed.length, 1, 'one destroy');
  t.equal(destroyed[0]!.intent?.confirmedSwept, 'true', "the operator's sweep confirmation is on record");
});

t.test('config check: a rotation schedule on an EVM key needs a sweep rule', async (t) => {
  const file = `${tmp.path}/bad.json`;
  const raw = JSON.parse(await readFile(ts.configFile, 'utf8'));
  const schedules = { 'nosweep-k': { cron: '0 0 * * *' } };
  await writeFile(file, JSON.stringify({ ...raw, rotation: { schedules } }));
  const r = await run(tsx, ['src/main.ts', '--config', file], { cwd: repoRoot, timeout: 60_000 }).then(
    () => ({ code: 0, stderr: '' }),
    (e: { code: number; stderr: string }) => e,
  );
  t.equal(r.code, 2, 'exit 2');
  t.match(r.stderr, /rotation\.schedules\.nosweep-k: .*policies\.unswept\.sweep is required/, 'names the field');
  // A key whose policy has a sweep rule may be scheduled.
  t.doesNotThrow(() => parseConfig({ ...raw, rotation: { schedules: { 'sweep-k': { cron: '0 0 * * *' } } } }));
});

t.test('a scheduled rotation of an EVM key waits while its policy has no sweep rule', async (t) => {
  const versions = async () =>
    (await call<{ keys: Key[] }>(admin.signer, 'ListKeys', {})).keys.filter((k) => k.keyId === 'sched-evm').length;
  const { sweep: _s, ...without } = SCHED_POLICY;
  await call(admin.keyAdmin, 'SetPolicy', { name: 'schedy', document: JSON.stringify(without) });
  await call(admin.keyAdmin, 'CreateKey', { keyId: 'sched-evm', algorithm: 'ECDSA_SECP256K1' });
  await new Promise((r) => setTimeout(r, 4500));
  t.equal(await versions(), 1, 'not rotated: the old address could not be swept');
  await call(admin.keyAdmin, 'SetPolicy', { name: 'schedy', document: JSON.stringify(SCHED_POLICY) });
  t.ok(await eventually(async () => (await versions()) >= 2, 5000), 'rotated once the sweep rule is back');
});
