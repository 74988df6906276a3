import { execFile } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { chmod, rm, writeFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import { status } from '@grpc/grpc-js';
import t from 'tap';
import { makePki } from '../harness/pki.js';
import { freePort, startSignerProcess } from '../harness/process.js';
import { eventually, healthOf, refused, testConfig } from '../harness/signer.js';
import { makeToken, repoRoot, tempDir } from '../harness/token.js';
import { call, connect, nowTimestamp } from '../src/client/client.js';

// The real program (src/main.ts) in a child process, over the real SoftHSM module with one
// switch (harness/faulty-main.ts): the token is "pulled out" while `removed` exists, and each
// C_Login the child makes is reported on its stdout.
const run = promisify(execFile);
const tmp = await tempDir('hsm-pin-process-');
t.teardown(() => tmp.cleanup());
const [pki, token] = await Promise.all([makePki(tmp.path), makeToken(tmp.path)]);
const removed = `${tmp.path}/removed`;
process.env.PKCS11_REMOVED_FILE = removed;
const ENTRY = 'harness/faulty-main.ts';
const logins = (out: string) => out.split('\n').filter((l) => l === '{"pkcs11":"C_Login"}').length;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** A child compiles the program with tsx first: on a busy test machine that alone takes half a minute. */
const START_MS = 60_000;

async function configWithPinFile(name: string, pin: string, mode: number, listen = '127.0.0.1:0') {
  const pinFile = `${tmp.path}/${name}.pin`;
  await writeFile(pinFile, pin, { mode: 0o600 });
  await chmod(pinFile, mode);
  const uri = token.uri.replace(/pin-source=file:[^&]+/, `pin-source=file:${pinFile}`);
  const config = testConfig(tmp.path, pki, token, { log: { level: 'info' }, listen });
  config.hsm = { ...config.hsm, uri, recoveryIntervalMs: 100 };
  const file = `${tmp.path}/${name}.json`;
  await writeFile(file, JSON.stringify(config));
  return { file, pinFile };
}

/** Runs the program to its exit (a start that fails must exit). */
async function runToExit(configFile: string) {
  try {
    const args = ['--import', 'tsx', ENTRY, '--config', configFile];
    const r = await run(process.execPath, args, { cwd: repoRoot, timeout: START_MS });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string; killed: boolean };
    return { code: err.killed ? -1 : err.code, stdout: err.stdout, stderr: err.stderr };
  }
}

t.test('a wrong PIN at start: one login attempt, a clear message, exit status 2', async (t) => {
  const wrong = `not-the-pin-${randomBytes(4).toString('hex')}`;
  const { file } = await configWithPinFile('wrong', wrong, 0o600);
  const r = await runToExit(file);
  t.equal(r.code, 2, 'exits with status 2');
  t.equal(logins(r.stdout), 1, 'exactly one C_Login');
  t.match(r.stderr, /login to token failed: CKR_PIN_INCORRECT: put the token's PIN in .*wrong\.pin.*never retried/);
  t.notOk(r.stderr.includes(wrong) || r.stdout.includes(wrong), 'the PIN is not printed');
});

t.test('a PIN file open to others: refused at start before any login', async (t) => {
  const { file, pinFile } = await configWithPinFile('loose', token.userPin, 0o640);
  const r = await runToExit(file);
  t.equal(r.code, 2, 'exits with status 2');
  t.equal(logins(r.stdout), 0, 'no C_Login');
  t.match(r.stderr, `PIN file ${pinFile} has mode 0640`);
  t.notOk(r.stderr.includes(token.userPin), 'the PIN is not printed');
});

t.test('SIGHUP after a refused PIN: one new login attempt, then SERVING', async (t) => {
  const port = await freePort();
  const { file, pinFile } = await configWithPinFile('run', token.userPin, 0o600, `127.0.0.1:${port}`);
  const proc = await startSignerProcess(file, START_MS, { entry: ENTRY });
  t.teardown(() => void proc.stop('SIGKILL'));
  const address = `127.0.0.1:${port}`;
  const target = { pki, address };
  const c = pki.clients['payment-engine']!;
  const engine = connect(address, { ca: pki.caCert, cert: c.cert, key: c.key });
  const a = pki.clients['security-admin']!;
  const admin = connect(address, { ca: pki.caCert, cert: a.cert, key: a.key });
  t.teardown(() => {
    engine.close();
    admin.close();
  });
  await call(admin.keyAdmin, 'CreateKey', { keyId: 'hot', algorithm: 'ECDSA_SECP256K1' });
  const sign = () => {
    const request = { keyId: 'hot', requestId: randomUUID(), clientTime: nowTimestamp(), digest: randomBytes(32) };
    return call(engine.signer, 'Sign', request);
  };
  await sign();
  t.equal(logins(proc.logs()), 1, 'one login at start');

  // An operator writes a wrong PIN and signals: kept for the next login, no login while up.
  await writeFile(pinFile, 'a-wrong-pin');
  proc.child.kill('SIGHUP');
  t.ok(await eventually(() => /PIN file re-read/.test(proc.logs())), 'SIGHUP re-reads the PIN file');
  t.equal(logins(proc.logs()), 1, 'no login while the token is up');

  // The token blips; recovery meets the wrong PIN once and stops.
  await writeFile(removed, '');
  await refused(t, sign(), status.UNAVAILABLE, 'HSM_UNAVAILABLE');
  t.ok(await eventually(async () => (await healthOf(target)) === 'NOT_SERVING'), 'NOT_SERVING');
  await sleep(300);
  await rm(removed);
  t.ok(await eventually(() => /HSM login refused \(CKR_PIN_INCORRECT\)/.test(proc.logs())), 'logs the refused login');
  t.equal(logins(proc.logs()), 2, 'exactly one attempt by recovery');
  await sleep(800); // 8 recovery intervals
  t.equal(logins(proc.logs()), 2, 'none after it');
  t.equal(await healthOf(target), 'NOT_SERVING', 'still NOT_SERVING');
  t.equal(
    proc
      .logs()
      .split('\n')
      .filter((l) => l.includes('HSM login refused')).length,
    1,
    'one log line',
  );

  await writeFile(pinFile, token.userPin);
  proc.child.kill('SIGHUP');
  t.ok(await eventually(async () => (await healthOf(target)) === 'SERVING'), 'SERVING after SIGHUP with the right PIN');
  t.equal(logins(proc.logs()), 3, 'the signal made one login attempt');
  await sign();
  t.notOk(proc.logs().includes(token.userPin), 'no PIN in the log');
  t.equal(await proc.stop('SIGTERM'), 0, 'stops cleanly');
});
