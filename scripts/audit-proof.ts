/**
 * Proves that one entry of the signing log (by seq, or by the request id of a signature) is in a
 * signed checkpoint, without the rest of the log: fetches the entry and its audit path
 * (Audit.GetInclusionProof), recomputes the entry's leaf hash from its content, and checks the
 * path against the checkpoint's signed root. Prints each check; exit 0 when all pass, 1 when one
 * fails, 2 with no verdict (usage, connection).
 *
 *   audit-proof --checkpoint cp.note --public-key <hex> --seq 42
 *   audit-proof --checkpoint cp.note --public-key <hex> --request-id r-1 --export period.jsonl
 */
import { createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';
import { hexToBytes } from '@noble/hashes/utils.js';
import { Command } from 'commander';
import type { AuditEntry } from '../src/core/audit/chain.js';
import { NoteError } from '../src/core/audit/note.js';
import { checkEntryInclusion, openLogCheckpoint } from '../src/core/audit/tlog-verify.js';
import { proofOptions, readNote } from './lib/proof-options.js';
import { ProofSource } from './lib/proofs.js';

const program = proofOptions(
  new Command()
    .name('audit-proof')
    .description("Prove that one signature's audit entry is in a signed checkpoint (RFC 9162 inclusion proof).")
    .requiredOption('--public-key <hex>', 'the audit Ed25519 public key (32 bytes hex), obtained out of band')
    .option('--origin <origin>', "the log origin to require (default: the checkpoint's own)")
    .option('--checkpoint <file>', 'a checkpoint note you keep (default: fetch the latest)')
    .option('--seq <n>', "the entry's seq")
    .option('--request-id <id>', 'the request id of the signature (with --export to find its seq)')
    .option('--export <file>', 'a JSONL export in which to look up --request-id')
    .option('--json', 'print the checks as JSON'),
).exitOverride((e) => process.exit(e.exitCode === 0 ? 0 : 2));
program.parse();
const opts = program.opts();
const source = new ProofSource(opts);

async function seqOf(): Promise<number> {
  if (opts.seq) return Number(opts.seq);
  if (!opts.requestId || !opts.export) program.error('give --seq, or --request-id with --export');
  const lines = createInterface({ input: createReadStream(String(opts.export)), crlfDelay: Infinity });
  let found: number | undefined;
  for await (const line of lines) {
    const r = JSON.parse(line) as { type: string; requestId?: string; kind?: string; decision?: string; seq?: number };
    // The entry that released the signature: a sign the policy allowed.
    if (r.type === 'entry' && r.requestId === opts.requestId && r.decision === 'allowed') found = r.seq;
  }
  if (found === undefined) throw new Error(`no allowed entry with request id ${opts.requestId} in ${opts.export}`);
  return found;
}

try {
  const note = opts.checkpoint ? readNote(String(opts.checkpoint)) : await source.checkpoint();
  const opened = openLogCheckpoint(note, [hexToBytes(String(opts.publicKey))], { origin: opts.origin });
  const cp = opened.checkpoint;
  const seq = await seqOf();
  const { hashes, entryJson } = await source.inclusion(seq, cp.size);
  const { type: _type, ...entry } = JSON.parse(entryJson) as AuditEntry & { type: string };
  const checks = [
    {
      ok: true,
      what: `checkpoint ${cp.origin} size ${cp.size} is signed by the audit key (${opened.cosignatures.length} cosignatures)`,
    },
    { ok: entry.seq === seq, what: `the server returned entry ${seq}` },
    ...checkEntryInclusion(entry, hashes, cp),
  ];
  const ok = checks.every((c) => c.ok);
  if (opts.json) process.stdout.write(`${JSON.stringify({ ok, seq, treeSize: cp.size, entry, checks })}\n`);
  else {
    for (const c of checks) process.stdout.write(`${c.ok ? 'ok    ' : 'FAILED'} ${c.what}\n`);
    process.stdout.write(
      ok
        ? `OK: entry ${seq} (${entry.kind}, request ${entry.requestId ?? '-'}) is in checkpoint size ${cp.size}\n`
        : `FAILED: entry ${seq} is not proved in checkpoint size ${cp.size}\n`,
    );
  }
  process.exitCode = ok ? 0 : 1;
} catch (e) {
  if (e instanceof NoteError) {
    // A checkpoint that does not verify is a verdict: the proof cannot stand on it.
    process.stdout.write(`FAILED: the checkpoint does not verify: ${e.kind}: ${e.message}\n`);
    process.exit(1);
  }
  process.stderr.write(`audit-proof: no verdict: ${(e as Error).message}\n`);
  process.exitCode = 2;
} finally {
  source.close();
}
