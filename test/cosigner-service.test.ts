import { generateKeyPairSync, randomBytes, randomUUID } from 'node:crypto';
import { join } from 'node:path';
import t from 'tap';
import { makePki } from '../harness/pki.js';
import { OPEN_POLICY } from '../harness/signer.js';
import { makeToken, tempDir } from '../harness/token.js';
import { requestSigner } from '../src/client/request-signing.js';
import { aggregate, decodePublic } from '../src/core/frost/participant.js';
import { SUITES } from '../src/core/frost/suites.js';
import type { Round1Entry } from '../src/core/frost/wire.js';
import { canonicalRequestBytes } from '../src/core/request-signing/canonical.js';
import { CosignerIdentity } from '../src/cosigner/identity.js';
import { PolicyCheck } from '../src/cosigner/policy-check.js';
import { RequestCheck } from '../src/cosigner/request-check.js';
import { CosignerService } from '../src/cosigner/service.js';
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
// The client "engine" signs its requests with a registered Ed25519 key each cosigner pins, and
// every cosigner pins the open test policy (as the signer's config text).
const engineKey = generateKeyPairSync('ed25519');
const engine = requestSigner('engine', engineKey.privateKey);
const enginePem = engineKey.publicKey.export({ type: 'spki', format: 'pem' }).toString();
const services = [1, 2, 3].map((id) => {
  const store = new CosignerStore(join(dir.path, `cosigner-${id}.db`));
  t.teardown(() => store.close());
  const files = pki.files.clients[`cosigner-${id}`]!;
  const identity = new CosignerIdentity({ certFile: files.cert, keyFile: files.key }, pki.files.caCert, id);
  const checks = {
    requests: new RequestCheck({ engine: { requestKeys: [enginePem] } }, [], id),
    policies: new PolicyCheck(id, store.records, undefined, { open: OPEN_POLICY }),
    records: store.records,
  };
  return new CosignerService({ id, hsm, sealKey, store, identity, maxPooledNonces: 100, log, checks });
});
const policy = { name: 'open', version: 1, document: JSON.stringify(OPEN_POLICY), proposalId: '', approvals: [] };
/** What the coordinator forwards of engine's signed Sign request for `payload`. */
function signedBy(requestId: string, payloadKind: 'message' | 'digest', payload: Buffer) {
  const message = canonicalRequestBytes({
    kind: 'sign',
    client: 'engine',
    keyId,
    keyVersion: 0,
    id: requestId,
    clientTimeMs: Date.now(),
    payloads: [{ kind: payloadKind, bytes: payload }],
  });
  return {
    signedRequest: Buffer.from(message),
    requestSignature: engine.sign(message),
    requestSigningKey: engine.signingKey,
    payloadIndex: 0,
    policy,
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

t.test('destroying a key version removes its shares and its pooled nonces', async (t) => {
  const pooled = await one.commit({ keyId, keyVersion: 1, count: 1 });
  t.same(one.destroyShares({ keyId, keyVersion: 1 }), { destroyed: 1 });
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
