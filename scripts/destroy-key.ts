import { call } from '../src/client/client.js';
import { command, runWithClients, toJson } from './lib/cli.js';

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
  .parse();
const opts = program.opts();
await runWithClients(opts, async (clients) => {
  const k = await call<Record<string, unknown>>(clients.keyAdmin, 'DestroyKeyVersion', {
    keyId: program.args[0],
    version: Number(opts.version),
    confirmKeyId: String(opts.confirm),
    confirmSwept: !!opts.confirmSwept,
  });
  console.log(opts.json ? toJson(k) : `${k.keyId} v${k.version} is ${k.state}`);
});
