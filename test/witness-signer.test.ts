/**
 * Witnesses against the REAL signer store: a signer child process (role "signer", SoftHSM audit
 * key, SQLite store) publishes its checkpoints to two witness processes. Stopped, its SQLite file
 * is rewritten by an attacker with better-sqlite3 (one entry edited, every chain hash, tree node
 * and the frontier recomputed, every checkpoint and note row deleted). Started again, the
 * signer seeds its last signed head from the witnesses' GetLatest, finds the file does not hold
 * it, signs and publishes nothing and refuses signing; the witnesses keep the honest head.
 * (test/witness.test.ts keeps a stand-in log whose key signs whatever the file holds, for the
 * witness's own fork and rollback refusals: the real signer no longer signs such a head.)
 */
import { writeFile } from 'node:fs/promises';
import { status } from '@grpc/grpc-js';
import Database from 'better-sqlite3';
import t from 'tap';
import { entries, rewriteHistory, withDb } from '../harness/audit-adversary.js';
import { ETH, transfer } from '../harness/evm.js';
import { makePki } from '../harness/pki.js';
import { freePort, type SignerProcess, startSignerProcess } from '../harness/process.js';
import { eventually, healthOf, refused, testConfig } from '../harness/signer.js';
import { makeToken, tempDir } from '../harness/token.js';
import { startWitnesses, type WitnessNode, witnessClient, witnessConfig } from '../harness/witnesses.js';
import { call, connect, nowTimestamp } from '../src/client/client.js';

const ORIGIN = 'audit.test/hsm-signer/real-store';
const tmp = await tempDir('witness-signer-');
const [pki, token] = await Promise.all([
  makePki(tmp.path, ['payment-engine', 'security-admin', 'auditor', 'coordinator']),
  makeToken(tmp.path),
]);
const port = await freePort();
const address = `127.0.0.1:${port}`;
const configFile = `${tmp.path}/signer.json`;
const path = `${tmp.path}/signer.db`;
let proc: SignerProcess | undefined;
const witnesses: WitnessNode[] = [];
t.teardown(async () => {
  await proc?.stop();
  await Promise.all(witnesses.map((w) => w.stop()));
  await tmp.cleanup();
});

async function start(over: Record<string, unknown> = {}): Promise<void> {
  const raw = {
    ...testConfig(tmp.path, pki, token),
    listen: address,
    log: { level: 'info' },
    audit: { origin: ORIGIN, checkpointEveryMs: 200 },
    // The witnesses are the only anchor outside the database here.
    rollback: { mark: false },
    ...over,
  };
  await writeFile(configFile, JSON.stringify(raw));
  proc = await startSignerProcess(configFile, 60_000);
}
const as = (cn: string) => connect(address, { ca: pki.caCert, cert: pki.clients[cn]!.cert, key: pki.clients[cn]!.key });
const notes = () => {
  const db = new Database(path, { readonly: true });
  try {
    return (db.prepare('SELECT count(*) AS n FROM audit_notes').get() as { n: number }).n;
  } finally {
    db.close();
  }
};

// First run: the audit key is generated in the token; its public key configures the witnesses.
await start();
const auditor = as('auditor');
let verifierKey = '';
const checkpointed = await eventually(async () => {
  const r = await call<{ verifierKey: string }>(auditor.audit, 'GetCheckpoint', { treeSize: '0' }).catch(() => null);
  verifierKey = r?.verifierKey ?? '';
  return verifierKey !== '';
}, 60_000);
if (!checkpointed) throw new Error(`the first run signed no checkpoint within 60 s: ${proc!.logs().slice(-2000)}`);
auditor.close();
await proc!.stop();
// A C2SP verifier key is <name>+<key hash>+<base64 of 0x01 || key>: the base64 may hold '+' too.
const publicKey = Buffer.from(verifierKey.split('+').slice(2).join('+'), 'base64').subarray(1).toString('base64');
witnesses.push(...(await startWitnesses(tmp.path, pki, [{ origin: ORIGIN, publicKey }], { n: 2 })));
const withWitnesses = { witness: witnessConfig(witnesses, pki, 2) };

const latest = async (w: WitnessNode) => {
  const c = witnessClient(pki, w.address);
  try {
    return await call<{ size: string; checkpoint: string }>(c, 'GetLatest', { origin: ORIGIN });
  } finally {
    c.close();
  }
};

t.test('a rewritten signer database is neither signed nor cosigned after a restart', async (t) => {
  await start(withWitnesses);
  let clients = { engine: as('payment-engine'), admin: as('security-admin') };
  await call(clients.admin.keyAdmin, 'CreateKey', { keyId: 'hot-k1', algorithm: 'ECDSA_SECP256K1' });
  const sign = (nonce: number, value: bigint) =>
    call(clients.engine.signer, 'Sign', {
      keyId: 'hot-k1',
      requestId: `r-${nonce}-${value}`,
      clientTime: nowTimestamp(),
      ...transfer({ nonce, value }).payload,
    });
  for (const n of [1, 2, 3]) await sign(n, ETH);
  clients.engine.close();
  clients.admin.close();
  t.equal(await proc!.stop(), 0, 'the signer stops cleanly');
  const honest = await Promise.all(witnesses.map(latest));
  for (const h of honest) t.equal(Number(h.size), entries(path).length, 'each witness cosigned the final head');

  // The attacker, with the signer stopped: one signed request's entry rewritten, all re-hashed.
  const target = entries(path).find((e) => e.requestId !== null)!;
  rewriteHistory(path, target.seq, { client: 'mallory' });
  withDb(path, (db) => {
    db.prepare('DELETE FROM audit_checkpoints').run();
    db.prepare('DELETE FROM audit_notes').run();
  });

  await start(withWitnesses);
  clients = { engine: as('payment-engine'), admin: as('security-admin') };
  const d = await refused(t, sign(9, ETH), status.FAILED_PRECONDITION, 'AUDIT_LOG_INCONSISTENT');
  t.ok(Number(d.metadata.from) <= target.seq && target.seq <= Number(d.metadata.to), 'names the rewritten range');
  t.equal(await healthOf({ address, pki }), 'NOT_SERVING', 'health is NOT_SERVING');
  t.match(proc!.logs(), /AUDIT LOG INCONSISTENT/, 'the signer logs it');
  t.match(proc!.logs(), /is not the head witness:witness-\d\.test holds/, "measured against a witness's head");
  await new Promise((r) => setTimeout(r, 1000)); // several checkpoint ticks
  clients.engine.close();
  clients.admin.close();
  await proc!.stop();
  t.equal(notes(), 0, 'nothing was checkpointed, not even at stop');
  t.same(await Promise.all(witnesses.map(latest)), honest, 'the witnesses keep the honest head');
});
