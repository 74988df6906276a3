import { Interface } from 'ethers';
import t from 'tap';
import { planSweeps } from '../scripts/lib/sweep-plan.js';
import type { EvmIntent } from '../src/core/payloads/evm.js';
import { evaluate } from '../src/core/policy/evaluate.js';
import { compilePolicy, PolicyError } from '../src/core/policy/schema.js';
import { decideSweep, rotationSafe, sweepPolicy } from '../src/core/policy/sweep.js';

const erc20 = new Interface([
  'function transfer(address to, uint256 amount)',
  'function transferFrom(address from, address to, uint256 amount)',
]);
const ACTIVE = '0x1111111111111111111111111111111111111111';
const TOKEN = '0x2222222222222222222222222222222222222222';
const BOB = '0x0000000000000000000000000000000000000B0B';
const GWEI = 10n ** 9n;

const base = {
  keys: ['k'],
  traffic: 'hot',
  freshness: { maxSkewSeconds: 60 },
  evm: {
    chains: ['1'],
    maxValue: '0',
    destinations: { allow: [BOB] },
    maxFeePerGas: (1000n * GWEI).toString(),
    maxGas: '1000000',
  },
};
const sweep = {
  chains: ['1', '10'],
  tokens: [TOKEN],
  maxFeePerGas: (100n * GWEI).toString(),
  maxPriorityFeePerGas: (2n * GWEI).toString(),
  maxGas: '150000',
};
const policy = compilePolicy({ ...base, sweep }, 'p');

const tx = (over: Partial<EvmIntent> = {}): EvmIntent => ({
  type: 'eip1559',
  chainId: 1n,
  nonce: 0n,
  to: ACTIVE,
  value: 10n ** 20n,
  data: '0x',
  gas: 21000n,
  maxFeePerGas: 50n * GWEI,
  maxPriorityFeePerGas: GWEI,
  ...over,
});
const call = (name: 'transfer' | 'transferFrom', args: unknown[]) =>
  erc20.encodeFunctionData(name, args) as `0x${string}`;

t.test('the sweep rule: strict, every problem names its field', async (t) => {
  const issues = (s: unknown) => {
    try {
      compilePolicy({ ...base, sweep: s }, 'p');
      return [];
    } catch (e) {
      t.type(e, PolicyError);
      return (e as PolicyError).issues;
    }
  };
  t.match(issues({ ...sweep, maxFeePerGas: undefined }), [/^sweep\.maxFeePerGas: /]);
  t.match(issues({ ...sweep, maxValue: '1' }), [/^sweep\.maxValue: unknown field/]);
  t.match(issues({ ...sweep, tokens: ['0x12'] }), [/^sweep\.tokens\[0\]: expected a 0x-prefixed/]);
  t.match(issues({ ...sweep, tokens: [TOKEN, TOKEN.toUpperCase().replace('0X', '0x')] }), [/listed twice/]);
  t.match(issues({ ...sweep, chains: [] }), [/^sweep\.chains: expected at least one chain id/]);
  t.same(issues({ chains: ['1'], maxFeePerGas: '1', maxGas: '21000' }), [], 'tokens are optional');
  t.equal(compilePolicy(base, 'p').sweep, null, 'absent: null');
});

