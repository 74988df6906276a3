import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import { secp256k1 } from '@noble/curves/secp256k1.js';
import t from 'tap';
import { adminScripts } from '../harness/admins.js';
import { makePki } from '../harness/pki.js';
import { freePort, startSignerProcess, tsx } from '../harness/process.js';
import { testConfig } from '../harness/signer.js';
import { makeToken, repoRoot, tempDir } from '../harness/token.js';

const run = promisify(execFile);
const tmp = await tempDir('startup-');
t.teardown(() => tmp.cleanup());
const [pki, token] = await Promise.all([makePki(tmp.path), makeToken(tmp.path)]);
const good = testConfig(tmp.path, pki, token, { log: { level: 'info' } });

/** Runs the signer with a config and waits for it to exit (a start that fails must exit). */
async function startWith(name: string, config: object) {
  const file = `${tmp.path}/${name}.json`;
  await writeFile(file, JSON.stringify(config));
  try {
    await run(tsx, ['src/main.ts', '--config', file], { cwd: repoRoot, timeout: 30_000 });
    return { code: 0, stderr: '' };
  } catch (e) {
    const err = e as { code: number; stderr: string; killed: boolean };
    return { code: err.killed ? -1 : err.code, stderr: err.stderr };
  }
}

t.test('a bad start exits non-zero with a message naming the cause', async (t) => {
  const cases: Array<[string, object, RegExp]> = [
    ['bad listen field', { ...good, listen: 'nowhere' }, /listen: expected host:port/],
    ['unknown field', { ...good, sessions: 4 }, /\(root\)|sessions/],
    ['negative session count', { ...good, hsm: { ...good.hsm, sessions: 0 } }, /hsm\.sessions/],
    [
      'missing module',
      {
        ...good,
        hsm: { ...good.hsm, uri: token.uri.replace(/module-path=[^&]+/, 'module-path=/nonexistent/libpkcs11.so') },
      },
      /cannot load PKCS#11 module \/nonexistent\/libpkcs11\.so/,
    ],
    [
      'unknown token',
      { ...good, hsm: { ...good.hsm, uri: token.uri.replace('token=test', 'token=nope') } },
      /no initialised token with label "nope"/,
    ],
    [
      'slot index instead of label',
      { ...good, hsm: { ...good.hsm, uri: token.uri.replace('token=test', 'slot-id=0') } },
      /slot-id.*label or serial/,
    ],
  ];
  for (const [name, config, message] of cases) {
    const r = await startWith(name.replace(/\W/g, '-'), config);
    t.equal(r.code, 2, `${name}: exit code 2`);
    t.match(r.stderr, message, `${name}: says why`);
  }
});

t.test('a wrong PIN stops the start and the PIN is not printed', async (t) => {
  const wrongPin = `${tmp.path}/wrong.pin`;
  await writeFile(wrongPin, '000000-not-the-pin', { mode: 0o600 });
  const r = await startWith('wrong-pin', {
    ...good,
    hsm: { ...good.hsm, uri: token.uri.replace(/pin-source=file:[^&]+/, `pin-source=file:${wrongPin}`) },
  });
  t.equal(r.code, 2, 'exit code 2');
  t.match(r.stderr, /login to token failed: CKR_PIN_INCORRECT/);
  t.notMatch(r.stderr, /000000-not-the-pin/, 'the PIN is not echoed');
  t.notMatch(r.stderr, new RegExp(token.userPin), 'the real PIN is not echoed');
});

t.test('the signer runs as a process and the security-team scripts drive it', async (t) => {
  const port = await freePort();
  const file = `${tmp.path}/run.json`;
  await writeFile(file, JSON.stringify({ ...good, listen: `127.0.0.1:${port}` }));
  const proc = await startSignerProcess(file);
  t.teardown(() => void proc.stop('SIGKILL'));
  t.match(proc.logs(), /"msg":"signer started"/, 'logs a structured start line');

  const tls = adminScripts(`127.0.0.1:${port}`, pki).as;
  const script = (name: string, args: string[]) =>
    run(tsx, [`scripts/${name}.ts`, ...args], { cwd: repoRoot, timeout: 30_000 });

  const help = await script('create-key', ['--help']);
  t.match(help.stdout, /--algorithm/, 'scripts have --help');
  const created = JSON.parse(
    (await script('create-key', ['cli-k1', '--algorithm', 'ECDSA_SECP256K1', '--json', ...tls('security-admin')]))
      .stdout,
  );
  t.equal(created.keyId, 'cli-k1');
  const listed = JSON.parse((await script('list-keys', ['--json', ...tls('security-admin')])).stdout);
  t.same(
    listed.map((k: { keyId: string }) => k.keyId),
    ['cli-k1'],
  );
  const human = (await script('list-keys', tls('security-admin'))).stdout;
  t.match(human, /cli-k1\tv1\tECDSA_SECP256K1\tACTIVE/, 'a readable table for people');

  const digest = 'ab'.repeat(32);
  const signed = JSON.parse(
    (await script('sign', ['cli-k1', '--digest', digest, '--json', ...tls('payment-engine')])).stdout,
  );
  t.ok(
    secp256k1.verify(
      Buffer.from(signed.signature, 'hex'),
      Buffer.from(digest, 'hex'),
      Buffer.from(created.publicKey, 'hex'),
      { prehash: false },
    ),
    'the dev client gets a valid signature',
  );

  const shown = JSON.parse(
    (await script('show-policy', ['--for-key', 'cli-k1', '--json', ...tls('security-admin')])).stdout,
  );
  t.equal(shown.name, 'open', 'show-policy finds the policy governing a key');
  const narrowed = `${tmp.path}/narrow.json`;
  await writeFile(narrowed, JSON.stringify({ ...shown.document, payloadKinds: ['evm'] }));
  t.match(
    (await script('set-policy', ['open', '--file', narrowed, ...tls('security-admin')])).stdout,
    /policy open is now version 2/,
  );
  const raw = await script('sign', ['cli-k1', '--digest', digest, ...tls('payment-engine')]).catch((e) => e);
  t.match(raw.stderr, /status 7 reason RAW_SIGNING_DISABLED/, 'the new policy applies at once');

  const refused = await script('sign', ['cli-k1', '--digest', 'abcd', ...tls('payment-engine')]).catch((e) => e);
  t.equal(refused.code, 1, 'a refusal exits 1');
  t.match(refused.stderr, /status 3 reason PAYLOAD_INVALID/);

  t.equal(await proc.stop('SIGTERM'), 0, 'SIGTERM stops it cleanly');
  t.notMatch(proc.logs(), new RegExp(token.userPin), 'the PIN never reaches the logs');
  t.match(proc.logs(), /"msg":"signer stopped"/);
});
