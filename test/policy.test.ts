import { status } from '@grpc/grpc-js';
import { getBytes, Interface, Transaction, type TransactionLike } from 'ethers';
import t, { type Test } from 'tap';
import { type Reason, SignerError } from '../src/core/errors.js';
import { decodeErc20Call } from '../src/core/payloads/erc20.js';
import { decodeEvmTransaction, type EvmIntent } from '../src/core/payloads/evm.js';
import {
  checkFreshness,
  type Decision,
  evaluate,
  evaluateBatch,
  nativeValue,
  type SignIntent,
  type VelocityUsage,
} from '../src/core/policy/evaluate.js';
import { compilePolicy, findAmbiguities, PolicyError, policyMatches, selectPolicy } from '../src/core/policy/schema.js';
import { statusOf } from '../src/infra/grpc/status.js';

// ---------------------------------------------------------------------------------------------
// The cast: addresses are EIP-55 in intents (as decoded); the policy writes some in lowercase.
const ALICE = '0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed'; // allowed destination
const CAROL = '0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB'; // allowed destination (lowercase below)
const BOB = '0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359'; // not allowed anywhere
const USDC = '0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48'; // listed token
const DAI = '0x6B175474E89094C44Da98b954EedeAC495271d0F'; // a token the policy does not list
const ROUTER = '0x7a250d5630B4cF539739dF2C5dAcb4c659F2488D'; // listed generic contract

const ETH = 10n ** 18n;
const GWEI = 10n ** 9n;
const USDC_UNIT = 10n ** 6n;

const erc20 = new Interface([
  'function transfer(address to, uint256 amount)',
  'function transferFrom(address from, address to, uint256 amount)',
  'function approve(address spender, uint256 amount)',
  'function balanceOf(address owner)',
]);
const transfer = (to: string, amount: bigint) => erc20.encodeFunctionData('transfer', [to, amount]) as `0x${string}`;
const transferFrom = (from: string, to: string, amount: bigint) =>
  erc20.encodeFunctionData('transferFrom', [from, to, amount]) as `0x${string}`;
const approve = (spender: string, amount: bigint) =>
  erc20.encodeFunctionData('approve', [spender, amount]) as `0x${string}`;
const balanceOf = (owner: string) => erc20.encodeFunctionData('balanceOf', [owner]) as `0x${string}`;
const UNKNOWN_SELECTOR_CALL = '0x12345678000000000000000000000000000000000000000000000000000000ff';

/** The hot-wallet policy every row starts from. */
const basePolicy = {
  keys: ['hot-*'],
  traffic: 'hot',
  clients: ['payments'],
  payloadKinds: ['evm'],
  freshness: { maxSkewSeconds: 30 },
  evm: {
    chains: ['1', '8453'],
    maxValue: String(ETH), // 1 ETH per transaction
    destinations: { allow: [ALICE, CAROL.toLowerCase()] },
    tokens: { [USDC.toLowerCase()]: { maxAmount: String(1000n * USDC_UNIT) } }, // 1000 USDC
    contracts: [ROUTER],
    maxFeePerGas: String(100n * GWEI),
    maxPriorityFeePerGas: String(2n * GWEI),
    maxGas: '100000',
  },
};
type RawPolicy = Record<string, unknown> & { evm?: Record<string, unknown> };
const BATCH = { maxItems: 3, maxTotalValue: String((3n * ETH) / 2n), contiguousNonces: true };

/**
 * Top-level fields replace; `evm` fields replace one by one. A field set to undefined is
 * removed (JSON drops it), so `{ evm: undefined }` is "no evm section".
 */
function policyWith(over: RawPolicy = {}, name = 'hot-wallet') {
  const evm = 'evm' in over && over.evm === undefined ? undefined : { ...basePolicy.evm, ...over.evm };
  return compilePolicy(JSON.parse(JSON.stringify({ ...basePolicy, ...over, evm })), name);
}

const baseTx: EvmIntent = {
  type: 'eip1559',
  chainId: 1n,
  nonce: 0n,
  to: ALICE,
  value: ETH / 2n,
  data: '0x',
  gas: 21_000n,
  maxFeePerGas: 50n * GWEI,
  maxPriorityFeePerGas: 1n * GWEI,
};
const baseIntent: SignIntent = {
  client: 'payments',
  keyId: 'hot-1',
  traffic: 'hot',
  kind: 'evm',
  evm: baseTx,
};
type IntentOver = Partial<Omit<SignIntent, 'evm'>> & { evm?: Partial<EvmIntent> };

function intentWith(over: IntentOver = {}): SignIntent {
  const evm = 'evm' in over && over.evm === undefined ? undefined : { ...baseTx, ...over.evm };
  const intent: SignIntent = { ...baseIntent, ...over, evm };
  if (!evm) delete intent.evm;
  return intent;
}
/** An ERC-20 call: to the token contract, no native value, token-sized gas. */
const tokenCall = (token: string, data: `0x${string}`, extra: Partial<EvmIntent> = {}) => ({
  evm: { to: token as `0x${string}`, value: 0n, data, gas: 60_000n, ...extra },
});

type Expected = 'allow' | Reason;

const CODE: Partial<Record<Reason, status>> = {
  VELOCITY_LIMIT: status.RESOURCE_EXHAUSTED,
  STALE_REQUEST: status.FAILED_PRECONDITION,
  FUTURE_REQUEST: status.FAILED_PRECONDITION,
  PAYLOAD_INVALID: status.INVALID_ARGUMENT,
  REQUEST_INVALID: status.INVALID_ARGUMENT,
};

