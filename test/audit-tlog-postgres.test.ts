// The audit-tlog adversary cases on PostgreSQL, the writer holding the connection URL: proofs
// from the RPCs verify; history rewritten with recomputed hashes, nodes and frontier (checkpoints
// deleted) and a cut tail on the live database stop checkpoints and signing.
import { randomUUID } from 'node:crypto';
import { status } from '@grpc/grpc-js';
import type * as Tap from 'tap';
import t from 'tap';
import { cutTailPg, rewriteHistoryPg } from '../harness/audit-adversary-pg.js';
import { transfer } from '../harness/evm.js';
import { startPostgres } from '../harness/postgres.js';
import { healthOf, refused, startTestSigner } from '../harness/signer.js';
import { call, nowTimestamp } from '../src/client/client.js';
import type { AuditEntry } from '../src/core/audit/chain.js';
import { entryLeafHash } from '../src/core/audit/leaf.js';
import { verifyConsistency, verifyInclusion } from '../src/core/audit/merkle-verify.js';
import { openLogCheckpoint } from '../src/core/audit/tlog-verify.js';

const pg = await startPostgres();
t.teardown(() => pg.stop());
const ts = await startTestSigner({
  config: {
    store: { postgres: { url: pg.url } },
    audit: { checkpointEveryEntries: 1_000_000, checkpointEveryMs: 3_600_000, origin: 'pg.example/hsm-signer' },
    // The checkpointer's own defence, alone: with the HSM rollback mark on, a cut or rewritten
    // log is refused earlier, as STORE_ROLLED_BACK (test/rollback-*.test.ts).
    rollback: { mark: false },
  },
});
t.teardown(() => ts.close());
const engine = ts.as('payment-engine');
const admin = ts.as('security-admin');
const auditor = ts.as('auditor');
let nonce = 0;
await call(admin.keyAdmin, 'CreateKey', { keyId: 'hot-a', algorithm: 'ECDSA_SECP256K1' });
const sign = () =>
  call(engine.signer, 'Sign', {
    keyId: 'hot-a',
    requestId: randomUUID(),
    clientTime: nowTimestamp(),
    ...transfer({ nonce: nonce++, value: 7n }).payload,
  });

async function checkpoint() {
  await ts.signer.checkpointer.checkpointHead();
  const { note } = await call<{ note: string }>(auditor.audit, 'GetCheckpoint', { treeSize: '0' });
  return {
    note,
    ...openLogCheckpoint(note, [ts.signer.checkpointer.key.publicKey], { origin: 'pg.example/hsm-signer' }).checkpoint,
  };
}

async function inconsistent(t: Tap.Test, p: Promise<unknown>): Promise<void> {
  const e = await p.then(
    () => undefined,
    (x: unknown) => x as { reason?: string },
  );
  t.equal(e?.reason, 'AUDIT_LOG_INCONSISTENT', 'the next checkpoint is refused: AUDIT_LOG_INCONSISTENT');
}

t.test('proofs from the RPCs verify, and fail when tampered', async (t) => {
  for (let i = 0; i < 5; i++) await sign();
  const older = await checkpoint();
  for (let i = 0; i < 4; i++) await sign();
  const cp = await checkpoint();
  const r = await call<{ hashes: Buffer[]; entryJson: string }>(auditor.audit, 'GetInclusionProof', {
    seq: '4',
    treeSize: String(cp.size),
  });
  const { type: _t, ...entry } = JSON.parse(r.entryJson) as AuditEntry & { type: string };
  t.ok(verifyInclusion(3, cp.size, entryLeafHash(entry), r.hashes, cp.root), 'entry 4 is in the checkpoint');
  t.notOk(
    verifyInclusion(3, cp.size, entryLeafHash({ ...entry, reason: 'x' }), r.hashes, cp.root),
    'an edited entry is not',
  );
  const c = await call<{ hashes: Buffer[] }>(auditor.audit, 'GetConsistencyProof', {
    fromSize: String(older.size),
    toSize: String(cp.size),
  });
  t.ok(verifyConsistency(older.size, cp.size, c.hashes, older.root, cp.root), 'the newer checkpoint extends the older');
  t.notOk(verifyConsistency(older.size, cp.size, c.hashes.slice(1), older.root, cp.root), 'a truncated proof fails');
});

t.test('history rewritten with recomputed hashes on the live database: refused, signing stops', async (t) => {
  await sign();
  await checkpoint();
  await rewriteHistoryPg(pg.url, 2, { client: 'mallory' });
  await inconsistent(t, ts.signer.checkpointer.checkpointHead());
  await refused(t, sign(), status.FAILED_PRECONDITION, 'AUDIT_LOG_INCONSISTENT');
  t.equal(await healthOf(ts), 'NOT_SERVING');
});

t.test('DELETE FROM audit WHERE seq > N on the live database: refused, signing stops', async (t) => {
  await ts.restart();
  for (let i = 0; i < 3; i++) await sign();
  const cp = await checkpoint();
  t.equal(await cutTailPg(pg.url, cp.size - 2), 2, 'two entries cut');
  await inconsistent(t, ts.signer.checkpointer.checkpointHead());
  t.same(ts.signer.checkpointer.inconsistency?.range, { from: cp.size - 1, to: cp.size }, 'the cut entries are named');
  await refused(t, sign(), status.FAILED_PRECONDITION, 'AUDIT_LOG_INCONSISTENT');
});
