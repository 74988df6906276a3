import { status } from '@grpc/grpc-js';
import { Interface } from 'ethers';
import t from 'tap';
import type { EvmIntent } from '../src/core/payloads/evm.js';
import { evaluate, evaluateBatch, type SignIntent, type VelocityUsage } from '../src/core/policy/evaluate.js';
import { compilePolicy, PolicyError } from '../src/core/policy/schema.js';
import { tokenMove } from '../src/core/policy/token-limits.js';
import { decideSign, velocityQueries } from '../src/core/replay/guard.js';
import type { ReserveItem, ReserveView } from '../src/core/replay/records.js';
import { statusOf } from '../src/infra/grpc/status.js';

// Per-token velocity (velocity[].tokens) and batch totals (batch.maxTokenTotals): without them a
// token drains at maxCount x evm.tokens.maxAmount per window, whatever its per-call cap.
const ALICE = '0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed';
const USDC = '0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48';
const DAI = '0x6B175474E89094C44Da98b954EedeAC495271d0F';
const usdc = USDC.toLowerCase();
const U = 10n ** 6n;
const GWEI = 10n ** 9n;

const erc20 = new Interface([
  'function transfer(address to, uint256 amount)',
  'function transferFrom(address from, address to, uint256 amount)',
  'function approve(address spender, uint256 amount)',
]);
const data = (method: string, args: unknown[]) => erc20.encodeFunctionData(method, args) as `0x${string}`;

const base = {
  keys: ['hot-*'],
  traffic: 'both',
  payloadKinds: ['evm'],
  freshness: { maxSkewSeconds: 30 },
  evm: {
    chains: ['1'],
    maxValue: '0',
    destinations: { any: true },
    tokens: { [USDC]: { maxAmount: String(1000n * U) }, [DAI]: { maxAmount: String(10n ** 24n) } },
    maxFeePerGas: String(100n * GWEI),
    maxGas: '100000',
  },
  velocity: [{ scope: 'key', windowSeconds: 3600, tokens: { [USDC]: { maxCount: 5, maxAmount: String(2500n * U) } } }],
  batch: { maxItems: 100, maxTotalValue: '0', maxTokenTotals: { [USDC.toLowerCase()]: String(1500n * U) } },
};
const policy = (over: Record<string, unknown> = {}) => compilePolicy({ ...base, ...over }, 'tokens');

function call(token: string, method: string, amount: bigint, traffic: 'hot' | 'batch' = 'hot'): SignIntent {
  const args = method === 'transferFrom' ? [ALICE, ALICE, amount] : [ALICE, amount];
  const evm: EvmIntent = {
    type: 'eip1559',
    chainId: 1n,
    nonce: 0n,
    to: token as `0x${string}`,
    value: 0n,
    data: data(method, args),
    gas: 60_000n,
    maxFeePerGas: 50n * GWEI,
    maxPriorityFeePerGas: GWEI,
  };
  return { client: 'engine', keyId: 'hot-1', traffic, kind: 'evm', evm };
}
const used = (count: number, amount: bigint): VelocityUsage[] => [
  { count, value: 0n, tokens: new Map([[usdc, { count, amount }]]) },
];

// [what happens, intent, usage in the window, expected reason or allow, rule]
const rows: Array<[string, SignIntent, VelocityUsage[], 'allow' | 'VELOCITY_LIMIT', string?]> = [
  ['first transfer in the window', call(USDC, 'transfer', 1000n * U), used(0, 0n), 'allow'],
  ['up to the window amount exactly', call(USDC, 'transfer', 500n * U), used(2, 2000n * U), 'allow'],
  ['one unit over the window amount', call(USDC, 'transfer', 500n * U + 1n), used(2, 2000n * U), 'VELOCITY_LIMIT'],
  ['the sixth call in the window', call(USDC, 'transfer', 1n), used(5, 5n), 'VELOCITY_LIMIT'],
  ['transferFrom counts too', call(USDC, 'transferFrom', 600n * U), used(1, 2000n * U), 'VELOCITY_LIMIT'],
  ['approve counts: the spender can move it', call(USDC, 'approve', 600n * U), used(1, 2000n * U), 'VELOCITY_LIMIT'],
  ['another token has no window limit', call(DAI, 'transfer', 10n ** 20n), used(5, 2500n * U), 'allow'],
  ['usage the store did not report counts as none', call(USDC, 'transfer', 1n), [{ count: 9, value: 0n }], 'allow'],
];

t.test('velocity[].tokens: count and amount per token over the window', async (t) => {
  const p = policy();
  for (const [name, intent, usage, expected] of rows) {
    const d = evaluate(p, intent, usage);
    if (expected === 'allow') {
      t.same(d, { allow: true }, name);
      continue;
    }
    t.equal(d.allow, false, name);
    if (d.allow) continue;
    t.equal(d.reason, expected, `${name}: reason`);
    t.equal(statusOf(d.reason), status.RESOURCE_EXHAUSTED, `${name}: status`);
    t.equal(d.metadata.rule, 'velocity[0].tokens', `${name}: rule`);
    t.equal(d.metadata.token, usdc, `${name}: names the token`);
    t.match(d.message, /policy "tokens", velocity\[0\]\.tokens/, `${name}: message names the rule`);
  }
});

