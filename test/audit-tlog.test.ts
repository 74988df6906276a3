// The audit log as a Merkle tree, against a database writer (SQLite file written directly, while
// the signer runs and between runs): proofs from the Audit RPCs verify and fail when tampered;
// a rewritten history or a cut tail stops checkpoints and signing; a fork shown to two auditors
// is caught by verify-audit --previous.

import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import type * as grpc from '@grpc/grpc-js';
import { status } from '@grpc/grpc-js';
import { bytesToHex } from '@noble/hashes/utils.js';
import type * as Tap from 'tap';
import t from 'tap';
import { cutTail, entries, rewriteHistory, withDb } from '../harness/audit-adversary.js';
import { transfer } from '../harness/evm.js';
import { healthOf, refused, startTestSigner } from '../harness/signer.js';
import { repoRoot } from '../harness/token.js';
import { call, nowTimestamp } from '../src/client/client.js';
import type { AuditEntry } from '../src/core/audit/chain.js';
import { entryLeafHash } from '../src/core/audit/leaf.js';
import { verifyConsistency, verifyInclusion } from '../src/core/audit/merkle-verify.js';
import { openLogCheckpoint } from '../src/core/audit/tlog-verify.js';

const run = promisify(execFile);
// Checkpoints only when the test asks: every entry count and interval out of reach.
const ts = await startTestSigner({
  config: {
    audit: { checkpointEveryEntries: 1_000_000, checkpointEveryMs: 3_600_000, origin: 'test.example/hsm-signer' },
    // The checkpointer's own defence, alone: with the HSM rollback mark on, a cut or rewritten
    // log is refused earlier, as STORE_ROLLED_BACK (test/rollback-*.test.ts).
    rollback: { mark: false },
  },
});
t.teardown(() => ts.close());
const db = `${ts.dir}/signer.db`;
const engine = ts.as('payment-engine');
const admin = ts.as('security-admin');
const auditor = ts.as('auditor');
const publicKey = () => ts.signer.checkpointer.key.publicKey;
let nonce = 0;

await call(admin.keyAdmin, 'CreateKey', { keyId: 'hot-a', algorithm: 'ECDSA_SECP256K1' });
const sign = (requestId = randomUUID()) =>
  call(engine.signer, 'Sign', {
    keyId: 'hot-a',
    requestId,
    clientTime: nowTimestamp(),
    ...transfer({ nonce: nonce++, value: 7n }).payload,
  });

async function checkpoint(): Promise<{ note: string; size: number; root: Uint8Array }> {
  await ts.signer.checkpointer.checkpointHead();
  const { note } = await call<{ note: string }>(auditor.audit, 'GetCheckpoint', { treeSize: '0' });
  const { checkpoint: cp } = openLogCheckpoint(note, [publicKey()], { origin: 'test.example/hsm-signer' });
  return { note, size: cp.size, root: cp.root };
}

async function exportTo(file: string): Promise<void> {
  const stream = (
    auditor.audit as unknown as { ExportLog(r: object): grpc.ClientReadableStream<{ json: string }> }
  ).ExportLog({});
  const lines: string[] = [];
  for await (const m of stream) lines.push(m.json);
  await writeFile(file, `${lines.join('\n')}\n`);
}

const tsx = `${repoRoot}/node_modules/.bin/tsx`;
const files = ts.pki.files;
const conn = () => [
  '--address',
  ts.address,
  '--ca',
  files.caCert,
  '--cert',
  files.clients.auditor!.cert,
  '--key',
  files.clients.auditor!.key,
];
async function script(name: string, args: string[]): Promise<{ code: number; out: string }> {
  try {
    const r = await run(tsx, [`scripts/${name}.ts`, ...args, ...conn()], { cwd: repoRoot });
    return { code: 0, out: r.stdout };
  } catch (e) {
    const x = e as { code: number; stdout: string; stderr: string };
    return { code: x.code, out: x.stdout + x.stderr };
  }
}

async function inconsistent(t: Tap.Test, p: Promise<unknown>): Promise<void> {
  const e = await p.then(
    () => undefined,
    (x: unknown) => x as { reason?: string },
  );
  t.equal(e?.reason, 'AUDIT_LOG_INCONSISTENT', 'the next checkpoint is refused: AUDIT_LOG_INCONSISTENT');
}

const flip = (h: Uint8Array) => Uint8Array.from(h, (b, i) => (i === 0 ? b ^ 1 : b));

t.test('proofs from the Audit RPCs verify with the pure verifier, and fail when tampered', async (t) => {
  for (let i = 0; i < 9; i++) await sign();
  const older = await checkpoint();
  for (let i = 0; i < 6; i++) await sign();
  const cp = await checkpoint();
  t.ok(cp.size > older.size, `two checkpoints: ${older.size} then ${cp.size}`);
  for (const seq of [1, Math.ceil(cp.size / 2), cp.size]) {
    const r = await call<{ hashes: Buffer[]; entryJson: string }>(auditor.audit, 'GetInclusionProof', {
      seq: String(seq),
      treeSize: String(cp.size),
    });
    const { type: _t, ...entry } = JSON.parse(r.entryJson) as AuditEntry & { type: string };
    const leaf = entryLeafHash(entry);
    t.ok(verifyInclusion(seq - 1, cp.size, leaf, r.hashes, cp.root), `entry ${seq} is in the checkpoint`);
    if (r.hashes.length)
      t.notOk(
        verifyInclusion(seq - 1, cp.size, leaf, [flip(r.hashes[0]!), ...r.hashes.slice(1)], cp.root),
        'a flipped path hash fails',
      );
    t.notOk(
      verifyInclusion(seq - 1, cp.size, entryLeafHash({ ...entry, client: 'mallory' }), r.hashes, cp.root),
      'an edited entry fails',
    );
  }
  const c = await call<{ hashes: Buffer[] }>(auditor.audit, 'GetConsistencyProof', {
    fromSize: String(older.size),
    toSize: String(cp.size),
  });
  t.ok(verifyConsistency(older.size, cp.size, c.hashes, older.root, cp.root), 'the newer checkpoint extends the older');
  t.notOk(verifyConsistency(older.size, cp.size, c.hashes.map(flip), older.root, cp.root), 'a tampered proof fails');
  t.notOk(
    verifyConsistency(older.size, cp.size, c.hashes, flip(older.root), cp.root),
    'against another older root it fails',
  );
  await refused(
    t,
    call(auditor.audit, 'GetInclusionProof', { seq: String(cp.size + 5), treeSize: String(cp.size + 5) }),
    status.INVALID_ARGUMENT,
    'REQUEST_INVALID',
  );
  await refused(t, call(engine.audit, 'GetCheckpoint', { treeSize: '0' }), status.PERMISSION_DENIED, 'NOT_AUTHORIZED');
});

