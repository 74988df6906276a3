/**
 * The restart gap (issue 10): an attacker who can write the signer's SQLite file while it is
 * stopped rewrites one entry, recomputes every chain hash, the whole Merkle tree and its
 * frontier row, and deletes EVERY checkpoint and note row, so nothing inside the database
 * contradicts the forgery. At the next start the checkpointer seeds its "last signed head" from
 * what lives outside the database (the HSM rollback mark; a witness's latest cosigned
 * checkpoint), finds the database does not hold it, signs nothing and refuses signing.
 */
import { copyFile, mkdir, rm } from 'node:fs/promises';
import { status } from '@grpc/grpc-js';
import Database from 'better-sqlite3';
import t, { type Test } from 'tap';
import { entries, rewriteHistory, withDb } from '../harness/audit-adversary.js';
import { ETH } from '../harness/evm.js';
import { makePki } from '../harness/pki.js';
import { RestartableSigner } from '../harness/rollback.js';
import { healthOf, refused, type TestSigner, testConfig } from '../harness/signer.js';
import { makeToken, tempDir } from '../harness/token.js';
import { startWitnesses, type WitnessNode, witnessClient, witnessConfig } from '../harness/witnesses.js';
import { call } from '../src/client/client.js';

const tmp = await tempDir('audit-restart-');
t.teardown(() => tmp.cleanup());
const [pki, token] = await Promise.all([
  makePki(tmp.path, ['payment-engine', 'security-admin', 'auditor', 'other-engine', 'coordinator']),
  makeToken(tmp.path),
]);
const running: RestartableSigner[] = [];
const witnesses: WitnessNode[] = [];
t.teardown(async () => {
  for (const s of running) await s.stop();
  await Promise.all(witnesses.map((w) => w.stop()));
});

function signer(dir: string, over: Record<string, unknown> = {}): RestartableSigner {
  const raw = { ...testConfig(tmp.path, pki, token, over), store: { sqlite: { path: `${dir}/signer.db` } } };
  const s = new RestartableSigner(pki, raw, `${dir}/signer.json`);
  running.push(s);
  return s;
}

const rows = (path: string, table: string) => {
  const db = new Database(path, { readonly: true });
  try {
    return (db.prepare(`SELECT count(*) AS n FROM ${table}`).get() as { n: number }).n;
  } finally {
    db.close();
  }
};

/** Rewrites the first signed request's entry as a database writer would, and deletes every checkpoint. */
function forge(path: string): number {
  const target = entries(path).find((e) => e.requestId !== null)!;
  rewriteHistory(path, target.seq, { client: 'mallory' });
  withDb(path, (db) => {
    db.prepare('DELETE FROM audit_checkpoints').run();
    db.prepare('DELETE FROM audit_notes').run();
  });
  return target.seq;
}

async function expectStopped(t: Test, s: RestartableSigner, path: string, seq: number) {
  const d = await refused(t, s.sign('hot-k1', 9, ETH), status.FAILED_PRECONDITION, 'AUDIT_LOG_INCONSISTENT');
  t.ok(Number(d.metadata.from) <= seq && seq <= Number(d.metadata.to), `names a range holding entry ${seq}`);
  t.equal(await healthOf({ address: s.address, pki } as TestSigner), 'NOT_SERVING', 'health is NOT_SERVING');
  t.equal((await s.signer!.metrics.auditInconsistent.get()).values[0]?.value, 1, 'the metric says so');
  await s.signer!.checkpointer.checkpointHead().catch(() => undefined);
  t.equal(rows(path, 'audit_notes'), 0, 'nothing is checkpointed');
  await s.stop();
  t.equal(rows(path, 'audit_notes'), 0, 'not even at stop');
}

t.test('the HSM mark: a rewritten log with every checkpoint deleted is not signed after restart', async (t) => {
  const dir = `${tmp.path}/mark`;
  await mkdir(dir);
  const s = signer(dir);
  await s.start();
  await call(s.admin!.keyAdmin, 'CreateKey', { keyId: 'hot-k1', algorithm: 'ECDSA_SECP256K1' });
  for (const n of [1, 2, 3]) await s.sign('hot-k1', n, ETH);
  await s.stop();
  const path = `${dir}/signer.db`;
  t.ok(rows(path, 'audit_notes') > 0, 'the honest run left checkpoints (the attacker deletes them)');
  const seq = forge(path);
  await s.start();
  await expectStopped(t, s, path, seq);
});

t.test('a witness: with the mark off, its latest cosigned head still catches the rewrite', async (t) => {
  const dir = `${tmp.path}/witness`;
  await mkdir(dir);
  const origin = 'audit.test/hsm-signer/restart';
  const over = { rollback: { mark: false }, audit: { origin, checkpointEveryMs: 100 } };
  // First run without witnesses: the audit key is made, and the witness is configured with it.
  const first = signer(dir, over);
  await first.start();
  const publicKey = Buffer.from(first.signer!.checkpointer.key.publicKey).toString('base64');
  await first.stop();
  // A backup from before the witnessed run: restored at the end, it lacks witnessed entries.
  await copyFile(`${dir}/signer.db`, `${dir}/signer.db.bak`);
  witnesses.push(...(await startWitnesses(tmp.path, pki, [{ origin, publicKey }], { n: 1 })));
  const s = signer(dir, { ...over, witness: witnessConfig(witnesses, pki, 1) });
  await s.start();
  await call(s.admin!.keyAdmin, 'CreateKey', { keyId: 'hot-k1', algorithm: 'ECDSA_SECP256K1' });
  for (const n of [1, 2, 3]) await s.sign('hot-k1', n, ETH);
  await s.stop();
  const path = `${dir}/signer.db`;
  const w = witnessClient(pki, witnesses[0]!.address);
  t.teardown(() => w.close());
  const before = await call<{ size: string; checkpoint: string }>(w, 'GetLatest', { origin });
  t.equal(Number(before.size), entries(path).length, 'the witness cosigned the final head at stop');
  const seq = forge(path);
  await s.start();
  await expectStopped(t, s, path, seq);
  const after = await call<{ size: string; checkpoint: string }>(w, 'GetLatest', { origin });
  t.equal(after.checkpoint, before.checkpoint, 'the witness still holds the honest head');

  // The old backup restored (mark off): only the witness knows entries are gone.
  await copyFile(`${dir}/signer.db.bak`, path);
  await rm(`${path}-wal`, { force: true });
  await rm(`${path}-shm`, { force: true });
  const notesBefore = rows(path, 'audit_notes');
  await s.start();
  const d = await refused(t, s.sign('hot-k1', 9, ETH), status.FAILED_PRECONDITION, 'STORE_ROLLED_BACK');
  t.equal(d.metadata.source, `witness:${witnesses[0]!.name}`, 'the witness is named as the source');
  t.equal(d.metadata.markedSize, before.size, 'with the size it cosigned');
  t.equal(await healthOf({ address: s.address, pki } as TestSigner), 'NOT_SERVING');
  t.equal((await s.signer!.metrics.storeRolledBack.get()).values[0]?.value, 1, 'signer_store_rolled_back is 1');
  await s.stop();
  t.equal(rows(path, 'audit_notes'), notesBefore, 'nothing is checkpointed on the restored log');
});
