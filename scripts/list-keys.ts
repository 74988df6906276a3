import { call } from '../src/client/client.js';
import { command, runWithClients, toJson } from './lib/cli.js';

const program = command(
  'list-keys',
  'List keys with versions, states and public keys (Signer.ListKeys)',
  'security-admin',
).parse();
const opts = program.opts();
await runWithClients(opts, async (clients) => {
  const { keys } = await call<{ keys: Array<Record<string, any>> }>(clients.signer, 'ListKeys', {});
  if (opts.json) console.log(toJson(keys));
  else {
    for (const k of keys) {
      const created = new Date(Number(k.createdAt?.seconds ?? 0) * 1000).toISOString();
      const shares = k.threshold
        ? `\t${k.threshold.minSigners}-of-${k.threshold.cosigners.length} on cosigners ${k.threshold.cosigners.join(',')}, epoch ${k.threshold.epoch}`
        : '';
      console.log(
        `${k.keyId}\tv${k.version}\t${k.algorithm}\t${k.state}\t${created}\t${k.evmAddress || Buffer.from(k.publicKey).toString('hex')}${shares}`,
      );
    }
    if (!keys.length) console.log('(no keys)');
  }
});
