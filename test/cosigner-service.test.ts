import { generateKeyPairSync, randomBytes, randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { ed25519 } from '@noble/curves/ed25519.js';
import t from 'tap';
import { makePki } from '../harness/pki.js';
import { OPEN_POLICY } from '../harness/signer.js';
import { makeToken, tempDir } from '../harness/token.js';
import { requestSigner } from '../src/client/request-signing.js';
import { proposalBytes } from '../src/core/admin/proposal.js';
import { aggregate, decodePublic } from '../src/core/frost/participant.js';
import { SUITES } from '../src/core/frost/suites.js';
import type { Round1Entry } from '../src/core/frost/wire.js';
import { canonicalJson } from '../src/core/policy/canonical.js';
import { canonicalRequestBytes } from '../src/core/request-signing/canonical.js';
import { CosignerIdentity } from '../src/cosigner/identity.js';
import { PolicyCheck } from '../src/cosigner/policy-check.js';
import { verifyCosignerAudit } from '../src/cosigner/records.js';
import { RequestCheck } from '../src/cosigner/request-check.js';
import { CosignerService } from '../src/cosigner/service.js';
import type { WirePolicy } from '../src/cosigner/share-request.js';
import { ShareVault } from '../src/cosigner/shares.js';
import { CosignerStore } from '../src/cosigner/store.js';
import { Hsm } from '../src/infra/hsm/hsm.js';
import { ensureSealingKey } from '../src/infra/hsm/seal.js';
import { createLogger } from '../src/infra/log.js';

// The cosigner's domain object without its gRPC adapter: the test relays the rounds as the
// coordinator does. Real SoftHSM sealing, real SQLite stores, real identity certificates; the
// three cosigners share one token here (each still seals under the AAD of its own rows).
const dir = await tempDir('cosigner-service-');
t.teardown(() => dir.cleanup());
const pki = await makePki(dir.path, ['cosigner-1', 'cosigner-2', 'cosigner-3']);
const token = await makeToken(dir.path, 'cosigner-service');
Object.assign(process.env, token.env);
const hsm = await Hsm.open({ uri: token.uri, sessions: 2, recoveryIntervalMs: 100 });
t.teardown(() => hsm.close());
const sealKey = await ensureSealingKey(hsm, 'share-sealing');
const log = createLogger('silent');
/** Two of three Ed25519 admins order destructions; the destroy delay runs on a mocked clock. */
const adminKeys = ['alice', 'bob', 'carol'].map((name) => ({ name, secret: ed25519.utils.randomSecretKey() }));
const ADMINS = new Map(
  adminKeys.map((a) => [a.name, { algorithm: 'ed25519' as const, publicKey: ed25519.getPublicKey(a.secret) }]),
);
const DESTROY_DELAY_MS = 3600_000;
let clock = new Date();
/** The quorum's order to destroy `keyId` v`version`, signed by `by`, as the signer forwards it. */
function orderOf(keyId: string, version: number, by: string[]) {
  const proposalId = randomBytes(16).toString('hex');
  const document = canonicalJson({ confirmKeyId: keyId, keyId, version });
  const bytes = proposalBytes({ kind: 'destroy-key', id: proposalId, target: keyId, baseVersion: version, document });
  const approvals = by.map((admin) => ({
    admin,
    signature: ed25519.sign(bytes, adminKeys.find((a) => a.name === admin)!.secret),
  }));
  return { proposalId, document, approvals };
}
// The client "engine" signs its requests with a registered Ed25519 key each cosigner pins, and
// every cosigner pins the open test policy (as the signer's config text).
const engineKey = generateKeyPairSync('ed25519');
const engine = requestSigner('engine', engineKey.privateKey);
const enginePem = engineKey.publicKey.export({ type: 'spki', format: 'pem' }).toString();
/** A key's own policy, pinned too: hot traffic, client engine only, three shares a minute per key. */
const TIGHT = {
  keys: ['svc-ed'],
  traffic: 'hot',
  clients: ['engine'],
  payloadKinds: ['message'],
  freshness: { maxSkewSeconds: 60 },
  velocity: [{ scope: 'key', windowSeconds: 60, maxCount: 3 }],
};
const allChecks: Array<{ records: CosignerStore['records'] }> = [];
const services = [1, 2, 3].map((id) => {
  const store = new CosignerStore(join(dir.path, `cosigner-${id}.db`));
  t.teardown(() => store.close());
  const files = pki.files.clients[`cosigner-${id}`]!;
  const identity = new CosignerIdentity({ certFile: files.cert, keyFile: files.key }, pki.files.caCert, id);
  const checks = {
    requests: new RequestCheck({ engine: { requestKeys: [enginePem] }, other: {} }, [], id),
    policies: new PolicyCheck(id, store.records, undefined, { open: OPEN_POLICY, tight: TIGHT }),
    records: store.records,
  };
  allChecks.push(checks);
  const admins = { quorum: 2, members: ADMINS, delaySeconds: 0 };
  return new CosignerService({
    ...{ id, hsm, sealKey, store, identity, maxPooledNonces: 100, log, checks },
    ...{ admins, shareDestroyDelayMs: DESTROY_DELAY_MS, now: () => clock },
  });
});
const policy: WirePolicy = {
  name: 'open',
  version: 1,
  document: JSON.stringify(OPEN_POLICY),
  proposalId: '',
  approvals: [],
};
/** What the coordinator forwards of engine's signed Sign request for `payload`. */
function signedBy(
  requestId: string,
  payloadKind: 'message' | 'digest',
  payload: Buffer,
  o: { policy?: WirePolicy; clientTimeMs?: number; batch?: number } = {},
) {
  const message = canonicalRequestBytes({
    kind: o.batch === undefined ? 'sign' : 'batch',
    client: 'engine',
    keyId,
    keyVersion: 0,
    id: o.batch === undefined ? requestId : requestId.split('#')[0]!,
    clientTimeMs: o.clientTimeMs ?? Date.now(),
    payloads: Array.from({ length: o.batch ?? 1 }, (_, i) => ({
      kind: payloadKind,
      bytes: i === Number(requestId.split('#')[1] ?? 0) ? payload : randomBytes(8),
    })),
  });
  return {
    signedRequest: Buffer.from(message),
    requestSignature: engine.sign(message),
    requestSigningKey: engine.signingKey,
    payloadIndex: Number(requestId.split('#')[1] ?? 0),
    policy: o.policy ?? policy,
  };
}
const [one, two] = services as [CosignerService, CosignerService, CosignerService];

const suite = SUITES['frost-ed25519'];
const keyId = 'svc-ed';
let publicPackage = '';
/** Matches the SignerError with this reason (tap compares the listed fields). */
const refusal = (reason: string) => ({ name: 'SignerError', reason });

t.test('a DKG relayed between three service objects gives every cosigner the same key', async (t) => {
  const sessionId = randomBytes(18).toString('base64url');
  const start = { sessionId, ceremony: 'DKG', keyId, keyVersion: 1, algorithm: 'frost-ed25519' };
  const params = { ...start, minSigners: 2, participants: [3, 1, 2], epoch: 0, groupId: randomBytes(16) };
  const r1 = await Promise.all(services.map((s) => s.round1(params)));
  const round1: Round1Entry[] = r1.map((o, i) => ({ cosignerId: i + 1, ...o }));
  const shares = services.flatMap((s) => s.round2({ sessionId, round1 }).shares);
  t.equal(shares.length, 6, 'each cosigner sends one encrypted share to each other');
  const forCosigner = (id: number) => shares.filter((x) => x.to === id);
  const r3 = await Promise.all(services.map((s, i) => s.round3({ sessionId, shares: forCosigner(i + 1) })));
  t.same(new Set(r3.map((o) => o.publicPackage)).size, 1, 'one public package');
  t.same(
    r3.map((o) => o.epoch),
    [1, 1, 1],
  );
  publicPackage = r3[0]!.publicPackage;
  await t.rejects(one.commit({ keyId, keyVersion: 1, count: 1 }), refusal('SHARE_NOT_FOUND'), 'pending until Finish');
  for (const s of services) t.same(s.finish({ sessionId, commit: true }), {});
  t.throws(() => one.round2({ sessionId, round1 }), refusal('CEREMONY_NOT_FOUND'), 'Finish ends the ceremony');
});

t.test('two cosigners sign; a nonce signs once; a request id keeps its payload', async (t) => {
  const [a, b] = await Promise.all([one, two].map((s) => s.commit({ keyId, keyVersion: 1, count: 3 })));
  /** The commitment list of the i-th pooled nonce of cosigners 1 and 2, as it crosses the wire. */
  const listOf = (i: number) => [a!.commitments[i]!, b!.commitments[i]!];
  const wire = (i: number) =>
    listOf(i).map((c) => ({ ...c, hiding: Buffer.from(c.hiding), binding: Buffer.from(c.binding) }));
  const message = randomBytes(48);
  const request = { keyId, keyVersion: 1, epoch: 1, client: 'engine', requestId: randomUUID(), payloadKind: 'message' };
  const ask = (s: CosignerService, i: number, payload = message, commitments = wire(i)) =>
    s.signShare({
      ...request,
      payload,
      replayScope: null,
      nonceId: listOf(i)[s === one ? 0 : 1]!.id,
      commitments,
      ...signedBy(request.requestId, 'message', payload),
    });

  const [s1, s2] = await Promise.all([ask(one, 0), ask(two, 0)]);
  const pub = decodePublic(suite, JSON.parse(publicPackage));
  const list = listOf(0).map((c) => ({
    identifier: suite.frost.Identifier.fromNumber(c.cosignerId),
    hiding: Uint8Array.from(c.hiding),
    binding: Uint8Array.from(c.binding),
  }));
  const shares = { [list[0]!.identifier]: s1.share, [list[1]!.identifier]: s2.share };
  const signature = aggregate(suite, pub, list, message, shares);
  t.ok(suite.verify(signature, message, suite.chainPublicKey(pub)), 'the aggregate verifies under the group key');

  await t.rejects(ask(one, 0), refusal('NONCE_UNKNOWN'), 'a used nonce is gone');
  const other = randomBytes(48);
  await t.rejects(ask(one, 1, other), refusal('REQUEST_ID_REUSED'), 'the request id is bound to its payload');
  await t.rejects(ask(one, 1), refusal('NONCE_UNKNOWN'), 'the refused request used up its nonce');
  await t.rejects(ask(one, 2, message, wire(1)), refusal('COMMITMENT_MISMATCH'), 'not the listed commitment');
  await t.rejects(ask(one, 2), refusal('NONCE_UNKNOWN'), 'so did the mismatched one');
});

t.test("a cosigner applies the policy's rules with its own clock and its own records", async (t) => {
  const tight = { name: 'tight', version: 1, document: JSON.stringify(TIGHT), proposalId: '', approvals: [] };
  const ask = async (o: { requestId?: string; clientTimeMs?: number; batch?: number } = {}) => {
    const [mine, theirs] = await Promise.all(
      [one, two].map(async (s) => (await s.commit({ keyId, keyVersion: 1, count: 1 })).commitments[0]!),
    );
    const list = [mine!, theirs!].map((c) => ({
      ...c,
      hiding: Buffer.from(c.hiding),
      binding: Buffer.from(c.binding),
    }));
    const requestId = o.requestId ?? randomUUID();
    const payload = Buffer.from(`pay ${requestId}`);
    const base = { keyId, keyVersion: 1, epoch: 1, client: 'engine', requestId, payloadKind: 'message' };
    const signed = signedBy(requestId, 'message', payload, { policy: tight, ...o });
    return one.signShare({ ...base, payload, replayScope: null, nonceId: mine!.id, commitments: list, ...signed });
  };
  await t.rejects(ask({ clientTimeMs: Date.now() + 120_000 }), refusal('FUTURE_REQUEST'), 'its own clock');
  await t.rejects(ask({ requestId: `${randomUUID()}#1`, batch: 3 }), refusal('TRAFFIC_CLASS_NOT_ALLOWED'));
  // The window already holds the one share cosigner 1 gave in the signing test above.
  const since = new Date(Date.now() - 60_000);
  const none = { client: '', requestId: '' };
  t.equal(allChecks[0]!.records.grantsSince('key', keyId, since, none), 1, 'one share of this key in the window');
  const first = randomUUID();
  t.equal((await ask({ requestId: first })).share.length, 32, 'second share of the minute');
  t.equal((await ask({ requestId: first })).share.length, 32, 'its retry is not a second signature');
  t.equal((await ask()).share.length, 32, 'third share of the minute');
  await t.rejects(ask(), { name: 'SignerError', reason: 'VELOCITY_LIMIT', message: /velocity\[0\]/ });
  const refusedRows = allChecks[0]!.records.auditRows().filter((r) => r.kind === 'share.refused');
  t.same(
    refusedRows.slice(-3).map((r) => JSON.parse(r.details).reason),
    ['FUTURE_REQUEST', 'TRAFFIC_CLASS_NOT_ALLOWED', 'VELOCITY_LIMIT'],
    'each refusal audited with its reason',
  );
  t.ok(verifyCosignerAudit(allChecks[0]!.records.auditRows()).ok, 'the chain verifies');
});

t.test('shares granted in one group commit: each sees the grants before it', async (t) => {
  const tight = { name: 'tight', version: 1, document: JSON.stringify(TIGHT), proposalId: '', approvals: [] };
  const since = () => new Date(Date.now() - 60_000);
  const none = { client: '', requestId: '' };
  /** Cosigner 2's share for `payload`, its commitment (and cosigner 1's) fetched first. */
  const prepare = async (
    payload: Buffer,
    o: { scope?: { chainId: string; accountNonce: string }; policy?: WirePolicy },
  ) => {
    const [mine, theirs] = await Promise.all(
      [two, one].map(async (s) => (await s.commit({ keyId, keyVersion: 1, count: 1 })).commitments[0]!),
    );
    const list = [mine!, theirs!].map((c) => ({
      ...c,
      hiding: Buffer.from(c.hiding),
      binding: Buffer.from(c.binding),
    }));
    const requestId = randomUUID();
    const base = { keyId, keyVersion: 1, epoch: 1, client: 'engine', requestId, payloadKind: 'message' };
    const scope = o.scope ? { chainId: BigInt(o.scope.chainId), nonce: BigInt(o.scope.accountNonce) } : undefined;
    const message = canonicalRequestBytes({
      kind: 'sign',
      client: 'engine',
      keyId,
      keyVersion: 0,
      id: requestId,
      clientTimeMs: Date.now(),
      payloads: [{ kind: 'message', bytes: payload, scope }],
    });
    return () =>
      two.signShare({
        ...base,
        payload,
        replayScope: o.scope ?? null,
        nonceId: mine!.id,
        commitments: list,
        signedRequest: Buffer.from(message),
        requestSignature: engine.sign(message),
        requestSigningKey: engine.signingKey,
        payloadIndex: 0,
        policy: o.policy ?? policy,
      });
  };
  // Two payloads for one account nonce, asked in the same turn (one transaction): one signs.
  const scope = { chainId: '1', accountNonce: String(Date.now()) };
  const pair = await Promise.all([randomBytes(40), randomBytes(40)].map((p) => prepare(p, { scope })));
  const outcomes = await Promise.allSettled(pair.map((ask) => ask()));
  t.equal(outcomes.filter((o) => o.status === 'fulfilled').length, 1, 'one payload for the nonce');
  const lost = outcomes.find((o): o is PromiseRejectedResult => o.status === 'rejected');
  t.match(lost?.reason, refusal('NONCE_ALREADY_SIGNED'), 'the other is refused');
  // Three shares a minute per key: cosigner 2 holds 2 of this key (the signing test, the pair).
  t.equal(allChecks[1]!.records.grantsSince('key', keyId, since(), none), 2, 'two shares in the window');
  const four = await Promise.all([1, 2, 3, 4].map(() => prepare(randomBytes(40), { policy: tight })));
  const results = await Promise.allSettled(four.map((ask) => ask()));
  t.equal(results.filter((r) => r.status === 'fulfilled').length, 1, 'one more share fits the velocity rule');
  for (const r of results.filter((x): x is PromiseRejectedResult => x.status === 'rejected'))
    t.match(r.reason, refusal('VELOCITY_LIMIT'), 'the others are refused');
  t.equal(allChecks[1]!.records.grantsSince('key', keyId, since(), none), 3, "the refusals' writes were undone");
  const rows = allChecks[1]!.records.auditRows();
  t.equal(rows.filter((r) => r.kind === 'share.refused').length, 4, 'every refusal audited');
  t.ok(verifyCosignerAudit(rows).ok, 'the chain verifies');
});

t.test('a share unsealed for signing is kept while in use and erased when it stops signing', async (t) => {
  const store = new CosignerStore(join(dir.path, 'cosigner-3.db'));
  t.teardown(() => store.close());
  const vault = new ShareVault({ id: 3, hsm, sealKey, store, log });
  const row = store.active(keyId, 1)!;
  const first = await vault.use(row, (k) => k);
  const share = Uint8Array.from(first.secret.signingShare);
  t.equal(await vault.use(row, (k) => k), first, 'unsealed once for the next signatures');
  vault.close(keyId, 1);
  t.ok(
    first.secret.signingShare.every((b) => b === 0),
    'erased when the key version stops signing',
  );
  const again = await vault.use(row, (k) => k);
  t.not(again, first, 'unsealed again on the next use');
  t.same(again.secret.signingShare, share, 'the same share');
  const other = { ...row, sealed: Uint8Array.from(row.sealed) };
  other.sealed[other.sealed.length - 1]! ^= 1;
  await t.rejects(
    vault.use(other, (k) => k),
    'another ciphertext is unsealed (and authenticated) anew',
  );
  vault.closeAll();
  t.ok(
    again.secret.signingShare.every((b) => b === 0),
    'erased at shutdown',
  );
});

t.test("destroying a key version takes the quorum's order, then the delay; its pooled nonces go at once", async (t) => {
  const pooled = await one.commit({ keyId, keyVersion: 1, count: 1 });
  t.throws(() => one.destroyShares({ keyId, keyVersion: 1 }), refusal('DESTROY_ORDER_INVALID'), 'no order');
  t.throws(
    () => one.destroyShares({ keyId, keyVersion: 1, order: orderOf(keyId, 1, ['alice']) }),
    refusal('DESTROY_ORDER_INVALID'),
    'one approval of two',
  );
  t.throws(
    () => one.destroyShares({ keyId, keyVersion: 2, order: orderOf(keyId, 1, ['alice', 'bob']) }),
    refusal('DESTROY_ORDER_INVALID'),
    'an order for another version',
  );
  const ordered = one.destroyShares({ keyId, keyVersion: 1, order: orderOf(keyId, 1, ['alice', 'bob']) });
  t.same(ordered, { destroyed: 1, dueAt: new Date(clock.getTime() + DESTROY_DELAY_MS).toISOString() });
  await t.rejects(one.commit({ keyId, keyVersion: 1, count: 1 }), refusal('SHARE_DESTROY_SCHEDULED'));
  t.equal(one.sweepDestroyed(), 0, 'nothing is overwritten before the delay');
  clock = new Date(clock.getTime() + DESTROY_DELAY_MS);
  t.equal(one.sweepDestroyed(), 1, 'overwritten when due');
  await t.rejects(one.commit({ keyId, keyVersion: 1, count: 1 }), refusal('SHARE_NOT_FOUND'));
  const mine = pooled.commitments[0]!;
  const commitments = [{ cosignerId: 1, hiding: Buffer.from(mine.hiding), binding: Buffer.from(mine.binding) }];
  const request = { keyId, keyVersion: 1, epoch: 1, client: 'engine', requestId: randomUUID(), payloadKind: 'digest' };
  const payload = randomBytes(32);
  const ask = {
    ...request,
    payload,
    replayScope: null,
    nonceId: mine.id,
    commitments,
    ...signedBy(request.requestId, 'digest', payload),
  };
  await t.rejects(one.signShare(ask), refusal('NONCE_UNKNOWN'), 'its nonces went with it');
});
