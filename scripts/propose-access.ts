import { readFileSync, writeFileSync } from 'node:fs';
import { call } from '../src/client/client.js';
import { accessDiff } from '../src/core/admin/access.js';
import { parseAccessDocument } from '../src/infra/config/access.js';
import { command, runWithClients, toJson } from './lib/cli.js';
import { describe, type WireProposal } from './lib/proposals.js';

const program = command(
  'propose-access',
  'Propose a new access document (clients, roles, pins, request keys, key access) for the admin quorum (KeyAdmin.ProposeAccess, admin role)',
  'security-admin',
)
  .option('--file <access.json>', 'the access document: {"clients": {...}, "keyAccess": {...}} (README "Admin quorum")')
  .option('--current <out.json>', 'write the access document in force to this file (a starting point), propose nothing')
  .parse();
const opts = program.opts();
const out = (s: string) => process.stderr.write(`${s}\n`);
await runWithClients(opts, async (clients) => {
  const inForce = await call<{ version: number; document: string }>(clients.keyAdmin, 'GetAccess', {});
  if (opts.current) {
    writeFileSync(String(opts.current), `${JSON.stringify(JSON.parse(inForce.document || '{}'), null, 2)}\n`);
    out(`access version ${inForce.version} written to ${opts.current}`);
    return;
  }
  if (!opts.file) throw new Error('--file or --current is required');
  const text = readFileSync(String(opts.file), 'utf8');
  // Checked and diffed here first, so a mistake shows before anything is stored.
  const next = parseAccessDocument(text);
  const current = inForce.document ? parseAccessDocument(inForce.document) : null;
  out(`diff against access version ${inForce.version} (- in force, + proposed):`);
  for (const line of accessDiff(current, next)) out(line);
  const p = await call<WireProposal>(clients.keyAdmin, 'ProposeAccess', { document: text });
  if (opts.json) console.log(toJson(p));
  else {
    console.log(describe(p));
    console.log(`  loosens: ${p.loosenings.join('; ') || 'nothing (applies once approved)'}`);
    console.log(`next: each approver runs scripts/approve-policy.ts ${p.id} --admin <name> --admin-key <file>`);
  }
});
