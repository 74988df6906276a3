import { readFileSync } from 'node:fs';
import { call } from '../src/client/client.js';
import { command, runWithClients, toJson } from './lib/cli.js';

const program = command(
  'set-policy',
  'Create or replace a named signing policy (KeyAdmin.SetPolicy, admin role)',
  'security-admin',
)
  .argument('<name>', 'policy name: 1..64 of [a-z0-9._-]')
  .requiredOption('--file <policy.json>', 'the policy document (schema: README "Policies")')
  .parse();
const opts = program.opts();
await runWithClients(opts, async (clients) => {
  const p = await call<Record<string, unknown>>(clients.keyAdmin, 'SetPolicy', {
    name: program.args[0],
    document: readFileSync(String(opts.file), 'utf8'),
  });
  if (opts.json) console.log(toJson(p));
  else console.log(`policy ${p.name} is now version ${p.version}`);
});