/** Checks the outcome, and for a refusal everything a refusal promises. */
function expectDecision(t: Test, d: Decision, expected: Expected, policy = 'hot-wallet', calldata: string = '0x') {
  if (expected === 'allow') {
    t.same(d, { allow: true }, 'allowed');
    return;
  }
  if (d.allow) {
    t.fail(`expected ${expected}, got allow`);
    return;
  }
  t.equal(d.reason, expected, 'reason');
  t.equal(statusOf(d.reason), CODE[expected] ?? status.PERMISSION_DENIED, 'gRPC status');
  t.equal(d.metadata.policy, policy, 'metadata names the policy');
  t.ok(d.metadata.rule, 'metadata names the rule');
  t.ok(d.message.includes(d.metadata.rule!), 'message names the rule');
  // Calldata is the caller's own, but a refusal must not echo it.
  if (calldata.length > 10) t.notOk(d.message.includes(calldata.slice(10)), 'no calldata echoed');
}

// ---------------------------------------------------------------------------------------------
// [what happens, policy override, intent override, expected]
type Row = [string, RawPolicy, IntentOver, Expected];

const rows: Row[] = [
  ['a plain transfer inside every limit', {}, {}, 'allow'],

  // traffic class
  ['hot request, policy for batch only', { traffic: 'batch', batch: BATCH }, {}, 'TRAFFIC_CLASS_NOT_ALLOWED'],
  ['hot request, policy for both', { traffic: 'both', batch: BATCH }, {}, 'allow'],
  ['batch item, policy for hot only', {}, { traffic: 'batch' }, 'TRAFFIC_CLASS_NOT_ALLOWED'],

  // clients
  ['client not listed', {}, { client: 'reporting' }, 'CLIENT_NOT_ALLOWED'],
  ['clients absent: any client with key access', { clients: undefined }, { client: 'reporting' }, 'allow'],
  ['clients empty: nobody', { clients: [] }, {}, 'CLIENT_NOT_ALLOWED'],

  // payload kinds: raw signing only where listed
  ['raw digest, payloadKinds lists evm only', {}, { kind: 'digest', evm: undefined }, 'RAW_SIGNING_DISABLED'],
  ['raw message, payloadKinds lists evm only', {}, { kind: 'message', evm: undefined }, 'RAW_SIGNING_DISABLED'],
  ['raw digest, listed', { payloadKinds: ['evm', 'digest'] }, { kind: 'digest', evm: undefined }, 'allow'],
  [
    'raw message, digest listed but not message',
    { payloadKinds: ['digest'] },
    { kind: 'message', evm: undefined },
    'RAW_SIGNING_DISABLED',
  ],
  [
    'payloadKinds absent defaults to evm only',
    { payloadKinds: undefined },
    { kind: 'digest', evm: undefined },
    'RAW_SIGNING_DISABLED',
  ],
  ['EVM, no evm section', { evm: undefined }, {}, 'PAYLOAD_KIND_NOT_ALLOWED'],
  [
    'EVM, no evm section even though evm listed',
    { evm: undefined, payloadKinds: ['evm', 'digest'] },
    {},
    'PAYLOAD_KIND_NOT_ALLOWED',
  ],
  ['EVM, evm section but payloadKinds omits evm', { payloadKinds: ['digest'] }, {}, 'PAYLOAD_KIND_NOT_ALLOWED'],

  // chains
  ['chain not listed', {}, { evm: { chainId: 10n } }, 'CHAIN_NOT_ALLOWED'],
  ['second listed chain', {}, { evm: { chainId: 8453n } }, 'allow'],

  // contract creation
  ['contract creation, default', {}, { evm: { to: null, value: 0n, data: '0x6000' } }, 'CONTRACT_NOT_ALLOWED'],
  [
    'contract creation, allowed',
    { evm: { allowContractCreation: true } },
    { evm: { to: null, value: 0n, data: '0x6000' } },
    'allow',
  ],
  [
    'contract creation, allowed but value over maxValue',
    { evm: { allowContractCreation: true } },
    { evm: { to: null, value: ETH + 1n, data: '0x6000' } },
    'VALUE_LIMIT',
  ],

  // fees
  ['maxFeePerGas exactly at the limit', {}, { evm: { maxFeePerGas: 100n * GWEI } }, 'allow'],
  ['maxFeePerGas one wei over', {}, { evm: { maxFeePerGas: 100n * GWEI + 1n } }, 'FEE_LIMIT'],
  ['priority fee exactly at the limit', {}, { evm: { maxPriorityFeePerGas: 2n * GWEI } }, 'allow'],
  ['priority fee one wei over', {}, { evm: { maxPriorityFeePerGas: 2n * GWEI + 1n } }, 'FEE_LIMIT'],
  [
    'priority fee uncapped when the policy sets none',
    { evm: { maxPriorityFeePerGas: undefined } },
    { evm: { maxPriorityFeePerGas: 50n * GWEI } },
    'allow',
  ],
  [
    'legacy gasPrice exactly at maxFeePerGas',
    {},
    { evm: { type: 'legacy', maxFeePerGas: 100n * GWEI, maxPriorityFeePerGas: null } },
    'allow',
  ],
  [
    'legacy gasPrice one wei over maxFeePerGas',
    {},
    { evm: { type: 'legacy', maxFeePerGas: 100n * GWEI + 1n, maxPriorityFeePerGas: null } },
    'FEE_LIMIT',
  ],
  ['gas limit exactly at maxGas', {}, { evm: { gas: 100_000n } }, 'allow'],
  ['gas limit one over maxGas', {}, { evm: { gas: 100_001n } }, 'FEE_LIMIT'],

  // native value
  ['value exactly at maxValue', {}, { evm: { value: ETH } }, 'allow'],
  ['value one wei over maxValue', {}, { evm: { value: ETH + 1n } }, 'VALUE_LIMIT'],
  ['maxValue "0": zero value passes', { evm: { maxValue: '0' } }, { evm: { value: 0n } }, 'allow'],
  ['maxValue "0": one wei refused', { evm: { maxValue: '0' } }, { evm: { value: 1n } }, 'VALUE_LIMIT'],

  // destinations
  ['recipient not in the allow-list', {}, { evm: { to: BOB } }, 'DESTINATION_NOT_ALLOWED'],
  ['allow-list written lowercase, intent checksummed', {}, { evm: { to: CAROL } }, 'allow'],
  ['empty allow-list refuses every recipient', { evm: { destinations: { allow: [] } } }, {}, 'DESTINATION_NOT_ALLOWED'],
  ['any destination', { evm: { destinations: { any: true } } }, { evm: { to: BOB } }, 'allow'],
  [
    'any destination except the deny-list',
    { evm: { destinations: { any: true, deny: [BOB.toLowerCase()] } } },
    { evm: { to: BOB } },
    'DESTINATION_NOT_ALLOWED',
  ],
  [
    'any destination, deny-list not hit',
    { evm: { destinations: { any: true, deny: [BOB] } } },
    { evm: { to: ALICE } },
    'allow',
  ],
  [
    'plain transfer to a listed contract still needs the allow-list',
    {},
    { evm: { to: ROUTER } },
    'DESTINATION_NOT_ALLOWED',
  ],

  // ERC-20 calls to listed tokens
  ['USDC transfer exactly at maxAmount', {}, tokenCall(USDC, transfer(ALICE, 1000n * USDC_UNIT)), 'allow'],
  [
    'USDC transfer one unit over maxAmount',
    {},
    tokenCall(USDC, transfer(ALICE, 1000n * USDC_UNIT + 1n)),
    'VALUE_LIMIT',
  ],
  [
    'USDC transfer to a recipient not in the allow-list',
    {},
    tokenCall(USDC, transfer(BOB, 1n)),
    'DESTINATION_NOT_ALLOWED',
  ],
  [
    'USDC transferFrom to an allowed recipient (from is not a destination)',
    {},
    tokenCall(USDC, transferFrom(BOB, ALICE, 5n)),
    'allow',
  ],
  [
    'USDC transferFrom to a recipient not in the allow-list',
    {},
    tokenCall(USDC, transferFrom(ALICE, BOB, 5n)),
    'DESTINATION_NOT_ALLOWED',
  ],
  ['USDC approve to an allowed spender', {}, tokenCall(USDC, approve(CAROL, 10n)), 'allow'],
  [
    'USDC approve to a spender not in the allow-list',
    {},
    tokenCall(USDC, approve(BOB, 10n)),
    'DESTINATION_NOT_ALLOWED',
  ],
  ['USDC unlimited approve', {}, tokenCall(USDC, approve(ALICE, 2n ** 256n - 1n)), 'VALUE_LIMIT'],
  [
    'USDC transfer, token amount is not native value',
    { evm: { maxValue: '0' } },
    tokenCall(USDC, transfer(ALICE, 5n)),
    'allow',
  ],
  [
    'USDC transfer carrying native value to a token not in the allow-list',
    {},
    tokenCall(USDC, transfer(ALICE, 5n), { value: 1n }),
    'DESTINATION_NOT_ALLOWED',
  ],
  ['USDC transfer with a trailing byte', {}, tokenCall(USDC, `${transfer(ALICE, 5n)}00`), 'PAYLOAD_INVALID'],
  [
    'USDC balanceOf: not a token movement, USDC not in contracts',
    {},
    tokenCall(USDC, balanceOf(ALICE)),
    'CONTRACT_NOT_ALLOWED',
  ],
  [
    'USDC balanceOf when USDC is also a listed contract',
    { evm: { contracts: [ROUTER, USDC] } },
    tokenCall(USDC, balanceOf(ALICE)),
    'allow',
  ],
  [
    'USDC listed as contract too: token limits still apply to transfers',
    { evm: { contracts: [ROUTER, USDC] } },
    tokenCall(USDC, transfer(ALICE, 1000n * USDC_UNIT + 1n)),
    'VALUE_LIMIT',
  ],
  [
    'tokens absent: every ERC-20 transfer refused',
    { evm: { tokens: undefined } },
    tokenCall(USDC, transfer(ALICE, 1n)),
    'CONTRACT_NOT_ALLOWED',
  ],

  // ERC-20 calls to tokens the policy does not list, and other calldata
  ['DAI transfer: token not listed', {}, tokenCall(DAI, transfer(ALICE, 1n)), 'CONTRACT_NOT_ALLOWED'],
  [
    'DAI transfer when DAI is a listed contract: a generic call',
    { evm: { contracts: [ROUTER, DAI] } },
    tokenCall(DAI, transfer(BOB, 10n ** 30n)),
    'allow',
  ],
  [
    'unknown selector to a listed contract, not in the allow-list',
    {},
    tokenCall(ROUTER, UNKNOWN_SELECTOR_CALL),
    'allow',
  ],
  [
    'listed contract with native value inside maxValue',
    {},
    tokenCall(ROUTER, UNKNOWN_SELECTOR_CALL, { value: ETH }),
    'allow',
  ],
  ['unknown selector to a contract not listed', {}, tokenCall(BOB, UNKNOWN_SELECTOR_CALL), 'CONTRACT_NOT_ALLOWED'],
  [
    'calldata to an allowed destination that is not a listed contract',
    {},
    tokenCall(ALICE, '0xdeadbeef'),
    'CONTRACT_NOT_ALLOWED',
  ],
  [
    'contracts absent: no calldata anywhere',
    { evm: { contracts: undefined } },
    tokenCall(ROUTER, UNKNOWN_SELECTOR_CALL),
    'CONTRACT_NOT_ALLOWED',
  ],

  // order: the earliest broken rule is the one reported
  ['wrong chain and over value: chain first', {}, { evm: { chainId: 10n, value: ETH + 1n } }, 'CHAIN_NOT_ALLOWED'],
  ['over fee and over value: fee first', {}, { evm: { gas: 100_001n, value: ETH + 1n } }, 'FEE_LIMIT'],
  ['over value and bad recipient: value first', {}, { evm: { to: BOB, value: ETH + 1n } }, 'VALUE_LIMIT'],
  [
    'bad client and raw digest: client first',
    {},
    { client: 'x', kind: 'digest', evm: undefined },
    'CLIENT_NOT_ALLOWED',
  ],
];

