import { randomBytes, randomUUID } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { secp256k1 } from '@noble/curves/secp256k1.js';
import pkcs11js from 'pkcs11js';
import t from 'tap';
import { newFaults, releaseHeld, withFaults } from '../harness/pkcs11-faults.js';
import { eventually, healthOf, refusal, refused, startTestSigner } from '../harness/signer.js';
import { call, nowTimestamp } from '../src/client/client.js';
import { decodeError } from '../src/client/errors.js';
import { SignerError } from '../src/core/errors.js';
import { SessionPool } from '../src/infra/hsm/pool.js';
import { ensureSealingKey, seal } from '../src/infra/hsm/seal.js';

const { status } = grpc;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

t.test('session pool: a wait with a limit ends with its error and leaves the queue', async (t) => {
  const pool = new SessionPool<string>(undefined, (ms) => new Error(`no session in ${ms} ms`));
  pool.add('s1');
  const held = await pool.acquire('hot');
  const started = Date.now();
  await t.rejects(pool.acquire('hot', 50), /no session in 50 ms/);
  t.ok(Date.now() - started >= 45, 'waited its limit');
  await t.rejects(pool.acquire('batch', -5), /no session in 0 ms/, 'no wait left: refused at once');
  const patient = pool.acquire('batch', 5000);
  pool.release(held);
  t.equal(await patient, 's1', 'a waiter within its limit is served');
  pool.release('s1');
  t.equal(pool.inUse, 0, 'the timed-out waiters took no session');
  t.equal(await pool.acquire('hot', 10), 's1', 'a free session needs no wait');
});

// A real signer on SoftHSM whose C_SignAsync can be made slow or hang (harness/pkcs11-faults.ts).
const faults = newFaults();
const WAIT_MS = 1500;
const CALL_MS = 1000;
/** Long enough for two call deadlines and a full session wait to pass before it returns. */
const SLOW_MS = 2 * CALL_MS + WAIT_MS + 1500;
const ts = await startTestSigner({
  wrapModule: (p) => withFaults(p, faults),
  hsm: {
    sessions: 2,
    sessionWaitMs: WAIT_MS,
    batchSessionWaitMs: 300,
    callTimeoutMs: CALL_MS,
    recoveryIntervalMs: 100,
  },
  config: { metrics: { listen: '127.0.0.1:0' } },
});
t.teardown(async () => {
  faults.hold = false;
  releaseHeld();
  await ts.close();
});
const hsm = ts.signer.hsm;
const engine = ts.as('payment-engine');
const admin = ts.as('security-admin').keyAdmin;
const key = await call<{ publicKey: Buffer }>(admin, 'CreateKey', { keyId: 'hot', algorithm: 'ECDSA_SECP256K1' });
const sign = (digest = randomBytes(32), timeoutMs = 10_000) => {
  const request = { keyId: 'hot', requestId: randomUUID(), clientTime: nowTimestamp(), digest };
  return call<{ signature: Buffer }>(engine.signer, 'Sign', request, timeoutMs);
};
const verifies = (sig: Uint8Array, digest: Uint8Array) =>
  secp256k1.verify(sig, digest, key.publicKey, { prehash: false });
const metric = (name: string) => ts.signer.metrics.registry.getSingleMetricAsString(name);
const ckaId = ts.signer.keys.get('hot').ckaId;
const mechanism = { mechanism: pkcs11js.CKM_ECDSA };

t.test('a slow or hung HSM call: UNAVAILABLE with RetryInfo, its session held until it returns', async (t) => {
  faults.signDelayMs = SLOW_MS;
  let started = Date.now();
  const slow = await refused(t, sign(), status.UNAVAILABLE, 'HSM_UNAVAILABLE');
  const took = Date.now() - started;
  faults.signDelayMs = 0;
  const inTime = took >= CALL_MS - 20 && took < SLOW_MS - 1000;
  t.ok(inTime, `refused at the call deadline (${took} ms), not when the call returned`);
  t.equal(slow.metadata.timeout, 'call');
  t.equal(slow.retryDelayMs, 100, 'RetryInfo: retry after a recovery interval');
  t.match(slow.message, /did not answer within 1000 ms/);
  t.same(hsm.sessions, { size: 2, inUse: 1, suspect: 1 }, 'the slow call keeps its session');

  faults.hold = true;
  await refused(t, sign(), status.UNAVAILABLE, 'HSM_UNAVAILABLE');
  faults.hold = false;
  t.same(hsm.sessions, { size: 2, inUse: 2, suspect: 2 }, 'the hung call keeps the other one');

  // Both sessions are suspect: a new request is not given either, and waits its limit.
  started = Date.now();
  const waited = await refused(t, sign(), status.UNAVAILABLE, 'HSM_UNAVAILABLE');
  t.ok(Date.now() - started >= WAIT_MS - 20, 'waited the session deadline');
  t.equal(waited.metadata.timeout, 'session_wait');
  t.equal(waited.retryDelayMs, 250, 'RetryInfo: a short back-off');
  t.match(waited.message, /no HSM session became free within 1500 ms/);
  t.equal(await healthOf(ts), 'SERVING', 'a slow HSM is not a lost token');

  // The slow call returns (SLOW_MS after it started): its session is back and serves requests.
  t.ok(await eventually(() => hsm.sessions.suspect === 1, 10_000), 'the slow call returned');
  const digest = randomBytes(32);
  t.ok(verifies((await sign(digest)).signature, digest), 'signs on the returned session');
  t.equal(releaseHeld(), 1, 'the hung call is let through');
  t.ok(await eventually(() => hsm.sessions.suspect === 0 && hsm.sessions.inUse === 0), 'both sessions back');
  t.equal(hsm.sessions.size, 2);
  t.match(await metric('signer_hsm_deadline_exceeded_total'), /stage="call"} 2/);
  t.match(await metric('signer_hsm_deadline_exceeded_total'), /stage="session_wait"} 1/);
  t.match(await metric('signer_hsm_sessions_suspect'), /signer_hsm_sessions_suspect 0/);
  await Promise.all([sign(), sign(), sign(), sign()]);
});