t.test('decideSweep: only the two shapes, to the active address, under the caps', async (t) => {
  const cases: Array<[string, EvmIntent, string | null, string?]> = [
    ['native to the active address', tx(), null],
    ['native, checksum case', tx({ to: ACTIVE.toUpperCase().replace('0X', '0x') as `0x${string}` }), null],
    ['native elsewhere', tx({ to: BOB }), 'SWEEP_NOT_ALLOWED', 'sweep.destination'],
    [
      'erc20 transfer to the active address',
      tx({ to: TOKEN, value: 0n, data: call('transfer', [ACTIVE, 5n]), gas: 100000n }),
      null,
    ],
    [
      'erc20 transfer elsewhere',
      tx({ to: TOKEN, value: 0n, data: call('transfer', [BOB, 5n]) }),
      'SWEEP_NOT_ALLOWED',
      'sweep.destination',
    ],
    [
      'erc20 transferFrom to the active address',
      tx({ to: TOKEN, value: 0n, data: call('transferFrom', [BOB, ACTIVE, 5n]) }),
      'SWEEP_NOT_ALLOWED',
      'sweep.tokens',
    ],
    [
      'erc20 transfer with native value',
      tx({ to: TOKEN, value: 1n, data: call('transfer', [ACTIVE, 5n]) }),
      'SWEEP_NOT_ALLOWED',
      'sweep.tokens',
    ],
    [
      'other calldata to the token',
      tx({ to: TOKEN, value: 0n, data: '0xdeadbeef' }),
      'SWEEP_NOT_ALLOWED',
      'sweep.tokens',
    ],
    [
      'malformed transfer calldata',
      tx({ to: TOKEN, value: 0n, data: `${call('transfer', [ACTIVE, 5n])}00` as `0x${string}` }),
      'PAYLOAD_INVALID',
      'sweep.tokens',
    ],
    [
      'calldata to the active address',
      tx({ data: call('transfer', [ACTIVE, 5n]) }),
      'SWEEP_NOT_ALLOWED',
      'sweep.tokens',
    ],
    ['contract creation', tx({ to: null, data: '0x6000' }), 'SWEEP_NOT_ALLOWED', 'sweep'],
    ['chain not listed', tx({ chainId: 137n }), 'CHAIN_NOT_ALLOWED', 'sweep.chains'],
    ['fee above the cap', tx({ maxFeePerGas: 100n * GWEI + 1n }), 'FEE_LIMIT', 'sweep.maxFeePerGas'],
    ['fee at the cap', tx({ maxFeePerGas: 100n * GWEI }), null],
    [
      'legacy gasPrice above the cap',
      tx({ type: 'legacy', maxFeePerGas: 101n * GWEI, maxPriorityFeePerGas: null }),
      'FEE_LIMIT',
      'sweep.maxFeePerGas',
    ],
    ['priority fee above the cap', tx({ maxPriorityFeePerGas: 3n * GWEI }), 'FEE_LIMIT', 'sweep.maxPriorityFeePerGas'],
    ['gas above the cap', tx({ gas: 150001n }), 'FEE_LIMIT', 'sweep.maxGas'],
  ];
  for (const [name, intent, reason, rule] of cases) {
    const d = decideSweep(policy, intent, ACTIVE, 'c');
    if (reason === null) {
      t.ok(d.allow, `${name}: allowed`);
      // The guard's second look, inside the reservation, agrees.
      if (d.allow) {
        const sp = sweepPolicy(policy, d.rule, ACTIVE);
        const again = evaluate(sp, { client: 'c', keyId: 'k', traffic: 'hot', kind: 'evm', evm: intent }, []);
        t.ok(again.allow, `${name}: the derived policy allows it too`);
      }
    } else {
      t.equal(d.allow ? null : d.reason, reason, `${name}: ${reason}`);
      if (!d.allow) t.equal(d.metadata.rule, rule, `${name}: names ${rule}`);
    }
  }
  const none = decideSweep(compilePolicy(base, 'p'), tx(), ACTIVE, 'c');
  t.equal(none.allow ? null : none.reason, 'KEY_VERSION_RETIRED', 'no sweep rule: retired as before');
  const listed = compilePolicy({ ...base, clients: ['engine'], sweep }, 'p');
  const stranger = decideSweep(listed, tx({ to: BOB }), ACTIVE, 'c');
  t.equal(stranger.allow ? null : stranger.reason, 'CLIENT_NOT_ALLOWED', 'an unlisted client learns nothing more');
  t.ok(decideSweep(listed, tx(), ACTIVE, 'engine').allow, 'a listed client sweeps');
});

t.test('rotationSafe: an EVM policy needs a sweep rule', async (t) => {
  t.ok(rotationSafe(policy));
  t.notOk(rotationSafe(compilePolicy(base, 'p')));
  const { evm: _e, ...noEvm } = base;
  t.ok(rotationSafe(compilePolicy({ ...noEvm, payloadKinds: ['digest'] }, 'p')), 'no EVM: nothing to strand');
});

t.test('planSweeps: what cannot be swept says why', async (t) => {
  const keys = [
    { keyId: 'k', version: 1, algorithm: 'ECDSA_SECP256K1', state: 'DESTROYED', evmAddress: BOB },
    { keyId: 'k', version: 2, algorithm: 'ECDSA_SECP256K1', state: 'DISABLED', evmAddress: TOKEN },
    { keyId: 'k', version: 3, algorithm: 'ECDSA_SECP256K1', state: 'ACTIVE', evmAddress: ACTIVE },
  ];
  const fees = { maxFeePerGas: 10n * GWEI, maxPriorityFeePerGas: GWEI, nativeGas: 21000n, tokenGas: 100000n };
  const b = (version: number, native: string, tokens = {}) => ({
    keyId: 'k',
    version,
    chainId: 1,
    native,
    tokens,
    nonce: 3,
  });
  const [lost, poor, unknown] = planSweeps([b(1, '5'), b(2, '1000', { [TOKEN]: '9' }), b(9, '1')], keys, fees);
  t.equal(lost!.status, 'lost');
  t.match(lost!.note, /DESTROYED while holding funds/);
  t.equal(poor!.status, 'sweep');
  t.same(
    poor!.transactions.map((x) => x.kind),
    ['erc20'],
    'the token is planned, the native rest is not',
  );
  t.match(poor!.note, /cannot pay the token transfers' gas/);
  t.equal(unknown!.status, 'unknown');
});