t.test('evaluate: one row per rule and boundary', async (t) => {
  for (const [what, policyOver, intentOver, expected] of rows) {
    t.test(what, async (t) => {
      const intent = intentWith(intentOver);
      expectDecision(t, evaluate(policyWith(policyOver), intent, []), expected, 'hot-wallet', intent.evm?.data);
    });
  }
});

t.test('evaluate: refusals carry the numbers and the rule', async (t) => {
  const p = policyWith();
  const over = evaluate(p, intentWith({ evm: { value: 2n * ETH } }), []);
  t.match(over, {
    allow: false,
    message: /^value 2000000000000000000 wei exceeds the policy limit 1000000000000000000 /,
    metadata: { policy: 'hot-wallet', rule: 'evm.maxValue', limit: String(ETH) },
  });
  const token = evaluate(p, intentWith(tokenCall(USDC, transfer(ALICE, 1000n * USDC_UNIT + 1n))), []);
  t.match(token, {
    message: /amount 1000000001 exceeds the policy limit 1000000000 for token/,
    metadata: { rule: 'evm.tokens', token: USDC },
  });
  const chain = evaluate(p, intentWith({ evm: { chainId: 10n } }), []);
  t.match(chain, { message: /chain 10 is not allowed; the policy allows chains 1, 8453/ });
  const dest = evaluate(p, intentWith({ evm: { to: BOB } }), []);
  t.match(dest, { metadata: { rule: 'evm.destinations.allow', destination: BOB } });
  const gas = evaluate(
    p,
    intentWith({ evm: { type: 'legacy', maxFeePerGas: 101n * GWEI, maxPriorityFeePerGas: null } }),
    [],
  );
  t.match(gas, { message: /^gasPrice 101000000000 wei exceeds the policy limit 100000000000/ });
});

