import { randomBytes, randomUUID } from 'node:crypto';
import { status } from '@grpc/grpc-js';
import { hexlify, Transaction } from 'ethers';
import t from 'tap';
import { ALICE, BOB, ETH, GWEI, transfer } from '../harness/evm.js';
import { OPEN_POLICY, refused, startTestSigner } from '../harness/signer.js';
import { call, nowTimestamp } from '../src/client/client.js';
import { decodeError } from '../src/client/errors.js';

const STRICT = {
  keys: ['strict-*'],
  traffic: 'hot',
  payloadKinds: ['evm'],
  freshness: { maxSkewSeconds: 30 },
  evm: {
    chains: ['1'],
    maxValue: ETH.toString(),
    destinations: { allow: [ALICE] },
    maxFeePerGas: (100n * GWEI).toString(),
    maxGas: '100000',
  },
  velocity: [{ scope: 'key', windowSeconds: 60, maxCount: 5 }],
};
const BUMP = { ...OPEN_POLICY, keys: ['bump-*'], evm: { ...OPEN_POLICY.evm, allowFeeBump: true } };

const ts = await startTestSigner({ config: { policies: { open: OPEN_POLICY, strict: STRICT, bump: BUMP } } });
t.teardown(() => ts.close());
const engine = ts.as('payment-engine');
const admin = ts.as('security-admin');
for (const [keyId, algorithm] of [
  ['hot-k1', 'ECDSA_SECP256K1'],
  ['strict-k1', 'ECDSA_SECP256K1'],
  ['bump-k1', 'ECDSA_SECP256K1'],
  ['vel-k1', 'ECDSA_SECP256K1'],
]) {
  await call(admin.keyAdmin, 'CreateKey', { keyId, algorithm });
}

type Res = { signature: Buffer; requestId: string; evm?: { signedTx: Buffer } | null };
const sign = (keyId: string, payload: object, over: object = {}) =>
  call<Res>(engine.signer, 'Sign', { keyId, requestId: randomUUID(), clientTime: nowTimestamp(), ...payload, ...over });
const hsmSigns = async () =>
  (await ts.signer.metrics.hsmSeconds.get()).values.find((v) => v.metricName?.endsWith('_count'))?.value ?? 0;

t.test('idempotency: a retry returns the stored result without signing again', async (t) => {
  const requestId = randomUUID();
  const digest = randomBytes(32);
  const first = await sign('hot-k1', { digest }, { requestId });
  const before = await hsmSigns();
  const again = await sign('hot-k1', { digest }, { requestId });
  t.same(again, first, 'the same response, byte for byte (ECDSA with random k would differ if signed again)');
  t.equal(await hsmSigns(), before, 'the HSM was not asked again');
  await refused(
    t,
    sign('hot-k1', { digest: randomBytes(32) }, { requestId }),
    status.ALREADY_EXISTS,
    'REQUEST_ID_REUSED',
  );
  await refused(
    t,
    sign('hot-k1', { digest }, { requestId, keyId: 'bump-k1' }),
    status.ALREADY_EXISTS,
    'REQUEST_ID_REUSED',
  );
});

t.test('concurrent duplicates: one signs, the other waits or replays, never a second signature', async (t) => {
  const requestId = randomUUID();
  const digest = randomBytes(32);
  const settled = await Promise.allSettled(Array.from({ length: 8 }, () => sign('hot-k1', { digest }, { requestId })));
  const ok = settled.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
  t.ok(ok.length >= 1, 'at least one succeeds');
  t.ok(
    ok.every((r) => r.signature.equals(ok[0]!.signature)),
    'every success carries the same signature',
  );
  for (const s of settled) {
    if (s.status === 'rejected') {
      const d = decodeError(s.reason);
      t.equal(d.code, status.ABORTED);
      t.equal(d.reason, 'REQUEST_IN_FLIGHT');
      t.ok(d.retryDelayMs! > 0, 'says when to retry');
    }
  }
  const after = await sign('hot-k1', { digest }, { requestId });
  t.ok(after.signature.equals(ok[0]!.signature), 'a later retry replays it');
});

