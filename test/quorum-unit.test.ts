/**
 * The admin quorum's pure parts: canonical bytes, approval checks (signatures made by Node's
 * crypto and by @noble, verified by src/core), and the list of loosenings.
 */
import { generateKeyPairSync, sign as nodeSign } from 'node:crypto';
import { ed25519 } from '@noble/curves/ed25519.js';
import t from 'tap';
import { OPEN_POLICY } from '../harness/signer.js';
import { type AdminSet, checkQuorum } from '../src/core/admin/approvals.js';
import { proposalBytes } from '../src/core/admin/proposal.js';
import { canonicalJson } from '../src/core/policy/canonical.js';
import { loosenings } from '../src/core/policy/loosening.js';
import { compilePolicy } from '../src/core/policy/schema.js';

t.test('canonical JSON sorts keys, drops whitespace, refuses floats and null', async (t) => {
  t.equal(
    canonicalJson(JSON.parse('{ "b": [1, {"z":true,"a":"é"}], "a": "x" }')),
    '{"a":"x","b":[1,{"a":"é","z":true}]}',
  );
  t.throws(() => canonicalJson({ a: 1.5 }));
  t.throws(() => canonicalJson({ a: null }));
});

t.test('proposal bytes are the documented layout', async (t) => {
  const b = proposalBytes({ kind: 'policy', id: 'ab'.repeat(16), target: 'p', baseVersion: 3, document: '{}' });
  t.equal(
    Buffer.from(b).toString(),
    `hsm-signer/admin-proposal/v1\npolicy\n${'ab'.repeat(16)}\np\n3\n44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a\n`,
  );
  t.throws(() => proposalBytes({ kind: 'policy', id: 'x', target: 'a\nb', baseVersion: 0, document: '' }));
});

t.test('a quorum counts distinct members with valid signatures over the stored subject', async (t) => {
  const p256 = () => generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const [a, b] = [p256(), p256()];
  const edKey = ed25519.utils.randomSecretKey();
  const raw = (k: ReturnType<typeof p256>) => {
    const j = k.publicKey.export({ format: 'jwk' });
    return new Uint8Array(
      Buffer.concat([Buffer.from([4]), Buffer.from(j.x!, 'base64url'), Buffer.from(j.y!, 'base64url')]),
    );
  };
  const admins: AdminSet = {
    quorum: 2,
    delaySeconds: 60,
    members: new Map([
      ['a', { algorithm: 'ecdsa-p256', publicKey: raw(a) }],
      ['b', { algorithm: 'ecdsa-p256', publicKey: raw(b) }],
      ['c', { algorithm: 'ed25519', publicKey: ed25519.getPublicKey(edKey) }],
    ]),
  };
  const subject = { kind: 'policy' as const, id: '0'.repeat(32), target: 'p', baseVersion: 1, document: '{"x":1}' };
  const msg = proposalBytes(subject);
  const at = (s: number) => new Date(s * 1000);
  const sigA = nodeSign('sha256', msg, a.privateKey); // DER
  const sigB = nodeSign('sha256', msg, { key: b.privateKey, dsaEncoding: 'ieee-p1363' });
  const sigC = ed25519.sign(msg, edKey);
  t.equal(checkQuorum(admins, subject, [{ admin: 'a', signature: sigA, at: at(1) }]).reachedAt, null, '1 of 2');
  const twice = checkQuorum(admins, subject, [
    { admin: 'a', signature: sigA, at: at(1) },
    { admin: 'a', signature: sigA, at: at(2) },
  ]);
  t.equal(twice.reachedAt, null, 'the same admin twice is one');
  const q = checkQuorum(admins, subject, [
    { admin: 'c', signature: sigC, at: at(5) },
    { admin: 'b', signature: sigB, at: at(3) },
    { admin: 'mallory', signature: sigB, at: at(1) },
  ]);
  t.same(q.reachedAt, at(5), 'reached at the k-th valid approval');
  t.same(
    q.invalid.map((i) => i.admin),
    ['mallory'],
  );
  const edited = { ...subject, document: '{"x":2}' };
  t.equal(
    checkQuorum(admins, edited, [
      { admin: 'b', signature: sigB, at: at(1) },
      { admin: 'c', signature: sigC, at: at(2) },
    ]).valid.length,
    0,
    'an edited document voids every approval',
  );
  t.equal(
    checkQuorum(admins, { ...subject, baseVersion: 2 }, [{ admin: 'c', signature: sigC, at: at(1) }]).valid.length,
    0,
  );
});

