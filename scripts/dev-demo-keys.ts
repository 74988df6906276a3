// Creates the dev demo keys directly in the token and store, before the signer starts.
import { Command } from 'commander';
import { loadConfig } from '../src/infra/config/load.js';
import type { Algorithm } from '../src/infra/config/schema.js';
import { Hsm } from '../src/infra/hsm/hsm.js';
import { openStore } from '../src/infra/store/open.js';
import { KeyRegistry } from '../src/signer/keys/registry.js';

const DEMO: Array<[string, Algorithm]> = [
  ['hot-secp256k1', 'ecdsa-secp256k1'],
  ['hot-p256', 'ecdsa-p256'],
  ['hot-ed25519', 'ed25519'],
];

const { config: file } = new Command()
  .name('dev-demo-keys')
  .description('Create the demo keys of the dev setup if they are missing (run by scripts/dev-setup.sh)')
  .requiredOption('-c, --config <file>', 'JSON config file')
  .parse()
  .opts<{ config: string }>();
const config = loadConfig(file);
Object.assign(process.env, config.hsm.moduleEnv);
const hsm = await Hsm.open({ ...config.hsm, sessions: 1 });
const store = await openStore(config.store);
try {
  const keys = new KeyRegistry(hsm, store);
  await keys.load();
  const have = new Set(keys.list().map((k) => k.keyId));
  for (const [id, alg] of DEMO) {
    if (have.has(id)) continue;
    await keys.create(id, alg, { client: 'dev-setup' });
    process.stderr.write(`dev-setup: created demo key ${id} (${alg})\n`);
  }
} finally {
  await hsm.close();
  await store.close();
}
