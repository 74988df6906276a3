import { randomBytes, randomUUID } from 'node:crypto';
import { chmod, writeFile } from 'node:fs/promises';
import { status } from '@grpc/grpc-js';
import { secp256k1 } from '@noble/curves/secp256k1.js';
import pkcs11js from 'pkcs11js';
import t from 'tap';
import { captureLog } from '../harness/log-capture.js';
import { newFaults, withFaults } from '../harness/pkcs11-faults.js';
import { eventually, healthOf, refused, startTestSigner } from '../harness/signer.js';
import { pkcs11Uri } from '../harness/token.js';
import { call, nowTimestamp } from '../src/client/client.js';
import { Hsm, HsmStartError } from '../src/infra/hsm/hsm.js';
import { readPinFile } from '../src/infra/hsm/pin.js';

// One signer on a real SoftHSM token; the module is real, with a switch that pulls the token out.
const faults = newFaults();
const capture = captureLog('info');
const ts = await startTestSigner({
  wrapModule: (p) => withFaults(p, faults),
  log: capture.log,
  hsm: { recoveryIntervalMs: 100 },
});
t.teardown(() => ts.close());
const hsm = ts.signer.hsm;
const engine = ts.as('payment-engine');
const admin = ts.as('security-admin').keyAdmin;
const key = await call<{ publicKey: Buffer }>(admin, 'CreateKey', { keyId: 'hot', algorithm: 'ECDSA_SECP256K1' });
const sign = (digest = randomBytes(32)) => {
  const request = { keyId: 'hot', requestId: randomUUID(), clientTime: nowTimestamp(), digest };
  return call<{ signature: Buffer }>(engine.signer, 'Sign', request);
};
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const logins = () => faults.calls.C_Login ?? 0;
const refusedLines = () => capture.lines.filter((l) => /HSM login refused/.test(String(l.msg)));
const metric = async (name: string) => ts.signer.metrics.registry.getSingleMetricAsString(name);
let pin = ts.token.userPin;

t.test('a PIN refused during recovery stops every login until an operator acts', async (t) => {
  // The PIN is changed on the token behind the signer's back; the signer's file keeps the old one.
  const newPin = randomBytes(16).toString('hex');
  await hsm.manage((s) => hsm.p11.C_SetPIN(s, pin, newPin));
  faults.removed = true;
  await refused(t, sign(), status.UNAVAILABLE, 'HSM_UNAVAILABLE');
  t.ok(await eventually(async () => (await healthOf(ts)) === 'NOT_SERVING'), 'NOT_SERVING while the token is away');
  await sleep(300);
  const before = logins();
  faults.removed = false;

  t.ok(await eventually(() => hsm.state === 'login-blocked'), 'recovery meets the refused PIN and stops');
  t.equal(logins() - before, 1, 'exactly one login attempt');
  await sleep(800); // 8 recovery intervals
  t.equal(logins() - before, 1, 'no further attempt over several recovery intervals');
  t.equal(await healthOf(ts), 'NOT_SERVING', 'health stays NOT_SERVING');
  t.equal(hsm.state, 'login-blocked');
  t.match(await metric('signer_hsm_login_blocked'), /signer_hsm_login_blocked 1/, 'the blocked login is a metric');
  const errors = await metric('signer_hsm_errors_total');
  t.match(errors, /ckr="CKR_PIN_INCORRECT",class="login"} 1/, 'the refusal is counted');

  const lines = refusedLines();
  t.equal(lines.length, 1, 'one log line says what happened');
  t.equal(lines[0]?.level, 50, 'at error level');
  t.match(String(lines[0]?.msg), /CKR_PIN_INCORRECT.*no further login.*SIGHUP/, 'and what the operator must do');
  t.notOk(capture.text().includes(pin) || capture.text().includes(newPin), 'no PIN in the log');

  const d = await refused(t, sign(), status.UNAVAILABLE, 'HSM_UNAVAILABLE');
  t.match(d.message, /refused the signer's PIN/, 'a client learns that an operator must act');
  t.equal(d.metadata.ckr, 'CKR_PIN_INCORRECT');
  t.equal(d.retryDelayMs, undefined, 'no retry hint: retrying cannot help until an operator acts');

  // The operator retries without a fix: exactly one more attempt, then blocked again.
  t.equal(hsm.retryLogin(), 'login-blocked', 'retryLogin with the same wrong PIN');
  t.equal(logins() - before, 2, 'one attempt per operator action');
  t.equal(refusedLines().length, 2, 'and one log line for it');

  // The fix lands with a mode others can read: refused before any login.
  await writeFile(ts.token.userPinFile, newPin);
  await chmod(ts.token.userPinFile, 0o644);
  t.equal(hsm.retryLogin(), 'login-blocked', 'a PIN file others can read is not used');
  t.equal(logins() - before, 2, 'no login attempt with it');
  const modeLine = capture.lines.some((l) => /PIN file .*user\.pin has mode 0644/.test(String(l.msg)));
  t.ok(modeLine, 'the log names the file and its mode');

  await chmod(ts.token.userPinFile, 0o600);
  t.equal(hsm.retryLogin(), 'up', 'the corrected PIN file logs in');
  t.equal(logins() - before, 3);
  t.ok(await eventually(async () => (await healthOf(ts)) === 'SERVING'), 'SERVING again');
  t.match(await metric('signer_hsm_login_blocked'), /signer_hsm_login_blocked 0/);
  const digest = randomBytes(32);
  t.ok(secp256k1.verify((await sign(digest)).signature, digest, key.publicKey, { prehash: false }), 'signs again');
  t.notOk(capture.text().includes(newPin), 'still no PIN in the log');
  pin = newPin;
});

