import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { copyFile, cp, mkdir, readdir, symlink, writeFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import { secp256k1 } from '@noble/curves/secp256k1.js';
import t from 'tap';
import { makePki } from '../harness/pki.js';
import { freePort, startSignerProcess } from '../harness/process.js';
import { testConfig } from '../harness/signer.js';
import { makeToken, repoRoot, tempDir } from '../harness/token.js';
import { call, connect, nowTimestamp } from '../src/client/client.js';

// `npm run build` is tsc with tsconfig.build.json; this runs that same config into a deployment laid
// out as the README's production start expects: package.json, proto/ and dist/ side by side, and
// the signer started with plain node (no tsx), so a path that only resolves from src/ fails here.
const run = promisify(execFile);
// A compiler run and a signer start on a loaded 2-core machine: more than the default 180 s file budget.
t.setTimeout(420_000);
const tmp = await tempDir('build-');
t.teardown(() => tmp.cleanup());
const app = `${tmp.path}/app`;
const dist = `${app}/dist`;
await mkdir(app);
await copyFile(`${repoRoot}/package.json`, `${app}/package.json`);
await cp(`${repoRoot}/proto`, `${app}/proto`, { recursive: true });
await symlink(`${repoRoot}/node_modules`, `${app}/node_modules`, 'dir');

const sources = async (dir: string, ext: string) =>
  (await readdir(dir, { recursive: true }))
    .filter((f) => f.endsWith(ext))
    .map((f) => f.slice(0, -ext.length))
    .sort();

t.test('the build compiles every file of src/ and nothing else', async (t) => {
  const tsc = `${repoRoot}/node_modules/typescript/bin/tsc`;
  // --noCheck: emit only; npm test type-checks the same sources with the same options (tsc --noEmit).
  await run(process.execPath, [tsc, '-p', 'tsconfig.build.json', '--noCheck', '--outDir', dist], {
    cwd: repoRoot,
    timeout: 400_000,
  });
  const want = await sources(`${repoRoot}/src`, '.ts');
  t.ok(want.includes('main'), 'src/main.ts is a source');
  t.same(await sources(dist, '.js'), want, 'one .js per .ts, at the same path');
});

t.test('node dist/main.js --help', async (t) => {
  const { stdout } = await run(process.execPath, [`${dist}/main.js`, '--help'], { timeout: 30_000 });
  t.match(stdout, /Usage: hsm-signer/);
  t.match(stdout, /-c, --config <file>/);
});

t.test('the compiled signer starts on plain node, signs, and stops cleanly', async (t) => {
  const [pki, token] = await Promise.all([makePki(tmp.path), makeToken(tmp.path)]);
  const port = await freePort();
  const file = `${tmp.path}/signer.json`;
  await writeFile(
    file,
    JSON.stringify(testConfig(tmp.path, pki, token, { listen: `127.0.0.1:${port}`, log: { level: 'info' } })),
  );
  const proc = await startSignerProcess(file, 120_000, { entry: `${dist}/main.js` });
  t.teardown(() => void proc.stop('SIGKILL'));
  t.notMatch(proc.child.spawnargs.join(' '), /tsx/, 'no TypeScript loader');

  const as = (cn: string) => {
    const c = pki.clients[cn]!;
    const clients = connect(`127.0.0.1:${port}`, { ca: pki.caCert, cert: c.cert, key: c.key });
    t.teardown(() => clients.close());
    return clients;
  };
  const key = await call<{ publicKey: Buffer }>(as('security-admin').keyAdmin, 'CreateKey', {
    keyId: 'built-k1',
    algorithm: 'ECDSA_SECP256K1',
  });
  const digest = Buffer.alloc(32, 0xab);
  const signed = await call<{ signature: Buffer }>(as('payment-engine').signer, 'Sign', {
    keyId: 'built-k1',
    requestId: randomUUID(),
    clientTime: nowTimestamp(),
    digest,
  });
  t.ok(secp256k1.verify(signed.signature, digest, key.publicKey, { prehash: false }), 'a valid signature');
  t.equal(await proc.stop('SIGTERM'), 0, 'SIGTERM stops it with status 0');
});