t.test("the call's gRPC deadline caps the wait for a session", async (t) => {
  faults.hold = true;
  await Promise.all([refusal(sign()), refusal(sign())]);
  faults.hold = false;
  t.equal(hsm.sessions.suspect, 2, 'no free session');
  const before = await metric('signer_hsm_deadline_exceeded_total');

  // In-process: a deadline 200 ms away ends the wait long before the configured 1500 ms.
  let started = Date.now();
  const e = await hsm.sign(ckaId, mechanism, randomBytes(32), 'hot', Date.now() + 200).catch((err: unknown) => err);
  const took = Date.now() - started;
  t.ok(e instanceof SignerError && e.reason === 'HSM_UNAVAILABLE' && e.metadata.timeout === 'session_wait', 'refused');
  t.ok(took >= 180 && took < 1000, `after the caller's deadline (${took} ms)`);
  started = Date.now();
  const past = await hsm.sign(ckaId, mechanism, randomBytes(32), 'hot', Date.now() - 1).catch((x: unknown) => x);
  t.match(past, { reason: 'HSM_UNAVAILABLE' });
  t.ok(Date.now() - started < 100, 'a deadline already past: refused at once');
  started = Date.now();
  const batch = await hsm.sign(ckaId, mechanism, randomBytes(32), 'batch').catch((x: unknown) => x);
  t.match(batch, { reason: 'HSM_UNAVAILABLE' });
  t.ok(Date.now() - started < 1000, 'a batch item waits the batch lane limit (300 ms here)');

  // Over gRPC: the client gives up at 200 ms; the server stops waiting then too, not at 1500 ms.
  started = Date.now();
  const d = decodeError(await refusal(sign(randomBytes(32), 200)));
  t.equal(d.code, status.DEADLINE_EXCEEDED, 'the client sees its deadline');
  const waitEnded = async () =>
    (await metric('signer_hsm_session_waiters')).includes('lane="hot"} 0') &&
    (await metric('signer_hsm_deadline_exceeded_total')) !== before;
  t.ok(await eventually(waitEnded, 1000), 'the server counted the ended wait');
  t.ok(Date.now() - started < WAIT_MS, `the server's wait ended with the call (${Date.now() - started} ms)`);

  t.equal(releaseHeld(), 2);
  t.ok(await eventually(() => hsm.sessions.inUse === 0));
  await sign();
});

t.test('withSession: the same deadlines, and a late result is wiped', async (t) => {
  // A result that arrives after its caller gave up may be a secret (a decrypted share).
  const secret = randomBytes(32);
  const late = hsm.withSession('hot', async () => {
    await sleep(CALL_MS + 300);
    return secret;
  });
  const refusedLate = await late.catch((x: unknown) => x);
  t.match(refusedLate, { reason: 'HSM_UNAVAILABLE', metadata: { timeout: 'call' } }, 'refused at the call deadline');
  t.equal(hsm.sessions.suspect, 1, 'its session is held');
  t.ok(await eventually(() => hsm.sessions.suspect === 0 && hsm.sessions.inUse === 0), 'and back when the call ends');
  t.ok(
    secret.every((b) => b === 0),
    'the late result was wiped',
  );

  const sealKey = await ensureSealingKey(hsm, 'deadline-test');
  faults.hold = true;
  await Promise.all([refusal(sign()), refusal(sign())]);
  faults.hold = false;
  const e = await seal(hsm, sealKey, randomBytes(32), Buffer.from('aad')).catch((err: unknown) => err);
  const wanted = { reason: 'HSM_UNAVAILABLE', metadata: { timeout: 'session_wait' } };
  t.match(e, wanted, 'sealing waits at most the wait limit');
  t.equal(releaseHeld(), 2);
  t.ok(await eventually(() => hsm.sessions.inUse === 0));
  const sealed = await seal(hsm, sealKey, randomBytes(32), Buffer.from('aad'));
  t.equal(sealed.length, 1 + 12 + 32 + 16, 'seals once sessions are free');
});
