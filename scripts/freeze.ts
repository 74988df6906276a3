import { call } from '../src/client/client.js';
import { command, runWithClients, toJson } from './lib/cli.js';

const program = command(
  'freeze',
  'Emergency stop: freeze a key or a policy at once, one admin (KeyAdmin.FreezeKey / FreezePolicy); unfreezing needs the quorum (scripts/propose-unfreeze.ts)',
  'security-admin',
)
  .option('--key <key-id>', 'freeze a key')
  .option('--policy <name>', 'freeze a policy')
  .parse();
const opts = program.opts();
if (!opts.key === !opts.policy) program.error('give exactly one of --key or --policy');
await runWithClients(opts, async (clients) => {
  const f = opts.key
    ? await call<Record<string, unknown>>(clients.keyAdmin, 'FreezeKey', { keyId: opts.key })
    : await call<Record<string, unknown>>(clients.keyAdmin, 'FreezePolicy', { name: opts.policy });
  console.log(opts.json ? toJson(f) : `${f.kind} ${f.target} is frozen (by ${f.frozenBy})`);
});
