/**
 * Verifies a cosigner's own audit log offline, from a copy of its SQLite file (or the live file,
 * read-only): the hash chain from seq 1 (core/audit/chain.ts rules, as the signer's log), then a
 * count of granted and refused shares and the head hash to compare with a copy kept elsewhere.
 * Exit 0 when the chain is intact, 1 with the first problem found, 2 when there is no verdict.
 *
 *   npx tsx scripts/verify-cosigner-audit.ts /var/lib/hsm-signer/cosigner.db
 */
import Database from 'better-sqlite3';
import { Command } from 'commander';
import { type AuditRow, verifyCosignerAudit } from '../src/cosigner/records.js';

const program = new Command()
  .name('verify-cosigner-audit')
  .description("Verify the hash chain of a cosigner's audit log (table cosigner_audit of its SQLite file).")
  .argument('<DB>', "the cosigner's SQLite file (store.sqlite.path), or a copy")
  .option('--json', 'print the entries as JSON lines after the report');
program.parse();
const [file] = program.args as [string];
const { json } = program.opts<{ json?: boolean }>();

let rows: AuditRow[];
try {
  const db = new Database(file, { readonly: true, fileMustExist: true });
  try {
    rows = db.prepare('SELECT * FROM cosigner_audit ORDER BY seq').all() as AuditRow[];
  } finally {
    db.close();
  }
} catch (e) {
  console.error(`cannot read ${file}: ${(e as Error).message}`);
  process.exit(2);
}

const r = verifyCosignerAudit(rows);
if (!r.ok) {
  console.error(`BROKEN at seq ${r.seq}: ${r.problem}`);
  process.exit(1);
}
const count = (kind: string) => r.entries.filter((e) => e.kind === kind).length;
const head = r.entries.at(-1);
console.log(
  `OK: ${r.entries.length} entries (${count('share.granted')} granted, ${count('share.refused')} refused)` +
    (head ? `, head seq ${head.seq} hash ${head.hash}` : ''),
);
if (json) for (const e of r.entries) console.log(JSON.stringify(e));
