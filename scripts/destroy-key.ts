import { call } from '../src/client/client.js';
import { command, runWithClients, toJson } from './lib/cli.js';
import { describe, type WireProposal } from './lib/proposals.js';

const program = command(
  'destroy-key',
  'Destroy a disabled key version in the HSM (C_DestroyObject); irreversible (KeyAdmin.DestroyKeyVersion)',
  'security-admin',
)
  .argument('<key-id>', 'key')
  .requiredOption('--version <n>', 'version to destroy (must be disabled)')
  .requiredOption('--confirm <key-id>', 'repeat the key id to confirm')
  .option(
    '--confirm-swept',
    'EVM keys: confirm the version holds nothing any more (swept to the active address: see sweep-plan)',
  )
  .option('--propose', 'with an admin quorum: propose the destruction (KeyAdmin.ProposeDestroyKeyVersion)')
  .parse();
const opts = program.opts();
await runWithClients(opts, async (clients) => {
  const destroy = {
    keyId: program.args[0],
    version: Number(opts.version),
    confirmKeyId: String(opts.confirm),
    confirmSwept: !!opts.confirmSwept,
  };
  if (opts.propose) {
    const p = await call<WireProposal>(clients.keyAdmin, 'ProposeDestroyKeyVersion', { destroy });
    console.log(opts.json ? toJson(p) : describe(p));
    return;
  }
  const k = await call<Record<string, unknown>>(clients.keyAdmin, 'DestroyKeyVersion', destroy);
  console.log(opts.json ? toJson(k) : `${k.keyId} v${k.version} is ${k.state}`);
});