t.test('loosenings: every way the new version allows more', async (t) => {
  const base = compilePolicy(
    {
      ...OPEN_POLICY,
      clients: ['payment-engine'],
      payloadKinds: ['evm'],
      evm: { ...OPEN_POLICY.evm, destinations: { allow: [`0x${'11'.repeat(20)}`] }, maxPriorityFeePerGas: '5' },
      velocity: [{ scope: 'key', windowSeconds: 3600, maxCount: 10 }],
    },
    'p',
  );
  const with_ = (over: Record<string, unknown>, evm: Record<string, unknown> = {}) =>
    compilePolicy(
      {
        ...OPEN_POLICY,
        clients: ['payment-engine'],
        payloadKinds: ['evm'],
        velocity: [{ scope: 'key', windowSeconds: 3600, maxCount: 10 }],
        ...over,
        evm: {
          ...OPEN_POLICY.evm,
          destinations: { allow: [`0x${'11'.repeat(20)}`] },
          maxPriorityFeePerGas: '5',
          ...evm,
        },
      },
      'p',
    );
  t.same(loosenings(base, with_({})), [], 'the same policy loosens nothing');
  t.same(loosenings(null, base).length, 1, 'a new policy is a loosening');
  const cases: Array<[string, ReturnType<typeof with_>, RegExp]> = [
    ['value raised', with_({}, { maxValue: (10n ** 25n).toString() }), /evm.maxValue: raised/],
    [
      'destination added',
      with_({}, { destinations: { allow: [`0x${'11'.repeat(20)}`, `0x${'22'.repeat(20)}`] } }),
      /destinations.allow: adds/,
    ],
    ['any destination', with_({}, { destinations: { any: true } }), /any address/],
    ['contract added', with_({}, { contracts: [`0x${'33'.repeat(20)}`] }), /evm.contracts: adds/],
    ['chain added', with_({}, { chains: [...OPEN_POLICY.evm.chains, '42161'] }), /evm.chains: adds 42161/],
    ['client added', with_({ clients: ['payment-engine', 'x'] }), /clients: adds x/],
    ['any client', with_({ clients: undefined }), /any client/],
    ['payload kind added', with_({ payloadKinds: ['evm', 'digest'] }), /payloadKinds: adds digest/],
    ['velocity relaxed', with_({ velocity: [{ scope: 'key', windowSeconds: 3600, maxCount: 11 }] }), /velocity/],
    ['velocity removed', with_({ velocity: [] }), /velocity/],
    ['velocity window changed', with_({ velocity: [{ scope: 'key', windowSeconds: 60, maxCount: 10 }] }), /velocity/],
    ['freshness widened', with_({ freshness: { maxSkewSeconds: 301 } }), /maxSkewSeconds: raised/],
    ['priority fee cap removed', with_({}, { maxPriorityFeePerGas: undefined }), /maxPriorityFeePerGas: limit removed/],
    ['contract creation', with_({}, { allowContractCreation: true }), /allowContractCreation/],
    ['fee bump', with_({}, { allowFeeBump: true }), /allowFeeBump/],
    ['gas raised', with_({}, { maxGas: '30000001' }), /maxGas/],
    ['key pattern changed', with_({ keys: ['hot-*'] }), /keys: adds hot-\*/],
    ['traffic widened', compilePolicy({ ...OPEN_POLICY, traffic: 'hot', batch: undefined }, 'p'), /./],
    ['batch raised', with_({ batch: { ...OPEN_POLICY.batch, maxItems: 5001 } }), /batch.maxItems: raised/],
    [
      'token added',
      with_({}, { tokens: { ...OPEN_POLICY.evm.tokens, [`0x${'44'.repeat(20)}`]: { maxAmount: '1' } } }),
      /evm.tokens: adds/,
    ],
  ];
  for (const [what, next, why] of cases) {
    const base2 =
      what === 'traffic widened' ? compilePolicy({ ...OPEN_POLICY, traffic: 'hot', batch: undefined }, 'p') : base;
    const got =
      what === 'traffic widened' ? loosenings(next, compilePolicy(OPEN_POLICY, 'p')) : loosenings(base2, next);
    t.ok(
      got.some((l) => why.test(l)),
      `${what}: ${got.join('; ')}`,
    );
  }
  const tighter = with_(
    {
      freshness: { maxSkewSeconds: 60 },
      velocity: [
        { scope: 'key', windowSeconds: 3600, maxCount: 5 },
        { scope: 'client', windowSeconds: 60, maxCount: 1 },
      ],
    },
    { maxValue: '1', chains: ['1'] },
  );
  t.same(loosenings(base, tighter), [], 'lower limits, fewer chains, an added rule: tightening only');
});
