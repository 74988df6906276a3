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
import { status } from '@grpc/grpc-js';
import Database from 'better-sqlite3';
import t from 'tap';
import { entries, rewriteHistory, withDb } from '../harness/audit-adversary.js';
import { ETH, transfer } from '../harness/evm.js';
import { healthOf, refused } from '../harness/signer.js';
import { WitnessedSigner } from '../harness/witnessed-signer.js';
import { startWitnesses, type WitnessNode, witnessConfig } from '../harness/witnesses.js';
import { call, nowTimestamp } from '../src/client/client.js';

const ORIGIN = 'audit.test/hsm-signer/real-store';
const signer = await WitnessedSigner.create({
  prefix: 'witness-signer-',
  origin: ORIGIN,
  clients: ['payment-engine', 'security-admin', 'auditor', 'coordinator'],
  // The witnesses are the only anchor outside the database here.
  config: { rollback: { mark: false } },
});
const { tmp, pki, address, dbPath: path } = signer;
const witnesses: WitnessNode[] = [];
t.teardown(async () => {
  await signer.proc?.stop();
  await Promise.all(witnesses.map((w) => w.stop()));
  await tmp.cleanup();
});
const start = (over: Record<string, unknown> = {}) => signer.start(over);
const as = (cn: string) => signer.as(cn);
const notes = () => {
  const db = new Database(path, { readonly: true });
  try {
    return (db.prepare('SELECT count(*) AS n FROM audit_notes').get() as { n: number }).n;
  } finally {
    db.close();
  }
};

// First run: the audit key is generated in the token; its public key configures the witnesses.
const publicKey = (await signer.auditPublicKey()).toString('base64');
witnesses.push(...(await startWitnesses(tmp.path, pki, [{ origin: ORIGIN, publicKey }], { n: 2 })));
const withWitnesses = { witness: witnessConfig(witnesses, pki, 2) };
const latest = (w: WitnessNode) => signer.latest(w.address);

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
  t.equal(await signer.proc!.stop(), 0, 'the signer stops cleanly');
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
  t.match(signer.proc!.logs(), /AUDIT LOG INCONSISTENT/, 'the signer logs it');
  t.match(signer.proc!.logs(), /is not the head witness:witness-\d\.test holds/, "measured against a witness's head");
  await new Promise((r) => setTimeout(r, 1000)); // several checkpoint ticks
  clients.engine.close();
  clients.admin.close();
  await signer.proc!.stop();
  t.equal(notes(), 0, 'nothing was checkpointed, not even at stop');
  t.same(await Promise.all(witnesses.map(latest)), honest, 'the witnesses keep the honest head');
});
