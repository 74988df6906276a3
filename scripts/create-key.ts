import { call } from '../src/client/client.js';
import { command, runWithClients, toJson } from './lib/cli.js';

const program = command('create-key', 'Generate a key inside the HSM (KeyAdmin.CreateKey, admin role)', 'security-admin')
  .argument('<key-id>', 'new key id: 1..64 of [a-z0-9._-]')
  .requiredOption('--algorithm <alg>', 'ECDSA_SECP256K1, ECDSA_P256 or ED25519')
  .parse();
const opts = program.opts();
await runWithClients(opts, async (clients) => {
  const key = await call<Record<string, unknown>>(clients.keyAdmin, 'CreateKey', { keyId: program.args[0], algorithm: String(opts.algorithm).toUpperCase() });
  if (opts.json) console.log(toJson(key));
  else console.log(`created ${key.keyId} v${key.version} ${key.algorithm}${key.evmAddress ? ` address ${key.evmAddress}` : ''}`);
});
