import { call } from '../src/client/client.js';
import { command, runWithClients, toJson } from './lib/cli.js';

const program = command(
  'refresh-shares',
  'Re-randomise every cosigner share of a threshold key; the public key and address stay, old shares are destroyed (KeyAdmin.RefreshShares)',
  'security-admin',
)
  .argument('<key-id>', 'threshold key whose active version to refresh')
  .parse();
const opts = program.opts();
await runWithClients(opts, async (clients) => {
  const k = await call<Record<string, any>>(clients.keyAdmin, 'RefreshShares', { keyId: program.args[0] }, 120_000);
  if (opts.json) console.log(toJson(k));
  else
    console.log(
      `${k.keyId} v${k.version}: shares refreshed on cosigners ${k.threshold.cosigners.join(', ')} (epoch ${k.threshold.epoch}); public key unchanged`,
    );
});
