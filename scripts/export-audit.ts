import { once } from 'node:events';
import { createWriteStream } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import type * as grpc from '@grpc/grpc-js';
import { CSV_HEADER, toCsvRow } from '../src/core/audit/csv.js';
import { clientsFrom, command, fail } from './lib/cli.js';

const program = command('export-audit', 'Export the signing log of a period (Audit.ExportLog, auditor role)', 'auditor')
  .option('--from <iso-time>', 'entries at or after this time (default: the first entry)')
  .option('--to <iso-time>', 'entries before this time (default: the newest entry)')
  .option('--format <format>', 'jsonl or csv', 'jsonl')
  .requiredOption('--out <file>', 'where to write the export')
  .parse();
const opts = program.opts();
if (!['jsonl', 'csv'].includes(opts.format)) program.error('--format must be jsonl or csv');
const ts = (s: string | undefined, name: string) => {
  if (s === undefined) return null;
  const ms = Date.parse(s);
  if (Number.isNaN(ms)) program.error(`--${name} is not a time: ${s}`);
  return { seconds: String(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1e6 };
};
const request = { from: ts(opts.from, 'from'), to: ts(opts.to, 'to') };
const clients = clientsFrom(opts);
const out = createWriteStream(String(opts.out));
let records = 0;
try {
  const stream = (
    clients.audit as unknown as { ExportLog(r: object): grpc.ClientReadableStream<{ json: string }> }
  ).ExportLog(request);
  if (opts.format === 'csv') out.write(`${CSV_HEADER}\r\n`);
  // Constant memory: one record at a time, pausing the stream while the file catches up.
  for await (const msg of stream) {
    // The closing checkpoint note has no CSV row: a CSV export gets it beside it, for --checkpoint.
    if (opts.format === 'csv' && msg.json.startsWith('{"type":"note"')) {
      await writeFile(`${opts.out}.note`, (JSON.parse(msg.json) as { note: string }).note);
      process.stderr.write(`export-audit: the checkpoint note it ends under is in ${opts.out}.note\n`);
      continue;
    }
    const line = opts.format === 'csv' ? `${toCsvRow(JSON.parse(msg.json))}\r\n` : `${msg.json}\n`;
    if (!out.write(line)) await once(out, 'drain');
    if (++records % 10_000 === 0) process.stderr.write(`export-audit: ${records} records\n`);
  }
  out.end();
  await once(out, 'finish');
  process.stderr.write(`export-audit: wrote ${records} records to ${opts.out}\n`);
} catch (e) {
  out.destroy();
  fail(e, !!opts.json);
} finally {
  clients.close();
}