t.test('a PIN failure reported by a call stops recovery without a login attempt', async (t) => {
  const before = logins();
  faults.signFailsOnce = pkcs11js.CKR_PIN_EXPIRED;
  const d = await refused(t, sign(), status.UNAVAILABLE, 'HSM_UNAVAILABLE');
  t.equal(d.metadata.ckr, 'CKR_PIN_EXPIRED');
  t.equal(hsm.state, 'login-blocked', 'blocked at once');
  await sleep(500);
  t.equal(logins(), before, 'no login attempt at all');
  t.equal(await healthOf(ts), 'NOT_SERVING');
  t.match(String(refusedLines().at(-1)?.msg), /CKR_PIN_EXPIRED.*has expired/, 'the log line says the PIN expired');
  t.equal(hsm.retryLogin(), 'up', 'the operator action logs in once');
  t.equal(logins(), before + 1);
  t.ok(await eventually(async () => (await healthOf(ts)) === 'SERVING'));
});

t.test('retryLogin while the token is up only re-reads the PIN file', async (t) => {
  const before = logins();
  t.equal(hsm.retryLogin(), 'up');
  t.equal(logins(), before, 'no login while up');
  await sign();
});

t.test('the PIN file must not be open to group or others', async (t) => {
  const file = `${ts.dir}/loose.pin`;
  await writeFile(file, pin);
  const uri = pkcs11Uri(ts.token.label, ts.token.modulePath, file);
  for (const mode of [0o640, 0o604, 0o620, 0o602, 0o660, 0o644, 0o610, 0o601]) {
    await chmod(file, mode);
    const m = mode.toString(8).padStart(4, '0');
    // Refused before the module is loaded: the open signer's token is not touched.
    const e = await Hsm.open({ uri, sessions: 1, recoveryIntervalMs: 100 }).then(
      () => t.fail(`mode ${m} accepted`),
      (err: unknown) => err,
    );
    t.ok(e instanceof HsmStartError, `mode ${m}: refused at start`);
    const named = new RegExp(`PIN file ${file} has mode ${m}.*chmod 600`);
    t.match((e as Error).message, named, `mode ${m}: names file and mode`);
    t.notOk((e as Error).message.includes(pin), `mode ${m}: not the PIN`);
  }
  for (const mode of [0o600, 0o400]) {
    await chmod(file, mode);
    t.equal(readPinFile(file), pin, `mode ${mode.toString(8)} is accepted`);
  }
  t.throws(() => readPinFile(ts.dir), /is not a regular file/, 'a directory is not a PIN file');
});
