import { call } from '../src/client/client.js';
import { command, runWithClients, toJson } from './lib/cli.js';

const program = command(
  'disable-key',
  'Disable a key version: it never signs again, its public key stays (KeyAdmin.DisableKeyVersion)',
  'security-admin',
)
  .argument('<key-id>', 'key')
  .requiredOption('--version <n>', 'version to disable')
  .parse();
const opts = program.opts();
await runWithClients(opts, async (clients) => {
  const k = await call<Record<string, unknown>>(clients.keyAdmin, 'DisableKeyVersion', {
    keyId: program.args[0],
    version: Number(opts.version),
  });
  console.log(opts.json ? toJson(k) : `${k.keyId} v${k.version} is ${k.state}`);
});
