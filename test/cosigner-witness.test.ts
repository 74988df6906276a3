/**
 * Cosigners as the signer's witnesses, so a deployment with cosigners needs no witness
 * processes: three REAL cosigner processes hold the shares of a FROST key and, each with its own
 * witness key in its own token and its own file, cosign the signer's audit checkpoints (config
 * `witnessing`; code shared through src/infra/witness). A real signer child process publishes to
 * them with `witness.required` 2; an auditor's export passes `verify-audit --witnesses 2` with
 * the cosigners' keys. Then the attacker holds the signer host, token PIN included: a checkpoint
 * forking the cosigned tree, signed by the real HSM audit key, is refused by every cosigner.
 */
import { execFile } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { promisify } from 'node:util';
import { status } from '@grpc/grpc-js';
import { ed25519 } from '@noble/curves/ed25519.js';
import Database from 'better-sqlite3';
import t from 'tap';
import { COSIGNER_CLIENTS, type CosignerNode, startCosigners, thresholdConfig } from '../harness/cosigners.js';
import { eventually, refused } from '../harness/signer.js';
import { repoRoot } from '../harness/token.js';
import { WitnessedSigner } from '../harness/witnessed-signer.js';
import { loggedWitnessKey, witnessClient, witnessConfig } from '../harness/witnesses.js';
import { call, nowTimestamp } from '../src/client/client.js';
import { parseCheckpoint, signCheckpoint } from '../src/core/audit/checkpoint.js';
import { ed25519Signer, parseNote } from '../src/core/audit/note.js';
import { CKM_EDDSA } from '../src/infra/hsm/algorithms.js';
import { Hsm } from '../src/infra/hsm/hsm.js';

const ORIGIN = 'audit.test/hsm-signer/cosigner-witnesses';
const signer = await WitnessedSigner.create({
  prefix: 'cosigner-witness-',
  origin: ORIGIN,
  clients: ['payment-engine', 'security-admin', 'auditor', ...COSIGNER_CLIENTS],
});
const { tmp, pki, token, address, dbPath: signerDb } = signer;
let nodes: CosignerNode[] = [];
t.teardown(async () => {
  await signer.proc?.stop();
  await Promise.all(nodes.map((n) => n.stop()));
  await tmp.cleanup();
});
const as = (cn: string) => signer.as(cn);

// First run: the audit key is generated in the signer's token; its public key configures the
// cosigners' `witnessing.logs`.
const auditPublicKey = await signer.auditPublicKey();
nodes = await startCosigners(tmp.path, pki, 3, {}, (c) => c, [
  { origin: ORIGIN, publicKey: auditPublicKey.toString('base64') },
]);
const witnesses = nodes.map((n) => ({
  name: `cosigner-${n.id}.witness`,
  address: n.address,
  publicKey: loggedWitnessKey(n.proc.logs()),
}));
// The same processes: shares for the threshold keys, cosignatures for the audit log.
await signer.start({ threshold: thresholdConfig(nodes, pki), witness: witnessConfig(witnesses, pki, 2) });

const latest = (address: string) => signer.latest(address);
const auditSize = () => {
  const db = new Database(signerDb, { readonly: true });
  try {
    return (db.prepare('SELECT max(seq) AS n FROM audit').get() as { n: number }).n;
  } finally {
    db.close();
  }
};

