/**
 * What each retired EVM key version still has to move, and the unsigned transactions that move
 * it to the key's active address. The signer sees no chain: the operator supplies the balances
 * and nonces (a JSON file, e.g. from a node or an indexer):
 *
 *   [{ "keyId": "hot-1", "version": 1, "chainId": 1, "native": "1000000000000000000",
 *      "tokens": { "0x...": "5000000" }, "nonce": 7 }]
 *
 * The addresses come from the signer (Signer.ListKeys). Each planned transaction is then signed
 * with `sign <key-id> --key-version <n> --evm-tx <unsignedTx>` (a sweep: README "Sweeping a
 * retired key"), broadcast, and the plan run again with fresh balances until every retired
 * version holds nothing; only then `destroy-key --confirm-swept`.
 */
import { readFileSync } from 'node:fs';
import { call } from '../src/client/client.js';
import { command, runWithClients } from './lib/cli.js';
import { balancesSchema, formatPlans, type ListedVersion, planSweeps } from './lib/sweep-plan.js';

const program = command(
  'sweep-plan',
  "List what retired EVM key versions still hold and the unsigned sweeps to the key's active address",
  'security-admin',
)
  .requiredOption('--balances <file>', 'JSON: [{keyId, version, chainId, native, tokens: {addr: amount}, nonce}]')
  .requiredOption('--max-fee-per-gas <wei>', 'maxFeePerGas of every planned transaction (within the sweep rule)')
  .option('--max-priority-fee-per-gas <wei>', 'maxPriorityFeePerGas of every planned transaction', '1000000000')
  .option('--gas <n>', 'gas limit of the native transfer', '21000')
  .option('--token-gas <n>', 'gas limit of each ERC-20 transfer', '100000')
  .parse();
const opts = program.opts();

const wei = (name: string, v: string) => {
  if (!/^(?:0|[1-9][0-9]*)$/.test(v)) program.error(`${name} must be a decimal integer`);
  return BigInt(v);
};
const fees = {
  maxFeePerGas: wei('--max-fee-per-gas', opts.maxFeePerGas),
  maxPriorityFeePerGas: wei('--max-priority-fee-per-gas', opts.maxPriorityFeePerGas),
  nativeGas: wei('--gas', opts.gas),
  tokenGas: wei('--token-gas', opts.tokenGas),
};
function readBalances(file: string) {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    return program.error(`cannot read balances file ${file}: ${(e as Error).message}`, { exitCode: 2 });
  }
  const parsed = balancesSchema.safeParse(raw);
  if (parsed.success) return parsed.data;
  const lines = parsed.error.issues.map((i) => `  ${i.path.join('.') || '(root)'}: ${i.message}`);
  return program.error(`invalid balances file ${file}:\n${lines.join('\n')}`, { exitCode: 2 });
}
const balances = readBalances(opts.balances);

await runWithClients(opts, async (clients) => {
  const { keys } = await call<{ keys: ListedVersion[] }>(clients.signer, 'ListKeys', {});
  const plans = planSweeps(balances, keys, fees);
  console.log(opts.json ? JSON.stringify(plans, null, 2) : formatPlans(plans));
});
