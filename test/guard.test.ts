import t from 'tap';
import { OPEN_POLICY } from '../harness/signer.js';
import type { SignIntent } from '../src/core/policy/evaluate.js';
import { compilePolicy } from '../src/core/policy/schema.js';
import { decideBatch, decideSign } from '../src/core/replay/guard.js';
import type { ItemView, NonceRecord, RequestRecord, ReserveItem } from '../src/core/replay/records.js';

// The replay guard as a table: (what the store holds) x (what arrives) -> outcome, in the
// style of tmkms's double-sign rule.
const open = compilePolicy(OPEN_POLICY, 'open');
const bump = compilePolicy({ ...OPEN_POLICY, evm: { ...OPEN_POLICY.evm, allowFeeBump: true } }, 'bump');
const h = (s: string) => Buffer.from(s.padEnd(32, '.'));
const intent: SignIntent = { client: 'engine', keyId: 'k', traffic: 'hot', kind: 'digest' };
const item = (over: Partial<ReserveItem> = {}): ReserveItem => ({
  client: 'engine',
  requestId: 'r1',
  keyId: 'k',
  payloadHash: h('A'),
  value: 0n,
  ...over,
});
const claim = (fee = 10n) => ({
  account: 'k@v1',
  chainId: 1n,
  nonce: 7n,
  intentHash: h('to+value+data'),
  maxFeePerGas: fee,
  maxPriorityFeePerGas: 1n,
});
const req = (over: Partial<RequestRecord> = {}): RequestRecord => ({
  payloadHash: h('A'),
  state: 'done',
  result: Buffer.from('stored'),
  leaseExpired: false,
  ...over,
});
const held = (over: Partial<NonceRecord> = {}): NonceRecord => ({
  payloadHash: h('A'),
  intentHash: h('to+value+data'),
  maxFeePerGas: 10n,
  maxPriorityFeePerGas: 1n,
  state: 'done',
  result: Buffer.from('stored'),
  client: 'engine',
  requestId: 'r1',
  leaseExpired: false,
  ...over,
});

type Row = [string, typeof open, ReserveItem, ItemView, string];
const rows: Row[] = [
  ['new request, free nonce: reserve', open, item({ nonce: claim() }), {}, 'sign:insert'],
  ['retry of a done request: stored result', open, item(), { request: req() }, 'replay'],
  ['same request id, other payload', open, item({ payloadHash: h('B') }), { request: req() }, 'REQUEST_ID_REUSED'],
  ['retry while the first is signing', open, item(), { request: req({ state: 'pending' }) }, 'REQUEST_IN_FLIGHT'],
  [
    'retry after the signer died: take over',
    open,
    item(),
    { request: req({ state: 'pending', leaseExpired: true }) },
    'sign:resume',
  ],
  [
    'retry after the signer died, nonce still ours',
    open,
    item({ nonce: claim() }),
    { request: req({ state: 'pending', leaseExpired: true }), nonce: held({ state: 'pending', leaseExpired: true }) },
    'sign:resume',
  ],
  [
    'retry after the signer died, nonce taken by a fee bump',
    bump,
    item({ nonce: claim() }),
    { request: req({ state: 'pending', leaseExpired: true }), nonce: held({ requestId: 'r2', payloadHash: h('C') }) },
    'NONCE_ALREADY_SIGNED',
  ],
  [
    'same payload on a signed nonce, new request id: stored signature',
    open,
    item({ requestId: 'r2', nonce: claim() }),
    { nonce: held() },
    'replay',
  ],
  [
    'same payload on a nonce being signed',
    open,
    item({ requestId: 'r2', nonce: claim() }),
    { nonce: held({ state: 'pending' }) },
    'NONCE_IN_FLIGHT',
  ],
  [
    'same payload on a nonce whose signer died: take over',
    open,
    item({ requestId: 'r2', nonce: claim() }),
    { nonce: held({ state: 'pending', leaseExpired: true }) },
    'sign:replaceNonce',
  ],
  [
    'other payload on a signed nonce',
    open,
    item({ requestId: 'r2', payloadHash: h('B'), nonce: claim(20n) }),
    { nonce: held() },
    'NONCE_ALREADY_SIGNED',
  ],
  [
    'fee bump where the policy allows it',
    bump,
    item({ requestId: 'r2', payloadHash: h('B'), nonce: claim(20n) }),
    { nonce: held() },
    'sign:replaceNonce',
  ],
  [
    'fee bump with the same fee',
    bump,
    item({ requestId: 'r2', payloadHash: h('B'), nonce: claim(10n) }),
    { nonce: held() },
    'NONCE_ALREADY_SIGNED',
  ],
  [
    'fee bump that changes recipient, value or data',
    bump,
    item({ requestId: 'r2', payloadHash: h('B'), nonce: { ...claim(20n), intentHash: h('other') } }),
    { nonce: held() },
    'NONCE_ALREADY_SIGNED',
  ],
  [
    'fee bump while the original is being signed',
    bump,
    item({ requestId: 'r2', payloadHash: h('B'), nonce: claim(20n) }),
    { nonce: held({ state: 'pending' }) },
    'NONCE_IN_FLIGHT',
  ],
];

t.test('decideSign', async (t) => {
  for (const [name, policy, it, view, expected] of rows) {
    const plan = decideSign(policy, it, intent, { items: [view], velocity: [] });
    const got = plan.outcome.ok
      ? plan.outcome.items[0]!.kind === 'replay'
        ? 'replay'
        : `sign:${plan.writes[0]?.action}`
      : plan.outcome.error.reason;
    t.equal(got, expected, name);
    if (!plan.outcome.ok || plan.outcome.items[0]!.kind === 'replay')
      t.same(plan.writes, [], `${name}: writes nothing`);
  }
});

t.test('decideBatch: a retried batch whose item lost its nonce is refused', async (t) => {
  const it = item({ requestId: 'b#0', nonce: claim() });
  const batch = { batchId: 'b', itemsHash: h('items') };
  const plan = decideBatch(
    bump,
    [it],
    [{ ...intent, traffic: 'batch' }],
    {
      items: [{ request: req({ state: 'pending', leaseExpired: true }), nonce: held({ requestId: 'other' }) }],
      velocity: [],
      batch: { itemsHash: h('items') },
    },
    batch,
  );
  t.equal(plan.outcome.ok ? 'ok' : plan.outcome.error.reason, 'NONCE_ALREADY_SIGNED');
  t.same(plan.writes, []);
});
