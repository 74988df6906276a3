import { execFile } from 'node:child_process';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import type * as grpc from '@grpc/grpc-js';
import { status } from '@grpc/grpc-js';
import t from 'tap';
import { transfer } from '../harness/evm.js';
import { OPEN_POLICY, startTestSigner } from '../harness/signer.js';
import { repoRoot } from '../harness/token.js';
import { call, nowTimestamp } from '../src/client/client.js';
import { decodeError } from '../src/client/errors.js';
import { verifyExport } from '../src/core/audit/verify.js';

const run = promisify(execFile);
const ts = await startTestSigner({ config: { audit: { checkpointEveryEntries: 5, checkpointEveryMs: 60_000 } } });
t.teardown(() => ts.close());
const engine = ts.as('payment-engine');
const admin = ts.as('security-admin');
const auditor = ts.as('auditor');

await call(admin.keyAdmin, 'CreateKey', { keyId: 'hot-a', algorithm: 'ECDSA_SECP256K1' });
const requestId = randomUUID();
const tx = transfer({ nonce: 3, value: 12345n });
const signed = await call<{ signature: Buffer }>(engine.signer, 'Sign', {
  keyId: 'hot-a',
  requestId,
  clientTime: nowTimestamp(),
  ...tx.payload,
});
await call(engine.signer, 'Sign', { keyId: 'hot-a', requestId, clientTime: nowTimestamp(), ...tx.payload });
await call(engine.signer, 'Sign', {
  keyId: 'hot-a',
  requestId: randomUUID(),
  clientTime: nowTimestamp(),
  ...transfer({ nonce: 3, value: 1n }).payload,
}).catch(() => undefined);
await call(engine.signer, 'Sign', {
  keyId: 'hot-a',
  requestId: randomUUID(),
  clientTime: nowTimestamp(),
  digest: randomBytes(31),
}).catch(() => undefined);
await call(engine.signer, 'SignBatch', {
  batchId: 'b-1',
  keyId: 'hot-a',
  clientTime: nowTimestamp(),
  items: [transfer({ nonce: 10 }).payload, transfer({ nonce: 11 }).payload],
});
await call(admin.keyAdmin, 'SetPolicy', { name: 'open', document: JSON.stringify(OPEN_POLICY) });

async function exportAll(client = auditor): Promise<string[]> {
  const stream = (
    client.audit as unknown as { ExportLog(r: object): grpc.ClientReadableStream<{ json: string }> }
  ).ExportLog({});
  const lines: string[] = [];
  for await (const m of stream) lines.push(m.json);
  return lines;
}

async function* iterate(lines: string[]) {
  yield* lines;
}

t.test('every event is in the log, chained and checkpointed', async (t) => {
  await new Promise((r) => setTimeout(r, 1200)); // one checkpointer tick: a periodic checkpoint
  await call(engine.signer, 'Sign', {
    keyId: 'hot-a',
    requestId: randomUUID(),
    clientTime: nowTimestamp(),
    ...transfer({ nonce: 20 }).payload,
  });
  const lines = await exportAll();
  const report = await verifyExport(iterate(lines));
  t.ok(report.ok, `the export verifies: ${JSON.stringify(report)}`);
  const entries = lines.map((l) => JSON.parse(l)).filter((r) => r.type === 'entry');
  const kinds = entries.map((e) => `${e.kind}:${e.decision}${e.reason ? `:${e.reason}` : ''}`);
  for (const want of [
    'service.start:done',
    'policy.set:done',
    'key.create:done',
    'sign:allowed',
    'sign:allowed:REPLAY',
    'sign:refused:NONCE_ALREADY_SIGNED',
    'sign:refused:PAYLOAD_INVALID',
    'batch:allowed',
  ]) {
    t.ok(kinds.includes(want), `has ${want}`);
  }
  t.equal(
    kinds.filter((k) => k === 'sign:allowed').length,
    4,
    'one entry per signature: two single signs and two batch items',
  );
  const first = entries.find(
    (e) => e.kind === 'sign' && e.requestId === requestId && e.decision === 'allowed' && !e.reason,
  );
  t.equal(
    first.signatureHash,
    createHash('sha256').update(signed.signature).digest('hex'),
    'the entry commits to the signature returned',
  );
  t.same(
    first.intent,
    {
      kind: 'evm',
      chainId: '1',
      nonce: '3',
      to: first.intent.to,
      value: '12345',
      maxFeePerGas: first.intent.maxFeePerGas,
    },
    'the decoded intent',
  );
  t.equal(first.client, 'payment-engine');
  const text = lines.join('\n');
  t.notMatch(text, new RegExp(ts.token.userPin), 'no PIN in the log');
  t.notMatch(text, new RegExp(tx.payload.evmTransaction.unsignedTx.toString('hex')), 'no raw payload in the log');
  const header = JSON.parse(lines[0]!);
  t.equal(header.auditKeys[0].keyId, '_audit');
  const records = lines.map((l) => JSON.parse(l));
  t.ok(records.filter((r) => r.type === 'checkpoint').length >= 2, 'periodic and final checkpoints');
  t.equal(records.at(-2).type, 'checkpoint', 'the entries end with a chain checkpoint');
  t.equal(records.at(-2).seq, entries.at(-1).seq, 'covering the last entry');
  t.equal(records.at(-1).type, 'note', 'the export ends with the tree checkpoint note it ends under');
  t.ok(records.at(-1).size >= entries.at(-1).seq, 'covering the last entry');
});

t.test('only auditors export', async (t) => {
  for (const who of [engine, admin]) {
    const e = await exportAll(who).then(
      () => undefined,
      (e) => e,
    );
    t.equal(decodeError(e).code, status.PERMISSION_DENIED);
    t.equal(decodeError(e).reason, 'NOT_AUTHORIZED');
  }
});

t.test('export-audit and verify-audit scripts, JSONL and CSV', async (t) => {
  const c = ts.pki.files.clients.auditor!;
  const tls = ['--address', ts.address, '--ca', ts.pki.files.caCert, '--cert', c.cert, '--key', c.key];
  const tsx = `${repoRoot}/node_modules/.bin/tsx`;
  for (const format of ['jsonl', 'csv']) {
    const out = `${ts.dir}/audit.${format}`;
    const exp = await run(tsx, ['scripts/export-audit.ts', '--format', format, '--out', out, ...tls], {
      cwd: repoRoot,
    });
    t.match(exp.stderr, /wrote \d+ records/);
    const ok = await run(tsx, ['scripts/verify-audit.ts', out], { cwd: repoRoot });
    t.match(ok.stdout, /^OK: \d+ entries/, `${format}: verifies`);
    const text = await readFile(out, 'utf8');
    t.ok(text.length > 100);
  }
});
