import { randomBytes, randomUUID } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { status } from '@grpc/grpc-js';
import { ed25519 } from '@noble/curves/ed25519.js';
import { p256 } from '@noble/curves/nist.js';
import { secp256k1 } from '@noble/curves/secp256k1.js';
import { computeAddress, getBytes, hexlify, Transaction, Wallet } from 'ethers';
import pkcs11js from 'pkcs11js';
import t from 'tap';
import { healthOf, refusal, refused, startTestSigner, TEST_TOKEN } from '../harness/signer.js';
import { call, connect, nowTimestamp } from '../src/client/client.js';

const ts = await startTestSigner();
t.teardown(() => ts.close());
const engine = ts.as('payment-engine');
const admin = ts.as('security-admin');

type Key = { keyId: string; version: number; algorithm: string; state: string; publicKey: Buffer; evmAddress: string };
type SignRes = {
  signature: Buffer;
  recoveryId?: number | null;
  keyVersion: number;
  algorithm: string;
  evm?: Record<string, any> | null;
};

const create = (keyId: string, algorithm: string) => call<Key>(admin.keyAdmin, 'CreateKey', { keyId, algorithm });
const sign = (keyId: string, payload: object, extra: object = {}, client = engine) =>
  call<SignRes>(client.signer, 'Sign', {
    keyId,
    requestId: randomUUID(),
    clientTime: nowTimestamp(),
    ...payload,
    ...extra,
  });

const k1 = await create('hot-k1', 'ECDSA_SECP256K1');
const r1 = await create('hot-r1', 'ECDSA_P256');
const ed = await create('hot-ed', 'ED25519');

/** Asserts the exact status and ErrorInfo reason of a refusal. */
t.test('keys are created in the HSM and listed with their public keys', async (t) => {
  t.equal(k1.publicKey.length, 65);
  t.equal(r1.publicKey.length, 65);
  t.equal(ed.publicKey.length, 32);
  t.equal(k1.evmAddress, computeAddress(hexlify(k1.publicKey)), 'EVM address matches ethers');
  t.equal(ed.evmAddress, '');
  const { keys } = await call<{ keys: Key[] }>(admin.signer, 'ListKeys', {});
  t.same(keys.map((k) => k.keyId).sort(), ['hot-ed', 'hot-k1', 'hot-r1']);
  t.ok(keys.every((k) => k.state === 'ACTIVE' && k.version === 1));
  const got = await call<Key>(engine.signer, 'GetPublicKey', { keyId: 'hot-k1' });
  t.same(got.publicKey, k1.publicKey);
  await refused(t, create('hot-k1', 'ED25519'), status.ALREADY_EXISTS, 'KEY_EXISTS');
  await refused(t, create('Bad Id', 'ED25519'), status.INVALID_ARGUMENT, 'REQUEST_INVALID');
  await refused(t, create('no-alg', 'ALGORITHM_UNSPECIFIED'), status.INVALID_ARGUMENT, 'REQUEST_INVALID');
});

t.test('each algorithm signs and an independent verifier accepts the signature', async (t) => {
  for (let i = 0; i < 20; i++) {
    const digest = randomBytes(32);
    const a = await sign('hot-k1', { digest });
    t.equal(a.signature.length, 64);
    t.ok(
      secp256k1.verify(a.signature, digest, k1.publicKey, { prehash: false, lowS: true }),
      'secp256k1 verifies, low-s',
    );
    const recovered = secp256k1.Signature.fromBytes(a.signature, 'compact')
      .addRecoveryBit(a.recoveryId!)
      .recoverPublicKey(digest);
    t.same(Buffer.from(recovered.toBytes(false)), k1.publicKey, 'recovery id recovers the key');

    const b = await sign('hot-r1', { digest });
    t.ok(p256.verify(b.signature, digest, r1.publicKey, { prehash: false, lowS: true }), 'P-256 verifies, low-s');
    t.equal(b.recoveryId ?? undefined, undefined, 'no recovery id for P-256');

    const message = randomBytes(1 + i * 97);
    const c = await sign('hot-ed', { message });
    t.ok(ed25519.verify(c.signature, message, ed.publicKey), 'Ed25519 verifies');
  }
  const max = await sign('hot-ed', { message: randomBytes(65536) });
  t.equal(max.signature.length, 64, 'a 64 KiB message is accepted');
});

