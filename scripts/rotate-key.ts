import { call } from '../src/client/client.js';
import { command, runWithClients, toJson } from './lib/cli.js';

const program = command(
  'rotate-key',
  'Rotate a key now: new version in the HSM, the old one verify-only for the overlap (KeyAdmin.RotateKey)',
  'security-admin',
)
  .argument('<key-id>', 'key to rotate')
  .option(
    '--overlap-seconds <n>',
    'how long the previous version stays verify-only (default: the configured overlap)',
    '0',
  )
  .parse();
const opts = program.opts();
await runWithClients(opts, async (clients) => {
  const r = await call<{ active: Record<string, any>; previous: Record<string, any> }>(clients.keyAdmin, 'RotateKey', {
    keyId: program.args[0],
    overlapSeconds: Number(opts.overlapSeconds),
  });
  if (opts.json) console.log(toJson(r));
  else {
    const until = r.previous.retireAt ? new Date(Number(r.previous.retireAt.seconds) * 1000).toISOString() : '-';
    console.log(
      `${r.active.keyId}: v${r.active.version} is active${r.active.evmAddress ? ` (${r.active.evmAddress})` : ''}; v${r.previous.version} verify-only until ${until}`,
    );
  }
});