t.test('audit-proof and verify-audit --checkpoint accept the honest log', async (t) => {
  const cp = await checkpoint();
  const noteFile = `${ts.dir}/cp.note`;
  await writeFile(noteFile, cp.note);
  const proof = await script('audit-proof', [
    '--public-key',
    bytesToHex(publicKey()),
    '--checkpoint',
    noteFile,
    '--seq',
    '3',
  ]);
  t.equal(proof.code, 0, `audit-proof proves entry 3: ${proof.out}`);
  t.match(proof.out, /OK: entry 3/);
  const file = `${ts.dir}/all.jsonl`;
  await exportTo(file);
  const v = await script('verify-audit', [file, '--checkpoint', noteFile]);
  t.equal(v.code, 0, `verify-audit --checkpoint: ${v.out}`);
  t.match(v.out, /OK: checkpoint verified/);
});

t.test(
  'a fork shown to two auditors: their checkpoints are inconsistent, verify-audit --previous says so',
  async (t) => {
    await sign();
    const first = await checkpoint(); // auditor 1 keeps this one
    const kept = `${ts.dir}/auditor1.note`;
    await writeFile(kept, first.note);
    // Between runs, the writer rewrites entry 3 with recomputed hashes and deletes the checkpoints
    // from 3 on: the restarted signer has nothing left to compare with (the HSM rollback mark is
    // what closes this; here the auditors catch it).
    await ts.restart(() => rewriteHistory(db, 3, { client: 'mallory' }));
    await sign();
    const forked = await checkpoint(); // auditor 2 gets this one
    const theirs = `${ts.dir}/auditor2.note`;
    await writeFile(theirs, forked.note);
    const file = `${ts.dir}/forked.jsonl`;
    await exportTo(file);
    const alone = await script('verify-audit', [file, '--checkpoint', theirs]);
    t.equal(alone.code, 0, 'the forked export verifies against its own checkpoint');
    const both = await script('verify-audit', [file, '--checkpoint', theirs, '--previous', kept]);
    t.equal(both.code, 1, 'but not as an extension of the checkpoint auditor 1 kept');
    t.match(both.out, /FAILED the checkpoint of size \d+ extends the one of size \d+/);
  },
);

t.test(
  'history rewritten with recomputed hashes while the signer runs: checkpoint refused, signing stops',
  async (t) => {
    for (let i = 0; i < 4; i++) await sign();
    const before = await checkpoint();
    rewriteHistory(db, 2, { reason: 'rewritten' });
    await inconsistent(t, ts.signer.checkpointer.checkpointHead());
    const why = ts.signer.checkpointer.inconsistency!;
    t.ok(
      why && why.range.from <= 2 && why.range.to >= 2,
      `the range that differs is named: ${why?.range.from}..${why?.range.to}`,
    );
    const e = await refused(t, sign(), status.FAILED_PRECONDITION, 'AUDIT_LOG_INCONSISTENT');
    t.equal(e.metadata?.signedSize, String(before.size), 'the refusal names the last signed size');
    t.equal(await healthOf(ts), 'NOT_SERVING', 'health NOT_SERVING');
    t.match(
      await ts.signer.metrics.registry.getSingleMetricAsString('signer_audit_inconsistent'),
      /signer_audit_inconsistent 1/,
    );
    // The writer deleted the notes from 2 on; none was signed since.
    const notes = withDb(db, (d) => d.prepare('SELECT size FROM audit_notes WHERE size >= 2').all());
    t.same(notes, [], `no checkpoint of the rewritten log was signed (the last was size ${before.size})`);
  },
);

t.test('DELETE FROM audit WHERE seq > N on the live database: checkpoint refused, signing stops', async (t) => {
  await ts.restart(); // a fresh checkpointer over the (rewritten, now self-consistent) log
  for (let i = 0; i < 3; i++) await sign();
  const cp = await checkpoint();
  t.equal(await healthOf(ts), 'SERVING');
  const cut = cutTail(db, cp.size - 2);
  t.equal(cut, 2, 'two entries cut');
  await inconsistent(t, ts.signer.checkpointer.checkpointHead());
  t.same(ts.signer.checkpointer.inconsistency?.range, { from: cp.size - 1, to: cp.size }, 'the cut entries are named');
  await refused(t, sign(), status.FAILED_PRECONDITION, 'AUDIT_LOG_INCONSISTENT');
  t.equal(entries(db).length, cp.size - 2, 'nothing was appended after the cut');
});
