import { call } from '../src/client/client.js';
import { command, runWithClients, toJson } from './lib/cli.js';
import { describe, type WireProposal } from './lib/proposals.js';

const program = command('propose-unfreeze', 'Propose lifting a freeze (KeyAdmin.ProposeUnfreeze)', 'security-admin')
  .option('--key <key-id>', 'unfreeze a key')
  .option('--policy <name>', 'unfreeze a policy')
  .parse();
const opts = program.opts();
if (!opts.key === !opts.policy) program.error('give exactly one of --key or --policy');
await runWithClients(opts, async (clients) => {
  const p = await call<WireProposal>(
    clients.keyAdmin,
    'ProposeUnfreeze',
    opts.key ? { keyId: opts.key } : { policy: opts.policy },
  );
  console.log(opts.json ? toJson(p) : describe(p));
});
