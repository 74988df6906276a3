import { randomBytes, randomUUID } from 'node:crypto';
import { status } from '@grpc/grpc-js';
import { secp256k1 } from '@noble/curves/secp256k1.js';
import pkcs11js from 'pkcs11js';
import t, { type Test } from 'tap';
import { eventually, healthOf, refusal, startTestSigner } from '../harness/signer.js';
import { call, nowTimestamp } from '../src/client/client.js';
import { decodeError } from '../src/client/errors.js';

// A real SoftHSM module behind a switch that makes it fail like a removed token or a dead
// session: the only way to pull a software token out from under a running signer.
const faults = { token: false, sessionOnce: false, corrupt: false };
const removed = (method: string) => new pkcs11js.Pkcs11Error('CKR_DEVICE_REMOVED', pkcs11js.CKR_DEVICE_REMOVED, method);
function withFaults(real: pkcs11js.PKCS11): pkcs11js.PKCS11 {
  return new Proxy(real, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver);
      if (typeof v !== 'function') return v;
      if (prop === 'C_SignAsync') {
        return (...args: unknown[]) => {
          if (faults.token) return Promise.reject(removed('C_Sign'));
          if (faults.corrupt) {
            // A glitching HSM: a well-formed but wrong signature.
            return (v.apply(target, args) as Promise<Buffer>).then((sig) => {
              const bad = Buffer.from(sig);
              bad[40] = bad[40]! ^ 0x01;
              return bad;
            });
          }
          if (faults.sessionOnce) {
            faults.sessionOnce = false;
            return Promise.reject(
              new pkcs11js.Pkcs11Error('CKR_SESSION_HANDLE_INVALID', pkcs11js.CKR_SESSION_HANDLE_INVALID, 'C_Sign'),
            );
          }
          return v.apply(target, args);
        };
      }
      if (prop === 'C_OpenSession' || prop === 'C_GetSlotList') {
        return (...args: unknown[]) => {
          if (faults.token)
            throw new pkcs11js.Pkcs11Error('CKR_TOKEN_NOT_PRESENT', pkcs11js.CKR_TOKEN_NOT_PRESENT, String(prop));
          return v.apply(target, args);
        };
      }
      return v.bind(target);
    },
  });
}

const ts = await startTestSigner({ wrapModule: withFaults });
t.teardown(() => ts.close());
const engine = ts.as('payment-engine');
const key = await call<{ publicKey: Buffer }>(ts.as('security-admin').keyAdmin, 'CreateKey', {
  keyId: 'hot',
  algorithm: 'ECDSA_SECP256K1',
});
const sign = (digest: Buffer) =>
  call<{ signature: Buffer }>(engine.signer, 'Sign', {
    keyId: 'hot',
    requestId: randomUUID(),
    clientTime: nowTimestamp(),
    digest,
  });

async function expectUnavailable(t: Test, p: Promise<unknown>) {
  const d = decodeError(await refusal(p));
  t.equal(d.code, status.UNAVAILABLE, 'UNAVAILABLE');
  t.equal(d.reason, 'HSM_UNAVAILABLE', 'reason HSM_UNAVAILABLE');
  t.match(d.message, /unavailable|failed/, 'says what happened');
  return d;
}

t.test('a faulty signature from the HSM is never returned', async (t) => {
  const admin = ts.as('security-admin').keyAdmin;
  await call(admin, 'CreateKey', { keyId: 'hot-r1', algorithm: 'ECDSA_P256' });
  await call(admin, 'CreateKey', { keyId: 'hot-ed', algorithm: 'ED25519' });
  const payloads: Array<[string, object]> = [
    ['hot', { digest: randomBytes(32) }],
    ['hot-r1', { digest: randomBytes(32) }],
    ['hot-ed', { message: randomBytes(40) }],
  ];
  faults.corrupt = true;
  try {
    for (const [keyId, payload] of payloads) {
      const d = decodeError(
        await refusal(
          call(engine.signer, 'Sign', { keyId, requestId: randomUUID(), clientTime: nowTimestamp(), ...payload }),
        ),
      );
      t.equal(d.code, status.INTERNAL, `${keyId}: INTERNAL`);
      t.equal(d.reason, 'SIGNATURE_SELF_CHECK_FAILED', `${keyId}: the self-check caught it`);
    }
  } finally {
    faults.corrupt = false;
  }
  for (const [keyId, payload] of payloads) {
    const ok = await call<{ signature: Buffer }>(engine.signer, 'Sign', {
      keyId,
      requestId: randomUUID(),
      clientTime: nowTimestamp(),
      ...payload,
    });
    t.equal(ok.signature.length, 64, `${keyId}: signs again once the HSM is healthy`);
  }
});

t.test('a dead session is replaced and the service stays up', async (t) => {
  faults.sessionOnce = true;
  const d = await expectUnavailable(t, sign(randomBytes(32)));
  t.equal(d.metadata.ckr, 'CKR_SESSION_HANDLE_INVALID');
  t.equal(await healthOf(ts), 'SERVING', 'health stays SERVING');
  t.equal(ts.signer.hsm.sessions.size, 4, 'the pool is back to full size');
  const digest = randomBytes(32);
  const ok = await sign(digest);
  t.ok(secp256k1.verify(ok.signature, digest, key.publicKey, { prehash: false }));
});

t.test('a removed token: UNAVAILABLE and NOT_SERVING until it is back', async (t) => {
  t.equal(await healthOf(ts), 'SERVING');
  faults.token = true;
  const d = await expectUnavailable(t, sign(randomBytes(32)));
  t.equal(d.metadata.ckr, 'CKR_DEVICE_REMOVED');
  t.ok(await eventually(async () => (await healthOf(ts)) === 'NOT_SERVING'), 'health reports NOT_SERVING');
  t.equal(await healthOf(ts, 'signer.v1.Signer'), 'NOT_SERVING');
  await expectUnavailable(t, sign(randomBytes(32)));
  // Several recovery attempts fail while the token is away.
  await new Promise((r) => setTimeout(r, 350));
  t.equal(await healthOf(ts), 'NOT_SERVING', 'still NOT_SERVING while the token is away');
  const metrics = await ts.signer.metrics.registry.getSingleMetricAsString('signer_hsm_errors_total');
  t.match(metrics, /ckr="CKR_DEVICE_REMOVED",class="token"} 1/, 'the HSM error is counted');

  faults.token = false;
  t.ok(await eventually(async () => (await healthOf(ts)) === 'SERVING'), 'health is SERVING again after recovery');
  const digest = randomBytes(32);
  const ok = await sign(digest);
  t.ok(secp256k1.verify(ok.signature, digest, key.publicKey, { prehash: false }), 'signs again after recovery');
  t.equal(ts.signer.hsm.sessions.size, 4, 'the pool was re-opened');
});