t.test('evaluate: caller contract violations throw rather than decide', async (t) => {
  const p = policyWith({ velocity: [{ scope: 'key', windowSeconds: 60, maxCount: 1 }] });
  t.throws(() => evaluate(p, intentWith(), []), /expected 1 velocity usages, got 0/);
  const noTx: SignIntent = { ...baseIntent, evm: undefined };
  t.throws(() => evaluate(policyWith(), noTx, []), /must carry its decoded transaction/);
});

// ---------------------------------------------------------------------------------------------
// [what happens, velocity rules, usage already reserved (one per rule), intent override, expected]
type VelocityRow = [string, object[], VelocityUsage[], IntentOver, Expected];
const perKeyCount = { scope: 'key', windowSeconds: 3600, maxCount: 10 };
const perClientValue = { scope: 'client', windowSeconds: 86400, maxValue: String(2n * ETH) };

const velocityRows: VelocityRow[] = [
  ['per key: the 10th of 10 signatures', [perKeyCount], [{ count: 9, value: 0n }], {}, 'allow'],
  ['per key: the 11th of 10 signatures', [perKeyCount], [{ count: 10, value: 0n }], {}, 'VELOCITY_LIMIT'],
  [
    'per client: value lands exactly on the limit',
    [perClientValue],
    [{ count: 3, value: (3n * ETH) / 2n }],
    { evm: { value: ETH / 2n } },
    'allow',
  ],
  [
    'per client: one wei over the limit',
    [perClientValue],
    [{ count: 3, value: (3n * ETH) / 2n }],
    { evm: { value: ETH / 2n + 1n } },
    'VELOCITY_LIMIT',
  ],
  [
    'per client: count unlimited when only value is capped',
    [perClientValue],
    [{ count: 1_000_000, value: 0n }],
    {},
    'allow',
  ],
  [
    'both limits in one rule: count trips',
    [{ scope: 'key', windowSeconds: 60, maxCount: 1, maxValue: String(ETH) }],
    [{ count: 1, value: 0n }],
    {},
    'VELOCITY_LIMIT',
  ],
  [
    'second rule trips while the first passes',
    [perKeyCount, perClientValue],
    [
      { count: 0, value: 0n },
      { count: 0, value: 2n * ETH },
    ],
    {},
    'VELOCITY_LIMIT',
  ],
  [
    'raw digest counts but moves no value',
    [{ scope: 'key', windowSeconds: 60, maxCount: 5, maxValue: '0' }],
    [{ count: 4, value: 0n }],
    { kind: 'digest', evm: undefined },
    'allow',
  ],
  [
    'raw digest still counts',
    [{ scope: 'key', windowSeconds: 60, maxCount: 5 }],
    [{ count: 5, value: 0n }],
    { kind: 'digest', evm: undefined },
    'VELOCITY_LIMIT',
  ],
  [
    'token transfer moves no native value',
    [{ scope: 'key', windowSeconds: 60, maxValue: '0' }],
    [{ count: 0, value: 0n }],
    tokenCall(USDC, transfer(ALICE, 5n)),
    'allow',
  ],
  [
    'velocity comes after the static rules',
    [perKeyCount],
    [{ count: 10, value: 0n }],
    { evm: { to: BOB } },
    'DESTINATION_NOT_ALLOWED',
  ],
];

