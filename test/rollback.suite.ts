/**
 * The store-rollback scenario of issue 10, point 5, for any backend: take a backup, sign EVM
 * nonce 7, stop, restore the backup, start. Signing must stop (STORE_ROLLED_BACK) and nonce 7
 * must never get a second payload, before or after the operator's reconcile.
 */
import { status } from '@grpc/grpc-js';
import type { Test } from 'tap';
import { ETH } from '../harness/evm.js';
import { type RestartableSigner, reconcile } from '../harness/rollback.js';
import { healthOf, refused, type TestSigner } from '../harness/signer.js';
import { call } from '../src/client/client.js';
import { HsmMark } from '../src/infra/hsm/mark.js';
import { openStore } from '../src/infra/store/open.js';

export interface Backup {
  take(): Promise<void>;
  restore(): Promise<void>;
}

const health = (s: RestartableSigner) => healthOf({ address: s.address, pki: s.pki } as TestSigner);

export async function rollbackScenario(t: Test, s: RestartableSigner, backup: Backup): Promise<void> {
  await s.start();
  await call(s.admin!.keyAdmin, 'CreateKey', { keyId: 'hot-k1', algorithm: 'ECDSA_SECP256K1' });
  for (const n of [5, 6]) await s.sign('hot-k1', n, ETH);
  await backup.take();
  const released = await s.sign('hot-k1', 7, ETH);
  t.ok(released.signature.length > 0, 'nonce 7 is signed and released');

  const marks = await HsmMark.readAll(s.signer!.hsm);
  const store = await openStore(s.config.store);
  const head = (await store.auditHead())!;
  // The mark holds the RFC 9162 tree head, the one checkpoints and witnesses sign.
  const treeRoot = Buffer.from(await store.treeHead(head.seq)).toString('hex');
  await store.close();
  t.same(
    marks.map((m) => m.replica),
    ['default'],
    'one mark object on the token, for this replica',
  );
  t.equal(marks[0]!.head?.size, head.seq, 'the mark holds the audit size nonce 7 was released under');
  t.equal(Buffer.from(marks[0]!.head!.root).toString('hex'), treeRoot, '...and its tree head');
  t.notOk(marks[0]!.head!.chainHash, 'written as a tree head, not a chain hash');

  await s.stop();
  await backup.restore();
  await s.start();
  const d = await refused(t, s.sign('hot-k1', 7, 2n * ETH), status.FAILED_PRECONDITION, 'STORE_ROLLED_BACK');
  t.match(d.message, /reconcile-rollback/, 'the refusal says what to do');
  t.equal(d.metadata.markedSize, String(head.seq), 'names the marked size');
  await refused(t, s.sign('hot-k1', 7, ETH), status.FAILED_PRECONDITION, 'STORE_ROLLED_BACK');
  await refused(t, s.sign('hot-k1', 8, ETH), status.FAILED_PRECONDITION, 'STORE_ROLLED_BACK');
  t.equal(await health(s), 'NOT_SERVING', 'health is NOT_SERVING');
  t.equal((await s.signer!.metrics.storeRolledBack.get()).values[0]?.value, 1, 'the metric says so');
  await s.stop();

  const dry = await reconcile(s.configFile, []);
  t.equal(dry.code, 1, 'without --accept-loss reconcile changes nothing and exits 1');
  t.match(dry.stdout, new RegExp(`released under ${head.seq} entries`), 'and names the lost range');
  const half = await reconcile(s.configFile, ['--accept-loss']);
  t.equal(half.code, 2, '--accept-loss needs an operator and a reason');
  const done = await reconcile(s.configFile, [
    '--accept-loss',
    '--operator',
    'alice',
    '--reason',
    'INC-42 restore',
    '--fence',
    'hot-k1@v1:1:7',
    '--json',
  ]);
  t.equal(done.code, 0, `reconcile runs: ${done.stderr}`);
  const report = JSON.parse(done.stdout);
  t.same(report.fenced, ['hot-k1@v1:1:7'], 'nonce 7 is closed');

  const after = await openStore(s.config.store);
  const newHead = (await after.auditHead())!;
  const entries = [];
  for await (const e of after.readAudit(1, newHead.seq)) entries.push(e);
  await after.close();
  const decision = entries.find((e) => e.kind === 'store.rollback_reconciled');
  t.ok(decision, 'the decision is in the audit log');
  t.equal(decision?.client, 'alice', 'with the operator');
  t.equal(decision?.intent?.markedSize, String(head.seq), 'the lost range: marked size');
  // The restarted signer appended its start and refusals to the restored log: it may be longer
  // than the mark by now, but it does not hold the marked head (diverged), or it is shorter.
  const lost = decision?.intent ?? {};
  t.ok(
    lost.why === 'shorter' ? Number(lost.dbSize) < head.seq : lost.why === 'diverged' && lost.dbRootAtMark !== treeRoot,
    `the lost range: ${lost.why}, database size ${lost.dbSize} vs marked ${lost.markedSize}`,
  );
  t.equal(lost.markedRoot, treeRoot, 'the lost range: the marked tree head');
  t.equal(decision?.intent?.operatorReason, 'INC-42 restore');
  t.ok(
    entries.some((e) => e.kind === 'nonce.fence' && e.intent?.nonce === '7'),
    'the fence is audited',
  );
  t.equal(report.resetTo.size, newHead.seq, 'the mark is reset to the database head');

  await s.start();
  t.equal(await health(s), 'SERVING', 'serving again after reconcile');
  await refused(t, s.sign('hot-k1', 7, 2n * ETH), status.ALREADY_EXISTS, 'NONCE_ALREADY_SIGNED');
  await refused(t, s.sign('hot-k1', 7, 3n * ETH), status.ALREADY_EXISTS, 'NONCE_ALREADY_SIGNED');
  t.ok((await s.sign('hot-k1', 8, ETH)).signature.length > 0, 'the next nonce signs');
  const again = await reconcile(s.configFile, []);
  t.equal(again.code, 0, 'a second reconcile finds nothing to do');
  await s.stop();
}
