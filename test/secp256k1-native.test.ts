import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, sep } from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';
import { repoRoot, tempDir } from '../harness/token.js';
import { loadNativeSecp256k1 } from '../src/signer/signing/secp256k1-native.js';
import { secp256k1Addon, signatureCheck } from '../src/signer/signing/selfcheck.js';

const run = promisify(execFile);
const require = createRequire(import.meta.url);
const NO_ADDON = ['--import', 'tsx', '--import', './harness/no-native-secp256k1.ts'];

t.test('the signer verifies secp256k1 with the native addon', async (t) => {
  const pkgDir = dirname(require.resolve('secp256k1/package.json'));
  const isAddon = secp256k1Addon.startsWith(pkgDir + sep) && secp256k1Addon.endsWith('.node');
  t.ok(isAddon, `a compiled addon: ${secp256k1Addon}`);
  t.ok(existsSync(secp256k1Addon), 'that exists');
  t.ok(require.cache[secp256k1Addon], 'and is loaded in this process');
  const { lib } = loadNativeSecp256k1();
  t.equal(lib, require('secp256k1/bindings'), 'the binding over the addon');
  t.not(lib, require('secp256k1/elliptic'), 'not the JavaScript fallback');
  // The check built on it works end to end: recovery finds the key of a real signature.
  const priv = Buffer.alloc(32, 7);
  const digest = Buffer.alloc(32, 9);
  const pub = lib.publicKeyCreate(priv, false);
  const { signature } = lib.ecdsaSign(digest, priv);
  const out = await signatureCheck('ecdsa-secp256k1', pub, async () => false)(digest, signature);
  t.same(Buffer.from(out.bytes), Buffer.from(signature));
});

t.test('without the addon the package falls back silently, the signer refuses to start', async (t) => {
  const probe = "console.log(require('secp256k1') === require('secp256k1/elliptic'))";
  const fallback = await run(process.execPath, [...NO_ADDON, '-e', probe], { cwd: repoRoot });
  t.equal(fallback.stdout.trim(), 'true', 'the package alone would use elliptic without a word');

  const tmp = await tempDir('no-addon-');
  t.teardown(() => tmp.cleanup());
  const config = {
    listen: '127.0.0.1:0',
    tls: { caFile: 'ca.pem', certFile: 'cert.pem', keyFile: 'key.pem' },
    hsm: { uri: 'pkcs11:token=none' },
    store: { sqlite: { path: 'signer.db' } },
    clients: { engine: { roles: ['signer'] } },
  };
  const file = `${tmp.path}/signer.json`;
  await writeFile(file, JSON.stringify(config));
  const args = [...NO_ADDON, 'src/main.ts', '--config', file];
  const r = await run(process.execPath, args, { cwd: repoRoot, timeout: 30_000 }).then(
    () => ({ code: 0, stderr: '' }),
    (e: { code: number; stderr: string }) => e,
  );
  t.equal(r.code, 2, 'exits with status 2');
  t.match(r.stderr, /hsm-signer: the native secp256k1 addon did not load \(No native build was found.*\); rebuild it/);
});
