import { createInterface } from 'node:readline/promises';
import { call } from '../src/client/client.js';
import { accessDiff, accessLoosenings } from '../src/core/admin/access.js';
import { proposalBytes } from '../src/core/admin/proposal.js';
import { loosenings } from '../src/core/policy/loosening.js';
import { compilePolicy } from '../src/core/policy/schema.js';
import { parseAccessDocument } from '../src/infra/config/access.js';
import { command, runWithClients, toJson } from './lib/cli.js';
import { describe, lineDiff, pretty, signWithKeyFile, type WireProposal } from './lib/proposals.js';

const program = command(
  'approve-policy',
  'Review a proposal (policy or access diff and loosenings, destroy or unfreeze) and approve it with your admin key (KeyAdmin.ApproveProposal)',
  'security-admin',
)
  .argument('<proposal-id>', 'the proposal (scripts/list-proposals.ts)')
  .requiredOption('--admin <name>', 'your name in the config admins.members')
  .requiredOption(
    '--admin-key <file>',
    'your private key (PEM: the key of your admin certificate, or your registered key)',
  )
  .option('--yes', 'sign without asking (after printing the review)')
  .parse();
const opts = program.opts();
await runWithClients(opts, async (clients) => {
  const { proposals } = await call<{ proposals: WireProposal[] }>(clients.keyAdmin, 'ListProposals', {});
  const p = proposals.find((x) => x.id === program.args[0]);
  if (!p) throw new Error(`no proposal ${program.args[0]}`);
  // The bytes are rebuilt here from what is reviewed below; the server's copy is only compared.
  const bytes = proposalBytes({
    kind: p.kind,
    id: p.id,
    target: p.target,
    baseVersion: p.baseVersion,
    document: p.document,
  });
  if (!Buffer.from(bytes).equals(Buffer.from(p.signingBytes)))
    throw new Error('the server shows other bytes to sign: not signing');
  const out = (s: string) => process.stderr.write(`${s}\n`);
  out(describe(p));
  if (p.kind === 'policy') {
    out(`\ndiff of policy "${p.target}" (- active version ${p.baseVersion}, + proposed):`);
    for (const line of lineDiff(pretty(p.activeDocument), pretty(p.document))) out(line);
    // Worked out here too, from the documents: the server's list is not taken on trust.
    const before = p.activeDocument ? compilePolicy(JSON.parse(p.activeDocument), p.target) : null;
    const mine = loosenings(before, compilePolicy(JSON.parse(p.document), p.target));
    out(
      `\nloosens (${mine.length ? 'waits the delay after approval; any admin can cancel' : 'nothing: applies once approved'}):`,
    );
    for (const l of mine) out(`  - ${l}`);
  } else if (p.kind === 'access') {
    out(`\ndiff of the access document (- in force, + proposed as version ${p.baseVersion + 1}):`);
    const before = p.activeDocument ? parseAccessDocument(p.activeDocument) : null;
    const next = parseAccessDocument(p.document);
    for (const line of accessDiff(before, next)) out(line);
    const mine = accessLoosenings(before, next);
    out(
      `\nloosens (${mine.length ? 'waits the delay after approval; any admin can cancel' : 'nothing: applies once approved'}):`,
    );
    for (const l of mine) out(`  - ${l}`);
  } else if (p.kind === 'destroy-key')
    out(`\nDESTROYS key ${p.target} version ${p.baseVersion} for good: ${p.document}`);
  else out(`\nlifts the freeze of ${p.kind === 'unfreeze-key' ? 'key' : 'policy'} ${p.target}`);
  if (p.state !== 'open' && p.state !== 'approved') throw new Error(`proposal is ${p.state}: nothing to approve`);
  if (!opts.yes) {
    const rl = createInterface({ input: process.stdin, output: process.stderr });
    const answer = await rl.question(`\nsign this approval as ${opts.admin}? type "yes": `);
    rl.close();
    if (answer.trim() !== 'yes') throw new Error('not approved');
  }
  const signature = signWithKeyFile(String(opts.adminKey), bytes);
  const after = await call<WireProposal>(clients.keyAdmin, 'ApproveProposal', {
    proposalId: p.id,
    admin: opts.admin,
    signature,
  });
  if (opts.json) console.log(toJson(after));
  else console.log(describe(after));
});
