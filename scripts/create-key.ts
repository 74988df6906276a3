import { call } from '../src/client/client.js';
import { command, runWithClients, toJson } from './lib/cli.js';

const program = command(
  'create-key',
  'Generate a key inside the HSM, or a threshold key by DKG on the cosigners (KeyAdmin.CreateKey, admin role)',
  'security-admin',
)
  .argument('<key-id>', 'new key id: 1..64 of [a-z0-9._-]')
  .requiredOption('--algorithm <alg>', 'ECDSA_SECP256K1, ECDSA_P256, ED25519, FROST_ED25519 or FROST_SECP256K1_TR')
  .parse();
const opts = program.opts();
await runWithClients(opts, async (clients) => {
  const key = await call<Record<string, unknown>>(
    clients.keyAdmin,
    'CreateKey',
    { keyId: program.args[0], algorithm: String(opts.algorithm).toUpperCase() },
    120_000,
  );
  if (opts.json) console.log(toJson(key));
  else
    console.log(
      `created ${key.keyId} v${key.version} ${key.algorithm}${key.evmAddress ? ` address ${key.evmAddress}` : ''}`,
    );
});
