/**
 * Verifies an audit export offline (no HSM, database or network): exit 0 when it is intact,
 * 1 with the first problem found, 2 when there is no verdict (unreadable file, usage error).
 * The file is streamed, so its size does not matter. AUDIT_VERIFY_RSS=1 prints the process's
 * peak RSS on stderr.
 */
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import { Command } from 'commander';
import { formatReport, verifyExport } from '../src/core/audit/verify.js';

const program = new Command()
  .name('verify-audit')
  .description('Verify an hsm-signer-audit/1 export (JSONL or CSV) against the audit public keys in its header.\nCompare those keys, and the reported seq range and times, with what you expect.')
  .argument('<FILE>', 'export written by scripts/export-audit.ts')
  .option('--json', 'print the report as JSON for programs instead of text for people')
  // A usage error is no verdict: keep exit 1 for "FAILED".
  .exitOverride((e) => process.exit(e.exitCode === 0 ? 0 : 2))
  .parse();
const [file] = program.args as [string];
const json = !!program.opts().json;

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
process.stdout.write(`${json ? JSON.stringify(report) : formatReport(report)}\n`);
if (process.env.AUDIT_VERIFY_RSS) process.stderr.write(`peak RSS: ${process.resourceUsage().maxRSS} KiB\n`);
process.exitCode = report.ok ? 0 : 1;