t.test('the cosigners cosign the checkpoints; verify-audit --witnesses 2 passes with their keys', async (t) => {
  const admin = as('security-admin');
  const engine = as('payment-engine');
  t.teardown(() => {
    admin.close();
    engine.close();
  });
  const key = await call<{ publicKey: Buffer }>(
    admin.keyAdmin,
    'CreateKey',
    { keyId: 'tss-w', algorithm: 'FROST_ED25519' },
    90_000,
  );
  for (let i = 0; i < 3; i++) {
    const message = randomBytes(32);
    const r = await call<{ signature: Buffer }>(
      engine.signer,
      'Sign',
      { keyId: 'tss-w', requestId: randomUUID(), clientTime: nowTimestamp(), message },
      30_000,
    );
    t.ok(ed25519.verify(r.signature, message, key.publicKey), 'a FROST signature by these cosigners verifies');
  }
  const settled = await eventually(async () => {
    const size = auditSize();
    const heads = await Promise.all(nodes.map((n) => latest(n.address)));
    return heads.every((h) => Number(h.size) === size);
  }, 60_000);
  t.ok(settled, "every cosigner cosigned the signer's latest head");
  const to = new Date(Date.now() + 1).toISOString();
  const out = `${tmp.path}/audit.jsonl`;
  const run = promisify(execFile);
  const tsx = `${repoRoot}/node_modules/.bin/tsx`;
  const tls = ['--address', address, '--ca', pki.files.caCert];
  const auditor = ['--cert', pki.files.clients.auditor!.cert, '--key', pki.files.clients.auditor!.key];
  await run(tsx, ['scripts/export-audit.ts', '--to', to, '--out', out, ...tls, ...auditor], { cwd: repoRoot });
  const keys = witnesses.flatMap((w) => ['--witness-key', `${w.name}=${w.publicKey}`]);
  const verify = (args: string[]) =>
    run(tsx, ['scripts/verify-audit.ts', out, ...args], { cwd: repoRoot, timeout: 60_000 }).then(
      (r) => ({ code: 0, out: r.stdout }),
      (e: { code: number; stdout: string }) => ({ code: e.code, out: e.stdout }),
    );
  const good = await verify(['--witnesses', '2', ...keys]);
  t.equal(good.code, 0, `verify-audit --witnesses 2 passes: ${good.out.slice(-300)}`);
  t.match(good.out, /OK/);
  const strangers = witnesses.map((w) => ({
    ...w,
    publicKey: Buffer.from(ed25519.getPublicKey(ed25519.utils.randomSecretKey())).toString('base64'),
  }));
  const bad = await verify([
    '--witnesses',
    '2',
    ...strangers.flatMap((w) => ['--witness-key', `${w.name}=${w.publicKey}`]),
  ]);
  t.equal(bad.code, 1, 'other witness keys: the same export fails --witnesses 2');
});

t.test('a fork signed with the real audit key is refused by every cosigner-witness', async (t) => {
  await signer.proc!.stop();
  signer.proc = undefined;
  // The attacker on the signer host: the token and its PIN file, the database.
  const row = (() => {
    const db = new Database(signerDb, { readonly: true });
    try {
      return db.prepare("SELECT cka_id, public_key FROM keys WHERE key_id = '_audit'").get() as {
        cka_id: Buffer;
        public_key: Buffer;
      };
    } finally {
      db.close();
    }
  })();
  t.same(new Uint8Array(row.public_key), new Uint8Array(auditPublicKey), 'the audit key the cosigners pin');
  Object.assign(process.env, token.env);
  const hsm = await Hsm.open({ uri: token.uri, sessions: 1, recoveryIntervalMs: 100 });
  t.teardown(() => hsm.close());
  const logKey = ed25519Signer(ORIGIN, auditPublicKey, async (m) => hsm.sign(row.cka_id, { mechanism: CKM_EDDSA }, m));
  const before = await Promise.all(nodes.map((n) => latest(n.address)));
  const cosigned = before[0]!;
  const size = Number(cosigned.size);
  const honestRoot = parseCheckpoint(parseNote(cosigned.checkpoint).text).root;
  const forks = [
    { what: 'same size, another root', size, proof: [] as Buffer[] },
    { what: 'a larger tree with a made-up proof', size: size + 5, proof: [randomBytes(32), randomBytes(32)] },
  ];
  for (const f of forks) {
    let root = randomBytes(32);
    while (root.equals(Buffer.from(honestRoot))) root = randomBytes(32);
    const note = await signCheckpoint({ origin: ORIGIN, size: f.size, root }, logKey);
    for (const node of nodes) {
      const c = witnessClient(pki, node.address);
      try {
        const d = await refused(
          t,
          call(c, 'AddCheckpoint', { oldSize: String(size), consistencyProof: f.proof, checkpoint: note }),
          status.FAILED_PRECONDITION,
          'WITNESS_FORK',
        );
        t.equal(d.metadata.latest_size, String(size), `${f.what}: cosigner ${node.id} keeps the honest head`);
      } finally {
        c.close();
      }
      t.match(node.proc.logs(), /witness refused/, `cosigner ${node.id} logs the fork`);
    }
  }
  t.same(await Promise.all(nodes.map((n) => latest(n.address))), before, 'no cosigner cosigned anything new');
});
