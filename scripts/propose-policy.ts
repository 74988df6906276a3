import { readFileSync } from 'node:fs';
import { call } from '../src/client/client.js';
import { command, runWithClients, toJson } from './lib/cli.js';
import { describe, type WireProposal } from './lib/proposals.js';

const program = command(
  'propose-policy',
  'Propose a policy version for the admin quorum to approve (KeyAdmin.ProposePolicy, admin role)',
  'security-admin',
)
  .argument('<name>', 'policy name: 1..64 of [a-z0-9._-]')
  .requiredOption('--file <policy.json>', 'the policy document (schema: README "Policies")')
  .parse();
const opts = program.opts();
await runWithClients(opts, async (clients) => {
  const p = await call<WireProposal>(clients.keyAdmin, 'ProposePolicy', {
    name: program.args[0],
    document: readFileSync(String(opts.file), 'utf8'),
  });
  if (opts.json) console.log(toJson(p));
  else {
    console.log(describe(p));
    console.log(`  loosens: ${p.loosenings.join('; ') || 'nothing (applies once approved)'}`);
    console.log(`next: each approver runs scripts/approve-policy.ts ${p.id} --admin <name> --admin-key <file>`);
  }
});