t.test('the store is asked for the limited tokens of each rule', async (t) => {
  t.same(velocityQueries(policy(), 'hot-1', 'engine'), [
    { scope: 'key', subject: 'hot-1', windowSeconds: 3600, tokens: [usdc] },
  ]);
  t.same(tokenMove(call(USDC, 'transfer', 7n).evm), { contract: usdc, amount: 7n });
  t.equal(tokenMove({ ...call(USDC, 'transfer', 7n).evm!, data: '0x' }), undefined, 'no calldata, no token');
});

t.test('batch.maxTokenTotals and the window, across a batch', async (t) => {
  const p = policy();
  const items = (n: number, amount: bigint) => Array.from({ length: n }, () => call(USDC, 'transfer', amount, 'batch'));
  t.same(evaluateBatch(p, items(3, 500n * U), used(0, 0n)), { allow: true }, 'three of 500 = the batch total');
  const over = evaluateBatch(p, items(4, 400n * U), used(0, 0n));
  t.equal(over.allow, false);
  if (!over.allow) {
    t.equal(over.reason, 'BATCH_LIMIT');
    t.equal(statusOf(over.reason), status.PERMISSION_DENIED);
    t.equal(over.metadata.rule, 'batch.maxTokenTotals');
    t.equal(over.metadata.limit, String(1500n * U));
  }
  // Within the batch total, but the window already holds 2000: the items grow the usage one by one.
  const window = evaluateBatch(p, items(3, 300n * U), used(1, 2000n * U));
  t.equal(window.allow, false);
  if (!window.allow) {
    t.equal(window.reason, 'VELOCITY_LIMIT');
    t.equal(window.metadata.index, '1', 'the item that crosses the window total is named');
  }
  const count = evaluateBatch(p, items(3, 1n), used(4, 4n));
  t.equal(!count.allow && count.metadata.index, '1', 'the sixth call of the window is item 1');
});

t.test('schema: token limits are checked like the rest', async (t) => {
  const bad = (over: Record<string, unknown>, line: RegExp) => {
    try {
      policy(over);
      t.fail('expected a PolicyError');
    } catch (e) {
      t.ok(e instanceof PolicyError);
      t.match((e as Error).message, line);
    }
  };
  bad({ velocity: [{ scope: 'key', windowSeconds: 60, tokens: { [USDC]: {} } }] }, /needs maxCount, maxAmount or both/);
  bad({ velocity: [{ scope: 'key', windowSeconds: 60, tokens: { nope: { maxCount: 1 } } }] }, /address/);
  bad(
    { velocity: [{ scope: 'key', windowSeconds: 60, tokens: { [USDC]: { maxAmount: '1', max: 1 } } }] },
    /tokens\.0x[0-9A-Fa-f]{40}\.max: unknown field/,
  );
  bad(
    { batch: { ...base.batch, maxTokenTotals: { [USDC]: '1', [USDC.toLowerCase()]: '2' } } },
    /batch\.maxTokenTotals\..*listed twice/,
  );
  bad({ batch: { ...base.batch, maxTokenTotals: { [USDC]: '-1' } } }, /decimal integer/);
  const p = policy({ velocity: [{ scope: 'client', windowSeconds: 60, tokens: { [USDC]: { maxCount: 2 } } }] });
  t.same(p.velocity[0]!.tokens, new Map([[usdc, { maxCount: 2, maxAmount: null }]]));
});

t.test('a resumed request is checked against the policy of now, not of its first attempt', async (t) => {
  const intent = call(USDC, 'transfer', 900n * U);
  const item: ReserveItem = {
    client: 'engine',
    requestId: 'r1',
    keyId: 'hot-1',
    payloadHash: new Uint8Array(32),
    value: 0n,
    token: { contract: usdc, amount: 900n * U },
  };
  // Its first attempt reserved it (and its usage), then died; the lease expired.
  const view: ReserveView = {
    items: [{ request: { payloadHash: new Uint8Array(32), state: 'pending', leaseExpired: true } }],
    velocity: used(1, 900n * U),
  };
  const before = decideSign(policy(), item, intent, view);
  t.same(before.writes, [{ index: 0, action: 'resume' }], 'under the same policy it resumes');
  t.ok(before.outcome.ok);
  const tightened = policy({ evm: { ...base.evm, tokens: { [USDC]: { maxAmount: String(100n * U) } } } });
  const after = decideSign(tightened, item, intent, view);
  t.same(after.writes, [], 'nothing is written');
  t.equal(!after.outcome.ok && after.outcome.error.reason, 'VALUE_LIMIT', 'refused under the tightened policy');
  const noTokens = policy({ evm: { ...base.evm, tokens: undefined } });
  t.equal(
    (() => {
      const d = decideSign(noTokens, item, intent, view);
      return !d.outcome.ok && d.outcome.error.reason;
    })(),
    'CONTRACT_NOT_ALLOWED',
    'or when the token was removed from the policy',
  );
});