t.test('evaluate: velocity', async (t) => {
  for (const [what, velocity, usage, intentOver, expected] of velocityRows) {
    t.test(what, async (t) => {
      const p = policyWith({ payloadKinds: ['evm', 'digest'], velocity });
      expectDecision(t, evaluate(p, intentWith(intentOver), usage), expected);
    });
  }
  const p = policyWith({ velocity: [perKeyCount, perClientValue] });
  t.match(
    evaluate(p, intentWith(), [
      { count: 10, value: 0n },
      { count: 0, value: 0n },
    ]),
    {
      metadata: { rule: 'velocity[0]', scope: 'key', windowSeconds: '3600', limit: '10' },
    },
  );
  t.match(
    evaluate(p, intentWith(), [
      { count: 0, value: 0n },
      { count: 0, value: 2n * ETH },
    ]),
    {
      metadata: { rule: 'velocity[1]', scope: 'client', windowSeconds: '86400' },
    },
  );
});

// ---------------------------------------------------------------------------------------------
t.test('checkFreshness: both sides and the exact boundary', async (t) => {
  const p = policyWith(); // maxSkewSeconds 30
  const now = new Date('2025-01-01T00:00:00.000Z');
  const at = (ms: number) => new Date(now.getTime() + ms);
  const table: [string, Date, Expected][] = [
    ['same instant', now, 'allow'],
    ['exactly 30s behind', at(-30_000), 'allow'],
    ['30.001s behind', at(-30_001), 'STALE_REQUEST'],
    ['exactly 30s ahead', at(30_000), 'allow'],
    ['30.001s ahead', at(30_001), 'FUTURE_REQUEST'],
    ['an hour behind', at(-3_600_000), 'STALE_REQUEST'],
    ['not a time at all', new Date(Number.NaN), 'REQUEST_INVALID'],
  ];
  for (const [what, clientTime, expected] of table) {
    t.test(what, async (t) => expectDecision(t, checkFreshness(p, clientTime, now), expected));
  }
  t.match(checkFreshness(p, at(-31_000), now), {
    message: /31s behind the server clock; the limit is 30s/,
    metadata: { rule: 'freshness.maxSkewSeconds', maxSkewSeconds: '30' },
  });
  t.throws(() => checkFreshness(p, now, new Date(Number.NaN)), /now is not a valid Date/);
});

// ---------------------------------------------------------------------------------------------
// Payouts: batch-only policy, 3 items, 1.5 ETH in total, contiguous nonces, and a per-key
// velocity rule of 5 signatures / 2 ETH an hour.
const payoutPolicy = (batch: object = {}) =>
  policyWith(
    {
      keys: ['payout-*'],
      traffic: 'batch',
      batch: { ...BATCH, ...batch },
      velocity: [{ scope: 'key', windowSeconds: 3600, maxCount: 5, maxValue: String(2n * ETH) }],
    },
    'payouts',
  );
const item = (nonce: bigint, over: Partial<EvmIntent> = {}) =>
  intentWith({ keyId: 'payout-1', traffic: 'batch', evm: { nonce, ...over } });
const half = ETH / 2n;
const nothingUsed = [{ count: 0, value: 0n }];

// [what happens, batch override, items, usage, expected, failing index]
type BatchRow = [string, object, SignIntent[], VelocityUsage[], Expected, number?];
const batchRows: BatchRow[] = [
  ['three items inside every limit', {}, [item(0n), item(1n), item(2n)], nothingUsed, 'allow'],
  ['one item more than maxItems', {}, [item(0n), item(1n), item(2n), item(3n)], nothingUsed, 'BATCH_LIMIT'],
  [
    'total value exactly maxTotalValue',
    {},
    [item(0n, { value: ETH }), item(1n, { value: half })],
    nothingUsed,
    'allow',
  ],
  [
    'total value one wei over',
    {},
    [item(0n, { value: ETH }), item(1n, { value: half + 1n })],
    nothingUsed,
    'BATCH_LIMIT',
  ],
  [
    'second item to a recipient not allowed',
    {},
    [item(0n), item(1n, { to: BOB }), item(2n)],
    nothingUsed,
    'DESTINATION_NOT_ALLOWED',
    1,
  ],
  [
    'velocity count reached by the third item',
    {},
    [item(0n), item(1n), item(2n)],
    [{ count: 3, value: 0n }],
    'VELOCITY_LIMIT',
    2,
  ],
  [
    'velocity count exactly reached by the last item',
    {},
    [item(0n), item(1n), item(2n)],
    [{ count: 2, value: 0n }],
    'allow',
  ],
  [
    'velocity value crossed by the third item',
    {},
    [item(0n), item(1n), item(2n)],
    [{ count: 0, value: ETH }],
    'VELOCITY_LIMIT',
    2,
  ],
  [
    'velocity value exactly reached by the last item',
    {},
    [item(0n), item(1n), item(2n)],
    [{ count: 0, value: half }],
    'allow',
  ],
  ['empty batch', {}, [], nothingUsed, 'REQUEST_INVALID'],
];

