import { call } from '../src/client/client.js';
import { command, runWithClients, toJson } from './lib/cli.js';
import { describe, type WireProposal } from './lib/proposals.js';

const program = command('list-proposals', 'List the admin quorum proposals (KeyAdmin.ListProposals)', 'security-admin')
  .option('--all', 'also closed ones (cancelled, activated, failed)')
  .parse();
const opts = program.opts();
await runWithClients(opts, async (clients) => {
  const { proposals } = await call<{ proposals: WireProposal[] }>(clients.keyAdmin, 'ListProposals', {});
  const shown = proposals.filter((p) => opts.all || ['open', 'approved', 'blocked'].includes(p.state));
  if (opts.json) console.log(toJson(shown));
  else for (const p of shown) console.log(describe(p));
});
