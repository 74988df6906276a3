/**
 * Verifies an audit export offline (no HSM, database or network): exit 0 when it is intact,
 * 1 with the first problem found, 2 when there is no verdict (unreadable file, usage error).
 * The file is streamed, so its size does not matter. AUDIT_VERIFY_RSS=1 prints the process's
 * peak RSS on stderr.
 */
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import { readFile } from 'node:fs/promises';
import { Command } from 'commander';
import { hexToBytes } from '@noble/hashes/utils.js';
import { formatReport, verifyExport } from '../src/core/audit/verify.js';
import { type WitnessCheck, checkWitnessed, parseWitnessKeys, witnessOptions } from './lib/witnesses.js';

const program = witnessOptions(new Command())
  .name('verify-audit')
  .description('Verify an hsm-signer-audit/1 export (JSONL or CSV) against the audit public keys in its header.\nCompare those keys, and the reported seq range and times, with what you expect.')
  .argument('<FILE>', 'export written by scripts/export-audit.ts')
  .option('--json', 'print the report as JSON for programs instead of text for people')
  .option('--checkpoint <note>', 'a checkpoint note (C2SP, as Audit.GetCheckpoint returns it) to check with --witnesses')
  .option('--origin <origin>', 'the log origin the checkpoint must carry (default: its own)')
  .option('--log-key <base64>', "the log's audit public key for --checkpoint (default: a JSONL export's header keys)")
  // A usage error is no verdict: keep exit 1 for "FAILED".
  .exitOverride((e) => process.exit(e.exitCode === 0 ? 0 : 2))
  .parse();
const [file] = program.args as [string];
const opts = program.opts();
const json = !!opts.json;
const required = Number(opts.witnesses);
if (!Number.isSafeInteger(required) || required < 0) program.error('--witnesses is a number of witnesses');
if (required > 0 && !opts.checkpoint) program.error('--witnesses needs --checkpoint');
let witnessKeys: ReturnType<typeof parseWitnessKeys> = [];
try {
  witnessKeys = parseWitnessKeys(opts.witnessKey as string[]);
} catch (e) {
  program.error((e as Error).message);
}
if (required > witnessKeys.length) program.error(`--witnesses ${required} but ${witnessKeys.length} --witness-key`);

let report;
try {
  if (!(await stat(file)).isFile()) throw Object.assign(new Error('not a file'), { code: 'not a regular file' });
  report = await verifyExport(createInterface({ input: createReadStream(file), crlfDelay: Infinity }));
} catch (e) {
  // No verdict either way: an unreadable file (or a bug) must not look like a tampered export.
  const code = (e as NodeJS.ErrnoException).code;
  const message = code ? `cannot read ${file}: ${code}` : `internal error: ${(e as Error).message}`;
  if (json) process.stdout.write(`${JSON.stringify({ error: message })}\n`);
  else process.stderr.write(`verify-audit: ${message}\n`);
  process.exit(2);
}
let checks: WitnessCheck[] = [];
if (report.ok && opts.checkpoint) {
  let note: string;
  const keys: Uint8Array[] = [];
  try {
    note = await readFile(String(opts.checkpoint), 'utf8');
    if (opts.logKey) keys.push(new Uint8Array(Buffer.from(String(opts.logKey), 'base64')));
    else keys.push(...(await jsonlHeaderKeys(file)));
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    process.stderr.write(`verify-audit: cannot read the checkpoint or header: ${code ?? (e as Error).message}\n`);
    process.exit(2);
  }
  checks = checkWitnessed(note, keys, witnessKeys, required, opts.origin as string | undefined);
}
const ok = report.ok && checks.every((c) => c.ok);
if (json) process.stdout.write(`${JSON.stringify({ ...report, ok, checks })}\n`);
else {
  process.stdout.write(`${formatReport(report)}\n`);
  for (const c of checks) process.stdout.write(`${c.ok ? 'ok    ' : 'FAILED'} ${c.what}\n`);
  if (report.ok && checks.length) process.stdout.write(ok ? 'OK: checkpoint witnessed\n' : 'FAILED: checkpoint witnesses\n');
}
if (process.env.AUDIT_VERIFY_RSS) process.stderr.write(`peak RSS: ${process.resourceUsage().maxRSS} KiB\n`);
process.exitCode = ok ? 0 : 1;

/** The audit keys of a JSONL export's header line (none for CSV: pass --log-key). */
async function jsonlHeaderKeys(path: string): Promise<Uint8Array[]> {
  for await (const line of createInterface({ input: createReadStream(path), crlfDelay: Infinity })) {
    try {
      const h = JSON.parse(line) as { type?: string; auditKeys?: Array<{ publicKey: string }> };
      if (h.type === 'header') return (h.auditKeys ?? []).map((k) => hexToBytes(k.publicKey));
    } catch {
      // not JSONL
    }
    break;
  }
  return [];
}