t.test('evaluateBatch', async (t) => {
  for (const [what, batchOver, items, usage, expected, index] of batchRows) {
    t.test(what, async (t) => {
      const before = JSON.stringify(usage, (_, v) => (typeof v === 'bigint' ? String(v) : v));
      const d = evaluateBatch(payoutPolicy(batchOver), items, usage);
      expectDecision(t, d, expected, 'payouts');
      if (index !== undefined) {
        t.equal(!d.allow && d.metadata.index, String(index), 'names the failing item');
        t.match(!d.allow && d.message, new RegExp(`^batch item ${index}: `));
      }
      const after = JSON.stringify(usage, (_, v) => (typeof v === 'bigint' ? String(v) : v));
      t.equal(after, before, 'usage passed in is not modified');
    });
  }
  t.test('a batch under a hot-only policy', async (t) => {
    const d = evaluateBatch(policyWith(), [intentWith({ traffic: 'batch' })], []);
    expectDecision(t, d, 'TRAFFIC_CLASS_NOT_ALLOWED');
  });
  t.test('items must be batch traffic (a wiring bug, not a decision)', async (t) => {
    t.throws(() => evaluateBatch(payoutPolicy(), [intentWith({ keyId: 'payout-1' })], nothingUsed));
  });
  t.match(evaluateBatch(payoutPolicy(), [item(0n), item(1n), item(2n), item(3n)], nothingUsed), {
    message: /^batch of 4 items exceeds the policy limit 3 /,
    metadata: { rule: 'batch.maxItems', limit: '3' },
  });
});

t.test('nativeValue', async (t) => {
  t.equal(nativeValue(intentWith({ evm: { value: 7n } })), 7n);
  t.equal(nativeValue(intentWith(tokenCall(USDC, transfer(ALICE, 5n)))), 0n);
  t.equal(nativeValue(intentWith({ kind: 'digest', evm: undefined })), 0n);
});

// ---------------------------------------------------------------------------------------------
t.test('transactions built by ethers, decoded by decodeEvmTransaction', async (t) => {
  const fromEthers = (tx: TransactionLike, over: IntentOver = {}): SignIntent => ({
    ...intentWith(over),
    evm: { ...decodeEvmTransaction(getBytes(Transaction.from(tx).unsignedSerialized)).intent },
  });
  const eip1559 = {
    type: 2,
    chainId: 1,
    nonce: 3,
    gasLimit: 65_000,
    maxFeePerGas: 30n * GWEI,
    maxPriorityFeePerGas: GWEI,
  };
  const p = policyWith();
  const usdcTransfer = (amount: bigint) =>
    fromEthers({
      ...eip1559,
      to: USDC.toLowerCase(),
      value: 0,
      data: erc20.encodeFunctionData('transfer', [CAROL, amount]),
    });
  expectDecision(t, evaluate(p, usdcTransfer(250n * USDC_UNIT), []), 'allow');
  expectDecision(t, evaluate(p, usdcTransfer(1001n * USDC_UNIT), []), 'VALUE_LIMIT');

  const legacy = (gasPrice: bigint, to = ALICE) =>
    fromEthers({ type: 0, chainId: 8453, nonce: 0, to, value: half, gasLimit: 21_000, gasPrice });
  expectDecision(t, evaluate(p, legacy(100n * GWEI), []), 'allow');
  expectDecision(t, evaluate(p, legacy(100n * GWEI + 1n), []), 'FEE_LIMIT');
  expectDecision(t, evaluate(p, legacy(GWEI, BOB), []), 'DESTINATION_NOT_ALLOWED');
});

// ---------------------------------------------------------------------------------------------
t.test('decodeErc20Call', async (t) => {
  t.equal(decodeErc20Call('0x'), null, 'empty calldata is not a token call');
  t.equal(decodeErc20Call('0x1234'), null, 'shorter than a selector');
  t.equal(decodeErc20Call(balanceOf(ALICE)), null, 'other ERC-20 methods are not token movements');
  t.equal(decodeErc20Call(UNKNOWN_SELECTOR_CALL), null, 'unknown selector');
  t.same(decodeErc20Call(transfer(ALICE.toLowerCase(), 5n)), { method: 'transfer', recipient: ALICE, amount: 5n });
  t.same(decodeErc20Call(transferFrom(BOB, CAROL, 6n)), { method: 'transferFrom', recipient: CAROL, amount: 6n });
  t.same(decodeErc20Call(approve(ROUTER, 7n)), { method: 'approve', recipient: ROUTER, amount: 7n });

  const good = transfer(ALICE, 5n);
  const dirty = `0x${good.slice(2, 10)}${'ff'.repeat(12)}${good.slice(34)}` as const;
  const bad: [string, `0x${string}`][] = [
    ['trailing byte', `${good}00`],
    ['truncated amount', good.slice(0, -2) as `0x${string}`],
    ['selector only', '0xa9059cbb'],
    ['dirty address padding', dirty],
    ['odd-length hex', `${good}0`],
  ];
  for (const [what, data] of bad) {
    t.test(what, async (t) => {
      try {
        decodeErc20Call(data);
        t.fail('expected PAYLOAD_INVALID');
      } catch (e) {
        t.type(e, SignerError);
        t.match(e, { reason: 'PAYLOAD_INVALID' });
        t.equal(statusOf((e as SignerError).reason), status.INVALID_ARGUMENT);
        const args = data.slice(10, 40);
        if (args) t.notOk((e as Error).message.includes(args), 'calldata not echoed');
      }
    });
  }
});

