import { call } from '../src/client/client.js';
import { command, runWithClients, toJson } from './lib/cli.js';
import { describe, type WireProposal } from './lib/proposals.js';

const program = command(
  'cancel-proposal',
  'Cancel an open proposal; any one admin may (KeyAdmin.CancelProposal)',
  'security-admin',
)
  .argument('<proposal-id>', 'the proposal')
  .option('--reason <text>', 'why, for the audit log', '')
  .parse();
const opts = program.opts();
await runWithClients(opts, async (clients) => {
  const p = await call<WireProposal>(clients.keyAdmin, 'CancelProposal', {
    proposalId: program.args[0],
    reason: opts.reason,
  });
  console.log(opts.json ? toJson(p) : describe(p));
});
