import { readFileSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import { call } from '../src/client/client.js';
import { decodeError } from '../src/client/errors.js';
import { cancelBytes } from '../src/core/admin/share-destroy.js';
import { signerV1 } from '../src/infra/grpc/proto.js';
import { command, runWithClients, toJson } from './lib/cli.js';
import { signWithKeyFile } from './lib/proposals.js';

/**
 * One admin cancels the scheduled destruction of a threshold key version's shares, during the
 * cosigners' delay (README "Destroying threshold shares"). What counts is the admin's signature
 * over the cancel's canonical bytes, which each cosigner checks against its own pinned admins.
 * By default it goes through the signer (KeyAdmin.CancelShareDestroy, with your admin
 * certificate: checked, audited and forwarded to every cosigner). With --cosigner it is sent
 * straight to those cosigners, over a certificate they admit (`cosigner.peers`), for when the
 * signer is down or not trusted. `--print` only prints the signed cancel, for another operator.
 */
const program = command(
  'cancel-share-destroy',
  "Cancel a scheduled share destruction with one admin's signature (KeyAdmin or Cosigner.CancelShareDestroy)",
  'security-admin',
)
  .argument('<key-id>', 'the threshold key')
  .requiredOption('--version <n>', 'the key version ordered destroyed')
  .requiredOption('--proposal <id>', 'the destroy proposal whose order is cancelled (scripts/list-proposals.ts)')
  .requiredOption('--admin <name>', "your name in the cosigners' config admins.members")
  .requiredOption(
    '--admin-key <file>',
    'your private key (PEM: the key of your admin certificate, or your registered key)',
  )
  .option('--cosigner <host:port...>', 'send straight to these cosigners instead of through the signer', [])
  .option('--server-name <name>', "name the cosigners' certificates are checked against", 'localhost')
  .option('--print', 'print the signed cancel as JSON instead of sending it')
  .parse();
const opts = program.opts();
const subject = { keyId: String(program.args[0]), version: Number(opts.version), proposalId: String(opts.proposal) };
const signature = signWithKeyFile(String(opts.adminKey), cancelBytes(subject));
const request = {
  keyId: subject.keyId,
  keyVersion: subject.version,
  proposalId: subject.proposalId,
  admin: String(opts.admin),
  signature,
};
if (opts.print) {
  console.log(toJson({ ...request, signature: signature.toString('base64') }));
  process.exit(0);
}
const cosigners = opts.cosigner as string[];
if (!cosigners.length) {
  await runWithClients(opts, async (clients) => {
    const r = await call<{ restored: string[] }>(clients.keyAdmin, 'CancelShareDestroy', request, 30_000);
    if (opts.json) console.log(toJson(r));
    else console.log(`cancelled on every cosigner (cosigner:share rows that sign again): ${r.restored.join(', ')}`);
  });
  process.exit(0);
}
const creds = grpc.credentials.createSsl(
  readFileSync(String(opts.ca)),
  readFileSync(String(opts.key)),
  readFileSync(String(opts.cert)),
);
const name = String(opts.serverName);
let failed = 0;
const results = await Promise.all(
  cosigners.map(async (address) => {
    const client = new signerV1.Cosigner(address, creds, {
      'grpc.ssl_target_name_override': name,
      'grpc.default_authority': name,
    });
    try {
      const r = await call<{ restored: number }>(client, 'CancelShareDestroy', request, 10_000);
      return { cosigner: address, restored: r.restored };
    } catch (e) {
      failed++;
      const d = decodeError(e as grpc.ServiceError);
      return { cosigner: address, refused: { code: d.code, reason: d.reason ?? '', message: d.message } };
    } finally {
      client.close();
    }
  }),
);
if (opts.json) console.log(toJson(results));
else
  for (const r of results) {
    if ('restored' in r) console.log(`${r.cosigner}: cancelled; ${r.restored} share row(s) sign again`);
    else console.log(`${r.cosigner}: refused (${r.refused.reason}): ${r.refused.message}`);
  }
process.exit(failed ? 1 : 0);