// ---------------------------------------------------------------------------------------------
t.test('compilePolicy: parsed once into bigints and lowercase sets', async (t) => {
  const p = policyWith({ payloadKinds: undefined });
  t.equal(p.name, 'hot-wallet');
  t.same([...p.payloadKinds], ['evm'], 'payloadKinds defaults to evm only');
  t.same(p.clients && [...p.clients], ['payments']);
  t.equal(p.maxSkewSeconds, 30);
  t.same([...p.evm!.chains], [1n, 8453n]);
  t.equal(p.evm!.maxValue, ETH);
  t.same(p.evm!.destinations, { kind: 'allow', allow: new Set([ALICE.toLowerCase(), CAROL.toLowerCase()]) });
  t.same([...p.evm!.tokens], [[USDC.toLowerCase(), { maxAmount: 1000n * USDC_UNIT }]]);
  t.same([...p.evm!.contracts], [ROUTER.toLowerCase()]);
  t.equal(p.evm!.allowContractCreation, false, 'contract creation off by default');
  t.equal(p.evm!.allowFeeBump, false, 'fee bump off by default');
  t.equal(p.evm!.maxPriorityFeePerGas, 2n * GWEI);
  t.equal(p.batch, null);
  t.same(p.velocity, []);
  t.equal(policyWith({ evm: undefined }).evm, null);
  const b = payoutPolicy();
  t.same(b.batch, { maxItems: 3, maxTotalValue: (3n * ETH) / 2n, contiguousNonces: true, maxTokenTotals: new Map() });
  t.same(b.velocity, [{ scope: 'key', windowSeconds: 3600, maxCount: 5, maxValue: 2n * ETH, tokens: new Map() }]);
});

// [what is wrong, policy override, the line the error must contain]
const schemaRows: [string, RawPolicy, string][] = [
  ['unknown top-level field', { maxValue: '1' }, 'maxValue: unknown field'],
  ['misspelt evm field', { evm: { maxvalue: '1' } }, 'evm.maxvalue: unknown field'],
  [
    'unknown field in a token entry',
    { evm: { tokens: { [USDC]: { maxAmount: '1', decimals: 6 } } } },
    `evm.tokens.${USDC}.decimals: unknown field`,
  ],
  ['fractional wei', { evm: { maxValue: '1.5' } }, 'evm.maxValue: expected a decimal integer'],
  ['hex amount', { evm: { maxGas: '0x10' } }, 'evm.maxGas: expected a decimal integer'],
  ['leading zero', { evm: { maxFeePerGas: '010' } }, 'evm.maxFeePerGas: expected a decimal integer'],
  ['JSON number for wei', { evm: { maxValue: 1 } }, 'evm.maxValue: expected a decimal integer string'],
  [
    'negative token amount',
    { evm: { tokens: { [USDC]: { maxAmount: '-1' } } } },
    `evm.tokens.${USDC}.maxAmount: expected a decimal integer`,
  ],
  ['missing maxFeePerGas', { evm: { maxFeePerGas: undefined } }, 'evm.maxFeePerGas:'],
  ['empty chains', { evm: { chains: [] } }, 'evm.chains: expected at least one chain id'],
  ['chain as hex', { evm: { chains: ['0x1'] } }, 'evm.chains[0]: expected a chain id as a positive decimal integer'],
  ['chain 0', { evm: { chains: ['1', '0'] } }, 'evm.chains[1]:'],
  [
    'bad address',
    { evm: { destinations: { allow: ['0x1234'] } } },
    'evm.destinations.allow[0]: expected a 0x-prefixed 20-byte address',
  ],
  [
    'bad EIP-55 checksum',
    { evm: { contracts: [ROUTER.replace('a', 'A')] } },
    'evm.contracts[0]: expected a 0x-prefixed 20-byte address',
  ],
  [
    'bad token address',
    { evm: { tokens: { '0xabc': { maxAmount: '1' } } } },
    'evm.tokens.0xabc: expected a 0x-prefixed 20-byte address',
  ],
  [
    'same token twice in different case',
    { evm: { tokens: { [USDC]: { maxAmount: '1' }, [USDC.toLowerCase()]: { maxAmount: '2' } } } },
    'listed twice',
  ],
  [
    'destinations with neither allow nor any',
    { evm: { destinations: {} } },
    'evm.destinations: expected exactly one of',
  ],
  [
    'destinations with both allow and any',
    { evm: { destinations: { allow: [], any: true } } },
    'evm.destinations: expected exactly one of',
  ],
  [
    'deny-list next to an allow-list',
    { evm: { destinations: { allow: [ALICE], deny: [BOB] } } },
    'evm.destinations.deny: only valid with "any": true',
  ],
  ['any: false', { evm: { destinations: { any: false } } }, 'evm.destinations.any: expected true'],
  ['batch missing when traffic is both', { traffic: 'both' }, 'batch: required when traffic is "both"'],
  ['batch missing when traffic is batch', { traffic: 'batch' }, 'batch: required when traffic is "batch"'],
  ['batch on a hot-only policy', { batch: BATCH }, 'batch: only valid when traffic is "batch" or "both"'],
  [
    'batch maxItems over 10000',
    { traffic: 'both', batch: { ...BATCH, maxItems: 10_001 } },
    'batch.maxItems: expected at most 10000',
  ],
  [
    'velocity rule without limits',
    { velocity: [{ scope: 'key', windowSeconds: 60 }] },
    'velocity[0]: a velocity rule needs maxCount, maxValue, tokens or several',
  ],
  [
    'velocity rule with unknown scope',
    { velocity: [{ scope: 'account', windowSeconds: 60, maxCount: 1 }] },
    'velocity[0].scope:',
  ],
  [
    'velocity window not an integer',
    { velocity: [{ scope: 'key', windowSeconds: 1.5, maxCount: 1 }] },
    'velocity[0].windowSeconds: expected an integer',
  ],
  ['freshness missing', { freshness: undefined }, 'freshness:'],
  ['skew of zero', { freshness: { maxSkewSeconds: 0 } }, 'freshness.maxSkewSeconds: expected at least 1'],
  ['skew over an hour', { freshness: { maxSkewSeconds: 3601 } }, 'freshness.maxSkewSeconds: expected at most 3600'],
  ['no keys', { keys: [] }, 'keys: expected at least one key id or prefix'],
  ['star in the middle of a key pattern', { keys: ['hot-*-eth'] }, 'keys[0]: expected a key id, or a prefix ending'],
  ['unknown payload kind', { payloadKinds: ['evm', 'rsa'] }, 'payloadKinds[1]:'],
  ['unknown traffic class', { traffic: 'warm' }, 'traffic:'],
];