t.test('EVM transactions round-trip through ethers', async (t) => {
  const to = Wallet.createRandom().address;
  const txs = [
    Transaction.from({
      type: 2,
      chainId: 1,
      nonce: 7,
      to,
      value: 10n ** 18n,
      gasLimit: 21000,
      maxFeePerGas: 30_000_000_000n,
      maxPriorityFeePerGas: 1_000_000_000n,
    }),
    Transaction.from({
      type: 2,
      chainId: 8453,
      nonce: 0,
      to: TEST_TOKEN,
      value: 0,
      data: `0xa9059cbb${'00'.repeat(64)}`,
      gasLimit: 60000,
      maxFeePerGas: 1n,
      maxPriorityFeePerGas: 1n,
    }),
    Transaction.from({ type: 0, chainId: 137, nonce: 42, to, value: 5n, gasLimit: 21000, gasPrice: 50_000_000_000n }),
  ];
  for (const tx of txs) {
    const res = await sign('hot-k1', { evmTransaction: { unsignedTx: Buffer.from(getBytes(tx.unsignedSerialized)) } });
    const evm = res.evm!;
    const parsed = Transaction.from(hexlify(evm.signedTx));
    t.equal(parsed.from, k1.evmAddress, `ethers recovers the key's address (type ${tx.type})`);
    t.equal(evm.from, k1.evmAddress);
    t.equal(parsed.hash, hexlify(evm.txHash), 'tx hash matches');
    t.equal(parsed.unsignedSerialized, tx.unsignedSerialized, 'signed exactly what was sent');
    t.equal(BigInt(evm.chainId), tx.chainId);
    t.equal(BigInt(evm.nonce), BigInt(tx.nonce));
    t.equal(hexlify(evm.r), parsed.signature!.r);
    t.equal(hexlify(evm.s), parsed.signature!.s);
    t.equal(
      BigInt(evm.v),
      parsed.signature!.v === 27 || parsed.signature!.v === 28
        ? BigInt(parsed.signature!.networkV ?? parsed.signature!.yParity)
        : BigInt(parsed.signature!.v),
    );
  }
});

t.test('the private key cannot be read or made extractable', async (t) => {
  const k = ts.signer.keys.get('hot-k1');
  await ts.signer.hsm.manage((session) => {
    const p11 = ts.signer.hsm.p11;
    const [priv] = ts.signer.hsm.find(session, [
      { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PRIVATE_KEY },
      { type: pkcs11js.CKA_ID, value: Buffer.from(k.ckaId) },
    ]);
    t.ok(priv, 'private key object exists');
    const attrs = p11.C_GetAttributeValue(session, priv!, [
      { type: pkcs11js.CKA_SENSITIVE },
      { type: pkcs11js.CKA_EXTRACTABLE },
      { type: pkcs11js.CKA_TOKEN },
    ]);
    t.same(
      attrs.map((a) => (a.value as Buffer)[0]),
      [1, 0, 1],
      'sensitive, not extractable, token object',
    );
    t.throws(
      () => p11.C_GetAttributeValue(session, priv!, [{ type: pkcs11js.CKA_VALUE }]),
      { code: pkcs11js.CKR_ATTRIBUTE_SENSITIVE },
      'CKA_VALUE is unreadable',
    );
    t.throws(
      () => p11.C_SetAttributeValue(session, priv!, [{ type: pkcs11js.CKA_EXTRACTABLE, value: true }]),
      'CKA_EXTRACTABLE cannot be turned on',
    );
    t.throws(
      () => p11.C_SetAttributeValue(session, priv!, [{ type: pkcs11js.CKA_SENSITIVE, value: false }]),
      'CKA_SENSITIVE cannot be turned off',
    );
  });
});

t.test('malformed requests are refused with their reason and the server keeps serving', async (t) => {
  const cases: Array<[string, () => Promise<unknown>, status, string]> = [
    [
      'digest of 31 bytes',
      () => sign('hot-k1', { digest: randomBytes(31) }),
      status.INVALID_ARGUMENT,
      'PAYLOAD_INVALID',
    ],
    [
      'digest of 33 bytes',
      () => sign('hot-r1', { digest: randomBytes(33) }),
      status.INVALID_ARGUMENT,
      'PAYLOAD_INVALID',
    ],
    [
      'garbage RLP',
      () => sign('hot-k1', { evmTransaction: { unsignedTx: randomBytes(40) } }),
      status.INVALID_ARGUMENT,
      'PAYLOAD_INVALID',
    ],
    [
      'empty RLP',
      () => sign('hot-k1', { evmTransaction: { unsignedTx: Buffer.alloc(0) } }),
      status.INVALID_ARGUMENT,
      'PAYLOAD_INVALID',
    ],
    [
      'oversized message',
      () => sign('hot-ed', { message: randomBytes(65537) }),
      status.INVALID_ARGUMENT,
      'PAYLOAD_INVALID',
    ],
    ['empty message', () => sign('hot-ed', { message: Buffer.alloc(0) }), status.INVALID_ARGUMENT, 'PAYLOAD_INVALID'],
    ['no payload', () => sign('hot-k1', {}), status.INVALID_ARGUMENT, 'PAYLOAD_INVALID'],
    [
      'message to an ECDSA key',
      () => sign('hot-k1', { message: randomBytes(10) }),
      status.INVALID_ARGUMENT,
      'PAYLOAD_KIND_UNSUPPORTED',
    ],
    [
      'digest to an Ed25519 key',
      () => sign('hot-ed', { digest: randomBytes(32) }),
      status.INVALID_ARGUMENT,
      'PAYLOAD_KIND_UNSUPPORTED',
    ],
    [
      'EVM tx to a P-256 key',
      () => sign('hot-r1', { evmTransaction: { unsignedTx: Buffer.from('02c0', 'hex') } }),
      status.INVALID_ARGUMENT,
      'PAYLOAD_KIND_UNSUPPORTED',
    ],
    ['unknown key', () => sign('no-such-key', { digest: randomBytes(32) }), status.NOT_FOUND, 'KEY_NOT_FOUND'],
    [
      'unknown key version',
      () => sign('hot-k1', { digest: randomBytes(32) }, { keyVersion: 9 }),
      status.NOT_FOUND,
      'KEY_VERSION_NOT_FOUND',
    ],
    [
      'empty request id',
      () => sign('hot-k1', { digest: randomBytes(32) }, { requestId: '' }),
      status.INVALID_ARGUMENT,
      'REQUEST_INVALID',
    ],
    [
      'request id with spaces',
      () => sign('hot-k1', { digest: randomBytes(32) }, { requestId: 'a b' }),
      status.INVALID_ARGUMENT,
      'REQUEST_INVALID',
    ],
    [
      'no client time',
      () => sign('hot-k1', { digest: randomBytes(32) }, { clientTime: null }),
      status.INVALID_ARGUMENT,
      'REQUEST_INVALID',
    ],
    ['empty key id', () => sign('', { digest: randomBytes(32) }), status.INVALID_ARGUMENT, 'REQUEST_INVALID'],
  ];
  for (const [name, p, code, reason] of cases) await t.test(name, (t) => refused(t, p(), code, reason));
  const ok = await sign('hot-k1', { digest: randomBytes(32) });
  t.equal(ok.signature.length, 64, 'still serving after the refusals');
});

