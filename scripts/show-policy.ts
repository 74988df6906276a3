import { call } from '../src/client/client.js';
import { command, runWithClients, toJson } from './lib/cli.js';

const program = command(
  'show-policy',
  'Show a policy by name, or the policy governing a key (KeyAdmin.GetPolicy)',
  'security-admin',
)
  .argument('[name]', 'policy name')
  .option('--for-key <key-id>', 'show the policy that governs this key instead')
  .parse();
const opts = program.opts();
const name = program.args[0];
if (!name === !opts.forKey) program.error('give a policy name or --for-key, not both');
await runWithClients(opts, async (clients) => {
  const p = await call<Record<string, any>>(clients.keyAdmin, 'GetPolicy', name ? { name } : { keyId: opts.forKey });
  if (opts.json) console.log(toJson({ ...p, document: JSON.parse(p.document) }));
  else {
    const when = new Date(Number(p.updatedAt?.seconds ?? 0) * 1000).toISOString();
    console.log(`policy ${p.name} version ${p.version}, set ${when} by ${p.updatedBy}`);
    console.log(JSON.stringify(JSON.parse(p.document), null, 2));
  }
});