t.test('one payload per account nonce', async (t) => {
  const a = transfer({ nonce: 5 });
  const first = await sign('hot-k1', a.payload);
  const same = await sign('hot-k1', a.payload);
  t.ok(
    same.signature.equals(first.signature),
    'the same transaction under a new request id returns the stored signature',
  );
  await refused(
    t,
    sign('hot-k1', transfer({ nonce: 5, value: 2n }).payload),
    status.ALREADY_EXISTS,
    'NONCE_ALREADY_SIGNED',
  );
  await refused(
    t,
    sign('hot-k1', transfer({ nonce: 5, maxFeePerGas: 60n * GWEI }).payload),
    status.ALREADY_EXISTS,
    'NONCE_ALREADY_SIGNED',
  );
  const other = await sign('hot-k1', transfer({ nonce: 5, chainId: 137n }).payload);
  t.ok(other.evm, 'the same nonce on another chain is another account nonce');
});

t.test('fee bump: allowed only where the policy says, keeping recipient, value and data', async (t) => {
  const base = transfer({ nonce: 9, maxFeePerGas: 30n * GWEI });
  await sign('bump-k1', base.payload);
  const bumped = transfer({ nonce: 9, maxFeePerGas: 45n * GWEI, maxPriorityFeePerGas: 2n * GWEI });
  const r = await sign('bump-k1', bumped.payload);
  t.equal(Transaction.from(hexlify(r.evm!.signedTx)).maxFeePerGas, 45n * GWEI, 'the replacement is signed');
  await refused(
    t,
    sign('bump-k1', transfer({ nonce: 9, maxFeePerGas: 40n * GWEI, maxPriorityFeePerGas: 2n * GWEI }).payload),
    status.ALREADY_EXISTS,
    'NONCE_ALREADY_SIGNED',
  );
  await refused(
    t,
    sign('bump-k1', transfer({ nonce: 9, maxFeePerGas: 90n * GWEI, to: BOB }).payload),
    status.ALREADY_EXISTS,
    'NONCE_ALREADY_SIGNED',
  );
  await refused(
    t,
    sign('bump-k1', transfer({ nonce: 9, maxFeePerGas: 90n * GWEI, value: 1n }).payload),
    status.ALREADY_EXISTS,
    'NONCE_ALREADY_SIGNED',
  );
  const again = await sign('bump-k1', bumped.payload);
  t.ok(again.signature.equals(r.signature), 'the replacement itself replays');
});

t.test('freshness: the client clock must be within the policy skew', async (t) => {
  const at = (offsetMs: number) => {
    const ms = Date.now() + offsetMs;
    return { seconds: String(Math.floor(ms / 1000)), nanos: 0 };
  };
  await refused(
    t,
    sign('strict-k1', transfer().payload, { clientTime: at(-120_000) }),
    status.FAILED_PRECONDITION,
    'STALE_REQUEST',
  );
  await refused(
    t,
    sign('strict-k1', transfer().payload, { clientTime: at(120_000) }),
    status.FAILED_PRECONDITION,
    'FUTURE_REQUEST',
  );
  const ok = await sign('strict-k1', transfer({ nonce: 100 }).payload, { clientTime: at(-20_000) });
  t.ok(ok.evm, 'inside the skew it signs');
});

t.test('policy refusals carry the rule', async (t) => {
  const cases: Array<[string, () => Promise<unknown>, status, string]> = [
    [
      'value over the limit',
      () => sign('strict-k1', transfer({ nonce: 1, value: ETH + 1n }).payload),
      status.PERMISSION_DENIED,
      'VALUE_LIMIT',
    ],
    [
      'destination not allowed',
      () => sign('strict-k1', transfer({ nonce: 1, to: BOB }).payload),
      status.PERMISSION_DENIED,
      'DESTINATION_NOT_ALLOWED',
    ],
    [
      'chain not allowed',
      () => sign('strict-k1', transfer({ nonce: 1, chainId: 137n }).payload),
      status.PERMISSION_DENIED,
      'CHAIN_NOT_ALLOWED',
    ],
    [
      'fee over the cap',
      () => sign('strict-k1', transfer({ nonce: 1, maxFeePerGas: 101n * GWEI }).payload),
      status.PERMISSION_DENIED,
      'FEE_LIMIT',
    ],
    [
      'gas over the cap',
      () => sign('strict-k1', transfer({ nonce: 1, gasLimit: 100001n }).payload),
      status.PERMISSION_DENIED,
      'FEE_LIMIT',
    ],
    [
      'raw digest not allowed',
      () => sign('strict-k1', { digest: randomBytes(32) }),
      status.PERMISSION_DENIED,
      'RAW_SIGNING_DISABLED',
    ],
    [
      'contract call not allowed',
      () => sign('strict-k1', transfer({ nonce: 1, data: '0xdeadbeef' }).payload),
      status.PERMISSION_DENIED,
      'CONTRACT_NOT_ALLOWED',
    ],
  ];
  for (const [name, p, code, reason] of cases) {
    await t.test(name, async (t) => {
      const d = await refused(t, p(), code, reason);
      t.equal(d.metadata.policy, 'strict', 'names the policy');
    });
  }
  const ok = await sign('strict-k1', transfer({ nonce: 1, value: ETH }).payload);
  t.ok(ok.evm, 'exactly at the limit it signs, and the refusals reserved nothing (nonce 1 is still free)');
});