t.test('500 concurrent signs all verify', async (t) => {
  const digests = Array.from({ length: 500 }, () => randomBytes(32));
  const results = await Promise.all(digests.map((digest) => sign('hot-k1', { digest })));
  const bad = results.filter((r, i) => !secp256k1.verify(r.signature, digests[i]!, k1.publicKey, { prehash: false }));
  t.equal(bad.length, 0, 'every signature verifies');
});

t.test('mutual TLS and roles', async (t) => {
  const digest = randomBytes(32);
  await refused(t, sign('hot-k1', { digest }, {}, ts.as('no-role-client')), status.PERMISSION_DENIED, 'NOT_AUTHORIZED');
  await refused(t, sign('hot-k1', { digest }, {}, admin), status.PERMISSION_DENIED, 'NOT_AUTHORIZED');
  await refused(t, sign('hot-k1', { digest }, {}, ts.as('other-engine')), status.PERMISSION_DENIED, 'NOT_AUTHORIZED');
  await refused(
    t,
    call(engine.keyAdmin, 'CreateKey', { keyId: 'x1', algorithm: 'ED25519' }),
    status.PERMISSION_DENIED,
    'NOT_AUTHORIZED',
  );
  await refused(
    t,
    call(ts.as('auditor').keyAdmin, 'CreateKey', { keyId: 'x1', algorithm: 'ED25519' }),
    status.PERMISSION_DENIED,
    'NOT_AUTHORIZED',
  );
  await refused(
    t,
    call(ts.as('other-engine').signer, 'GetPublicKey', { keyId: 'hot-k1' }),
    status.PERMISSION_DENIED,
    'NOT_AUTHORIZED',
  );

  // other-engine may sign only with shared-* keys.
  await create('shared-ed', 'ED25519');
  const shared = await sign('shared-ed', { message: Buffer.from('hi') }, {}, ts.as('other-engine'));
  t.equal(shared.signature.length, 64);
  const listed = await call<{ keys: Key[] }>(ts.as('other-engine').signer, 'ListKeys', {});
  t.same(
    listed.keys.map((k) => k.keyId),
    ['shared-ed'],
    'a signer lists only the keys it may use',
  );

  const noCert = new (await import('../src/infra/grpc/proto.js')).signerV1.Signer(
    ts.address,
    grpc.credentials.createSsl(ts.pki.caCert),
    {
      'grpc.ssl_target_name_override': 'localhost',
    },
  );
  const e1 = await refusal(call(noCert, 'ListKeys', {}, 5000));
  t.equal(e1.code, status.UNAVAILABLE, 'no client certificate: the TLS handshake fails');
  noCert.close();

  const foreign = connect(ts.address, {
    ca: ts.pki.caCert,
    cert: ts.pki.foreign.client.cert,
    key: ts.pki.foreign.client.key,
  });
  const e2 = await refusal(
    call(foreign.signer, 'Sign', { keyId: 'hot-k1', requestId: 'r', clientTime: nowTimestamp(), digest }, 5000),
  );
  t.equal(e2.code, status.UNAVAILABLE, 'certificate from another CA: the TLS handshake fails');
  foreign.close();

  const ok = await sign('hot-k1', { digest });
  t.equal(ok.signature.length, 64, 'the server still serves authorised clients');
});

t.test('health checking is served and reports SERVING', async (t) => {
  for (const service of ['', 'signer.v1.Signer', 'signer.v1.KeyAdmin'])
    t.equal(await healthOf(ts, service), 'SERVING', `health of "${service}"`);
});
