/**
 * The pure checks a cosigner runs on a destroy order and on an admin's cancel
 * (src/core/admin/share-destroy.ts): the cancel's canonical bytes byte for byte, and signatures
 * made with Node's crypto (P-256) and noble (Ed25519), not with the code under test.
 */
import { generateKeyPairSync, sign as nodeSign, randomBytes } from 'node:crypto';
import { ed25519 } from '@noble/curves/ed25519.js';
import t from 'tap';
import type { AdminSet } from '../src/core/admin/approvals.js';
import { proposalBytes } from '../src/core/admin/proposal.js';
import { cancelBytes, checkCancel, checkDestroyOrder } from '../src/core/admin/share-destroy.js';
import { canonicalJson } from '../src/core/policy/canonical.js';

const p256 = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const jwk = p256.publicKey.export({ format: 'jwk' });
const point = Buffer.concat([Buffer.from([4]), Buffer.from(jwk.x!, 'base64url'), Buffer.from(jwk.y!, 'base64url')]);
const edSecret = ed25519.utils.randomSecretKey();
const admins: AdminSet = {
  quorum: 2,
  delaySeconds: 0,
  members: new Map([
    ['alice', { algorithm: 'ecdsa-p256', publicKey: new Uint8Array(point) }],
    ['bob', { algorithm: 'ed25519', publicKey: ed25519.getPublicKey(edSecret) }],
  ]),
};
const signAs = (who: 'alice' | 'bob', bytes: Uint8Array) =>
  who === 'alice'
    ? nodeSign('sha256', bytes, { key: p256.privateKey, dsaEncoding: 'ieee-p1363' })
    : Buffer.from(ed25519.sign(bytes, edSecret));
const proposalId = 'a'.repeat(32);

t.test('the cancel bytes: domain, key id, version, proposal id, one per line', async (t) => {
  t.equal(
    Buffer.from(cancelBytes({ keyId: 'tss-1', version: 3, proposalId })).toString('utf8'),
    `hsm-signer/share-destroy-cancel/v1\ntss-1\n3\n${proposalId}\n`,
  );
  t.throws(() => cancelBytes({ keyId: 'a\nb', version: 1, proposalId }), /one line/);
  t.throws(() => cancelBytes({ keyId: 'k', version: 0, proposalId }), /version/);
  t.throws(() => cancelBytes({ keyId: 'k', version: 1, proposalId: 'XYZ' }), /proposal id/);
});

t.test("a cancel counts only as one pinned admin's signature over exactly these bytes", async (t) => {
  const c = { keyId: 'tss-1', version: 3, proposalId };
  t.equal(checkCancel(admins, c, 'alice', signAs('alice', cancelBytes(c))), null, 'P-256 admin');
  t.equal(checkCancel(admins, c, 'bob', signAs('bob', cancelBytes(c))), null, 'Ed25519 admin');
  t.match(
    checkCancel(admins, c, 'bob', signAs('alice', cancelBytes(c))),
    /not bob's/,
    "alice's signature named as bob",
  );
  t.match(checkCancel(admins, c, 'mallory', signAs('bob', cancelBytes(c))), /not an admin/);
  const other = { ...c, version: 4 };
  t.match(checkCancel(admins, other, 'bob', signAs('bob', cancelBytes(c))), /not bob's/, 'another version');
  // The same admin's approval of the proposal is not a cancel: the domains differ.
  const doc = canonicalJson({ confirmKeyId: 'tss-1', keyId: 'tss-1', version: 3 });
  const approval = proposalBytes({
    kind: 'destroy-key',
    id: proposalId,
    target: 'tss-1',
    baseVersion: 3,
    document: doc,
  });
  t.match(checkCancel(admins, c, 'bob', signAs('bob', approval)), /not bob's/, 'an approval is no cancel');
  t.match(checkCancel(undefined, c, 'bob', signAs('bob', cancelBytes(c))), /no admins/);
});

t.test('a destroy order: k distinct admins over the proposal naming this key version', async (t) => {
  const orderFor = (
    keyId: string,
    version: number,
    by: Array<'alice' | 'bob'>,
    id = randomBytes(16).toString('hex'),
  ) => {
    const document = canonicalJson({ confirmKeyId: keyId, keyId, version });
    const bytes = proposalBytes({ kind: 'destroy-key', id, target: keyId, baseVersion: version, document });
    return { proposalId: id, document, approvals: by.map((admin) => ({ admin, signature: signAs(admin, bytes) })) };
  };
  t.same(checkDestroyOrder(admins, 'k', 2, orderFor('k', 2, ['alice', 'bob'])).ok, true);
  const problem = (r: ReturnType<typeof checkDestroyOrder>) => (r.ok ? 'ok' : r.problem);
  t.equal(problem(checkDestroyOrder(admins, 'k', 2, orderFor('k', 2, ['alice']))), 'quorum');
  t.equal(problem(checkDestroyOrder(admins, 'k', 2, orderFor('k', 2, ['bob', 'bob']))), 'quorum', 'one admin twice');
  t.equal(problem(checkDestroyOrder(admins, 'k', 1, orderFor('k', 2, ['alice', 'bob']))), 'other-key');
  t.equal(problem(checkDestroyOrder(admins, 'j', 2, orderFor('k', 2, ['alice', 'bob']))), 'other-key');
  t.equal(problem(checkDestroyOrder(admins, 'k', 2, null)), 'missing');
  t.equal(problem(checkDestroyOrder(undefined, 'k', 2, orderFor('k', 2, ['alice', 'bob']))), 'no-admins');
  t.equal(
    problem(checkDestroyOrder(admins, 'k', 2, { ...orderFor('k', 2, ['alice', 'bob']), proposalId: 'x' })),
    'malformed',
  );
  // The document edited after approval: the signatures no longer cover it.
  const edited = orderFor('k', 2, ['alice', 'bob']);
  const tampered = {
    ...edited,
    document: canonicalJson({ confirmKeyId: 'k', confirmSwept: true, keyId: 'k', version: 2 }),
  };
  t.equal(problem(checkDestroyOrder(admins, 'k', 2, tampered)), 'quorum', 'an edited document');
  // Approvals of one proposal presented under another id.
  t.equal(problem(checkDestroyOrder(admins, 'k', 2, { ...edited, proposalId: 'b'.repeat(32) })), 'quorum');
});