t.test('velocity: the count limit per key is enforced in the store', async (t) => {
  // strict allows 5 per key per minute; earlier subtests used two (nonce 100 and nonce 1).
  for (let n = 200; n < 203; n++) await sign('strict-k1', transfer({ nonce: n }).payload);
  const d = await refused(
    t,
    sign('strict-k1', transfer({ nonce: 300 }).payload),
    status.RESOURCE_EXHAUSTED,
    'VELOCITY_LIMIT',
  );
  t.equal(d.metadata.scope, 'key');
});

t.test('keys without a policy are refused (deny by default)', async (t) => {
  await refused(
    t,
    call(admin.keyAdmin, 'SetPolicy', {
      name: 'open',
      document: JSON.stringify({ ...OPEN_POLICY, keys: ['hot-*', 'vel-*'] }),
    }).then(() => sign('unpoliced', { digest: randomBytes(32) })),
    status.NOT_FOUND,
    'KEY_NOT_FOUND',
  );
  await call(admin.keyAdmin, 'CreateKey', { keyId: 'unpoliced', algorithm: 'ECDSA_SECP256K1' });
  await refused(t, sign('unpoliced', { digest: randomBytes(32) }), status.PERMISSION_DENIED, 'NO_POLICY');
});

t.test('SetPolicy and GetPolicy: admin only, validated, versioned, effective at once', async (t) => {
  const before = await call<{ version: number; updatedBy: string }>(admin.keyAdmin, 'GetPolicy', { name: 'strict' });
  t.equal(before.updatedBy, 'config');
  const tighter = { ...STRICT, evm: { ...STRICT.evm, maxValue: '1000' } };
  const set = await call<{ version: number; updatedBy: string; document: string }>(admin.keyAdmin, 'SetPolicy', {
    name: 'strict',
    document: JSON.stringify(tighter),
  });
  t.equal(set.version, before.version + 1, 'a new version');
  t.equal(set.updatedBy, 'security-admin', 'records who changed it');
  await refused(
    t,
    sign('strict-k1', transfer({ nonce: 400, value: 1001n }).payload),
    status.PERMISSION_DENIED,
    'VALUE_LIMIT',
  );
  const byKey = await call<{ name: string; version: number }>(ts.as('auditor').keyAdmin, 'GetPolicy', {
    keyId: 'strict-k1',
  });
  t.same([byKey.name, byKey.version], ['strict', set.version], 'auditors read the policy governing a key');

  const bad = await refused(
    t,
    call(admin.keyAdmin, 'SetPolicy', {
      name: 'strict',
      document: JSON.stringify({ ...STRICT, evm: { ...STRICT.evm, maxValue: 'lots' } }),
    }),
    status.INVALID_ARGUMENT,
    'POLICY_INVALID',
  );
  t.match(bad.message, /evm\.maxValue/, 'names the field');
  await refused(
    t,
    call(admin.keyAdmin, 'SetPolicy', { name: 'strict', document: '{not json' }),
    status.INVALID_ARGUMENT,
    'POLICY_INVALID',
  );
  await refused(
    t,
    call(admin.keyAdmin, 'SetPolicy', { name: 'clash', document: JSON.stringify({ ...STRICT }) }),
    status.INVALID_ARGUMENT,
    'POLICY_INVALID',
  );
  t.equal(
    (await call<{ version: number }>(admin.keyAdmin, 'GetPolicy', { name: 'strict' })).version,
    set.version,
    'refused changes change nothing',
  );
  await refused(
    t,
    call(engine.keyAdmin, 'SetPolicy', { name: 'strict', document: JSON.stringify(STRICT) }),
    status.PERMISSION_DENIED,
    'NOT_AUTHORIZED',
  );
  await refused(
    t,
    call(ts.as('auditor').keyAdmin, 'SetPolicy', { name: 'strict', document: JSON.stringify(STRICT) }),
    status.PERMISSION_DENIED,
    'NOT_AUTHORIZED',
  );
  await refused(t, call(admin.keyAdmin, 'GetPolicy', { name: 'nope' }), status.NOT_FOUND, 'POLICY_NOT_FOUND');
});
