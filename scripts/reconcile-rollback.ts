// After a store rollback (README, "Store rollback"): records the operator's decision and the lost
// range in the audit log, closes the nonces that may have been signed in the lost range, and
// resets the HSM rollback marks to the database's head. A direct tool with the signer's config
// (HSM PIN file and database), run while the signers are stopped, on purpose: lowering the mark
// is the one act that can reopen a nonce, so it is not an RPC that one admin certificate could
// call remotely, and no signer can release a signature while it runs.
import { Command } from 'commander';
import { loadConfig } from '../src/infra/config/load.js';
import { Hsm } from '../src/infra/hsm/hsm.js';
import { openStore } from '../src/infra/store/open.js';
import { type Fence, parseFence, reconcileRollback } from '../src/signer/audit/reconcile.js';

const opts = new Command()
  .name('reconcile-rollback')
  .description(
    'Accept a store rollback: audit the lost range, close lost nonces, reset the HSM marks (signers stopped)',
  )
  .requiredOption('-c, --config <file>', "the signer's JSON config file")
  .option('--operator <name>', 'who decides (recorded in the audit log)')
  .option('--reason <text>', 'why, e.g. the incident ticket (recorded in the audit log)')
  .option(
    '--fence <account:chain:nonces>',
    'close nonces that may have been signed in the lost range: <key>@v<n>:<chain>:<nonce>[-<last>] (repeatable)',
    (v: string, acc: string[]) => [...acc, v],
    [] as string[],
  )
  .option('--accept-loss', 'confirm: the lost entries are gone and the fences above cover every nonce signed in them')
  .option('--json', 'print the report as JSON')
  .parse()
  .opts<{
    config: string;
    operator?: string;
    reason?: string;
    fence: string[];
    acceptLoss?: boolean;
    json?: boolean;
  }>();

const fail = (msg: string): never => {
  process.stderr.write(`reconcile-rollback: ${msg}\n`);
  process.exit(2);
};
let fences: Fence[] = [];
try {
  fences = opts.fence.map(parseFence);
} catch (e) {
  fail((e as Error).message);
}
const config = loadConfig(opts.config);
Object.assign(process.env, config.hsm.moduleEnv);
const hsm = await Hsm.open({ ...config.hsm, sessions: 1 });
const store = await openStore(config.store);
try {
  const dryRun = !opts.acceptLoss;
  if (!dryRun && (!opts.operator || !opts.reason)) fail('--accept-loss needs --operator and --reason');
  const report = dryRun
    ? await reconcileRollback(hsm, store, { operator: '', reason: '', fences: [], now: new Date(), dryRun: true })
    : await reconcileRollback(hsm, store, { operator: opts.operator!, reason: opts.reason!, fences, now: new Date() });
  const out = {
    rolledBack: report.rolledBack.map((c) => ({
      source: c.source,
      why: c.why,
      markedSize: c.marked.size,
      dbSize: c.dbSize,
    })),
    fenced: report.fenced,
    alreadyClaimed: report.alreadyClaimed,
    resetTo: report.resetTo,
  };
  if (opts.json) process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
  else if (report.rolledBack.length === 0)
    process.stdout.write('no rollback: every mark is contained in the database; nothing to do\n');
  else {
    for (const c of out.rolledBack) {
      process.stdout.write(
        `${c.source}: ${c.why}: signatures were released under ${c.markedSize} entries, the database has ${c.dbSize}\n`,
      );
    }
    if (dryRun)
      process.stdout.write('dry run: nothing changed; see README "Store rollback", then rerun with --accept-loss\n');
    else
      process.stdout.write(
        `fenced ${out.fenced.length} nonce(s); marks reset to size ${out.resetTo!.size}; restart the signers\n`,
      );
  }
  if (dryRun && report.rolledBack.length > 0) process.exitCode = 1;
} finally {
  await hsm.close();
  await store.close();
}