t.test('compilePolicy: every problem names its field', async (t) => {
  for (const [what, over, line] of schemaRows) {
    t.test(what, async (t) => {
      try {
        policyWith(over, 'broken');
        t.fail('expected a PolicyError');
      } catch (e) {
        t.type(e, PolicyError);
        const err = e as PolicyError;
        t.match(err.message, /^invalid policy "broken":/);
        t.ok(err.message.includes(line), `message names the field`, { message: err.message, line });
        t.ok(
          err.issues.some((i) => i.includes(line)),
          'issues list it too',
        );
      }
    });
  }
  t.throws(() => compilePolicy(null, 'x'), PolicyError);
  t.throws(() => compilePolicy('{}', 'x'), PolicyError);
});

// ---------------------------------------------------------------------------------------------
t.test('policyMatches', async (t) => {
  const table: [string, string, boolean][] = [
    ['hot-1', 'hot-1', true],
    ['hot-1', 'hot-10', false],
    ['hot-*', 'hot-10', true],
    ['hot-*', 'hot-', true],
    ['hot-*', 'cold-1', false],
    ['hot-*', 'hot', false],
    ['*', 'anything', true],
  ];
  for (const [pattern, key, expected] of table) {
    t.equal(policyMatches(pattern, key), expected, `${pattern} ${expected ? 'matches' : 'does not match'} ${key}`);
  }
});

t.test('selectPolicy: exact id beats the longest prefix, which beats shorter ones', async (t) => {
  const named = (name: string, keys: string[]) => policyWith({ keys }, name);
  const all = named('everything', ['*']);
  const hot = named('hot', ['hot-*']);
  const hotEth = named('hot-eth', ['hot-eth-*']);
  const one = named('hot-eth-1', ['hot-eth-1', 'legacy-9']);
  const policies = [all, hot, hotEth, one];
  const table: [string, string | undefined][] = [
    ['hot-eth-1', 'hot-eth-1'],
    ['legacy-9', 'hot-eth-1'],
    ['hot-eth-2', 'hot-eth'],
    ['hot-btc-1', 'hot'],
    ['cold-1', 'everything'],
  ];
  for (const [key, expected] of table) t.equal(selectPolicy(policies, key)?.name, expected, key);
  t.equal(selectPolicy([hot, hotEth, one], 'cold-1'), undefined, 'no match: no policy (deny)');
  t.equal(selectPolicy([one, hotEth, hot], 'hot-eth-2')?.name, 'hot-eth', 'order does not matter');
  t.same(findAmbiguities(policies), [], 'distinct patterns are not ambiguous');

  const hot2 = named('hot-too', ['hot-*', 'other']);
  t.same(findAmbiguities([...policies, hot2]), [{ pattern: 'hot-*', policies: ['hot', 'hot-too'] }]);
  t.equal(selectPolicy([...policies, hot2], 'hot-btc-1'), undefined, 'a tie selects nothing');
  t.equal(selectPolicy([...policies, hot2], 'hot-eth-1')?.name, 'hot-eth-1', 'unless a more specific pattern decides');
  t.same(findAmbiguities([named('a', ['k-1', 'k-1'])]), [], 'a pattern repeated within one policy is not a tie');
});
