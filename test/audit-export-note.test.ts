// The export names the checkpoint it ends under: its last record is the C2SP tree checkpoint
// note covering its last entry (signed on demand when the log has entries beyond the last
// checkpoint), with the proofs that tie the export to it, and verify-audit checks the export
// against that note by default, offline (no --checkpoint file, no server), and reports it.

import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import type * as grpc from '@grpc/grpc-js';
import t from 'tap';
import { entries } from '../harness/audit-adversary.js';
import { transfer } from '../harness/evm.js';
import { startTestSigner } from '../harness/signer.js';
import { repoRoot } from '../harness/token.js';
import { call, nowTimestamp } from '../src/client/client.js';
import type { NoteRecord } from '../src/core/audit/format.js';
import { openLogCheckpoint } from '../src/core/audit/tlog-verify.js';

const ORIGIN = 'test.example/hsm-signer/export';
const run = promisify(execFile);
const ts = await startTestSigner({
  config: {
    audit: { checkpointEveryEntries: 1_000_000, checkpointEveryMs: 3_600_000, origin: ORIGIN },
    rollback: { mark: false },
  },
});
t.teardown(() => ts.close());
const db = `${ts.dir}/signer.db`;
const engine = ts.as('payment-engine');
const auditor = ts.as('auditor');
await call(ts.as('security-admin').keyAdmin, 'CreateKey', { keyId: 'hot-a', algorithm: 'ECDSA_SECP256K1' });
let nonce = 0;
const sign = () =>
  call(engine.signer, 'Sign', {
    keyId: 'hot-a',
    requestId: randomUUID(),
    clientTime: nowTimestamp(),
    ...transfer({ nonce: nonce++, value: 7n }).payload,
  });
const stamp = (iso: string) => {
  const ms = Date.parse(iso);
  return { seconds: String(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1e6 };
};

async function exportTo(file: string, period: { from?: string; to?: string } = {}): Promise<string[]> {
  const req = {
    ...(period.from ? { from: stamp(period.from) } : {}),
    ...(period.to ? { to: stamp(period.to) } : {}),
  };
  const stream = (
    auditor.audit as unknown as { ExportLog(r: object): grpc.ClientReadableStream<{ json: string }> }
  ).ExportLog(req);
  const lines: string[] = [];
  for await (const m of stream) lines.push(m.json);
  await writeFile(file, `${lines.join('\n')}\n`);
  return lines;
}

/** verify-audit with no --checkpoint and no server address: only the file. */
async function verify(file: string, args: string[] = []): Promise<{ code: number; out: string }> {
  try {
    const r = await run(`${repoRoot}/node_modules/.bin/tsx`, ['scripts/verify-audit.ts', file, ...args], {
      cwd: repoRoot,
      env: { ...process.env, SIGNER_ADDRESS: '127.0.0.1:1' },
    });
    return { code: 0, out: r.stdout };
  } catch (e) {
    const x = e as { code: number; stdout: string; stderr: string };
    return { code: x.code, out: x.stdout + x.stderr };
  }
}

const noteOf = (lines: string[]) => JSON.parse(lines.at(-1)!) as NoteRecord;
const publicKey = () => ts.signer.checkpointer.key.publicKey;

t.test('a whole-log export ends with a fresh note over its last entry and verifies alone', async (t) => {
  for (let i = 0; i < 5; i++) await sign();
  await ts.signer.checkpointer.checkpointHead();
  for (let i = 0; i < 3; i++) await sign();
  const file = `${ts.dir}/all.jsonl`;
  const lines = await exportTo(file);
  const last = JSON.parse(lines.at(-3)!) as { type: string; seq: number };
  t.equal(last.type, 'entry');
  const note = noteOf(lines);
  t.equal(note.type, 'note', 'the last record is the checkpoint note');
  t.equal(note.size, last.seq, 'entries beyond the last checkpoint: a fresh note over the last entry');
  const cp = openLogCheckpoint(note.note, [publicKey()], { origin: ORIGIN }).checkpoint;
  t.equal(cp.size, last.seq, 'signed by the audit key, at that size');
  t.same([note.inclusion, note.consistency], [[], []], 'from seq 1 to the note size: no proof needed');
  const r = await verify(file);
  t.equal(r.code, 0, r.out);
  const root = Buffer.from(cp.root).toString('base64');
  t.match(r.out, `checkpoint ${ORIGIN} size ${cp.size} root ${root}`, 'the report names the checkpoint');
  t.match(r.out, /OK: checkpoint verified/);
});

t.test('a period export: the note covers it with an audit path and a consistency proof', async (t) => {
  for (let i = 0; i < 6; i++) await sign();
  const all = entries(db);
  // From the 4th entry to (before) the 4th from the end: neither end is a checkpoint size.
  const from = all[3]!.at;
  const to = all.at(-4)!.at;
  await ts.signer.checkpointer.checkpointHead();
  const file = `${ts.dir}/period.jsonl`;
  const lines = await exportTo(file, { from, to });
  const note = noteOf(lines);
  const first = JSON.parse(lines[1]!) as { seq: number };
  t.ok(first.seq > 1, `starts at seq ${first.seq}`);
  t.ok(note.inclusion.length > 0, 'carries the first entry audit path');
  t.ok(note.consistency.length > 0, `carries a consistency proof up to the note size ${note.size}`);
  const r = await verify(file);
  t.equal(r.code, 0, r.out);
  t.match(r.out, /is a prefix of the signed tree of size/);

  // Tampered proof, or a note swapped for an older one: the export no longer verifies.
  const flip = (h: string) => `${h[0] === '0' ? '1' : '0'}${h.slice(1)}`;
  const bad = { ...note, consistency: [flip(note.consistency[0]!), ...note.consistency.slice(1)] };
  await writeFile(`${ts.dir}/bad.jsonl`, `${[...lines.slice(0, -1), JSON.stringify(bad)].join('\n')}\n`);
  const b = await verify(`${ts.dir}/bad.jsonl`);
  t.equal(b.code, 1, 'a tampered consistency proof fails');
  t.match(b.out, /FAILED/);
  const older = noteOf(await exportTo(`${ts.dir}/older.jsonl`, { to: all[2]!.at }));
  const swapped = { ...note, note: older.note };
  await writeFile(`${ts.dir}/swapped.jsonl`, `${[...lines.slice(0, -1), JSON.stringify(swapped)].join('\n')}\n`);
  t.equal((await verify(`${ts.dir}/swapped.jsonl`)).code, 1, "another size's note under this record fails");
  const after = `${[...lines, lines.at(-2)!].join('\n')}\n`;
  await writeFile(`${ts.dir}/after.jsonl`, after);
  const a = await verify(`${ts.dir}/after.jsonl`);
  t.equal(a.code, 1, 'a record after the note is refused');
  t.match(a.out, /after the closing checkpoint note/);
  t.ok((await readFile(file, 'utf8')).endsWith('\n'));
});
