/**
 * Client-signed requests against a real signer over mTLS (SoftHSM, SQLite): what the signer
 * accepts and refuses (exact status and reason), what the audit log keeps, and what
 * verify-audit --requests tells an auditor, also after a database writer forged entries.
 */
import { execFile } from 'node:child_process';
import { createHash, generateKeyPairSync, randomBytes, randomUUID, X509Certificate } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import type * as grpc from '@grpc/grpc-js';
import { status } from '@grpc/grpc-js';
import { p256 } from '@noble/curves/nist.js';
import t from 'tap';
import { withDb } from '../harness/audit-adversary.js';
import { transfer } from '../harness/evm.js';
import { refused, startTestSigner } from '../harness/signer.js';
import { repoRoot } from '../harness/token.js';
import { call, connect, nowTimestamp } from '../src/client/client.js';
import { certificateSigner, requestSigner, signRequest } from '../src/client/request-signing.js';
import type { AuditEntry } from '../src/core/audit/chain.js';
import { eventDraft } from '../src/core/audit/draft.js';
import { verifyExport } from '../src/core/audit/verify.js';
import { openStore } from '../src/infra/store/open.js';

const run = promisify(execFile);
const tsx = `${repoRoot}/node_modules/.bin/tsx`;

const ed = generateKeyPairSync('ed25519');
const edPub = ed.publicKey.export({ type: 'spki', format: 'pem' }).toString();
const ts = await startTestSigner({
  clients: ['ed-engine'],
  config: {
    audit: { checkpointEveryEntries: 1000, checkpointEveryMs: 200 },
    clients: {
      'payment-engine': { roles: ['signer'] },
      'security-admin': { roles: ['admin'] },
      auditor: { roles: ['auditor'] },
      // Not required to sign (the deployment default is on): unsigned requests pass, bad signatures do not.
      'other-engine': { roles: ['signer'], requireSignedRequests: false },
      // Signs with a registered Ed25519 key (or its certificate's key).
      'ed-engine': { roles: ['signer'], requestKeys: [edPub] },
    },
    keyAccess: { '*': ['payment-engine', 'ed-engine'], 'shared-*': ['other-engine'] },
  },
});
t.teardown(() => ts.close());
const tlsOf = (cn: string) => ({ ca: ts.pki.caCert, cert: ts.pki.clients[cn]!.cert, key: ts.pki.clients[cn]!.key });
const engine = ts.as('payment-engine');
const admin = ts.as('security-admin');
const auditor = ts.as('auditor');
const unsigned = connect(ts.address, tlsOf('payment-engine'), 'localhost', { signRequests: false });
t.teardown(() => unsigned.close());
const engineSigner = certificateSigner(tlsOf('payment-engine'));
const certKey = new X509Certificate(ts.pki.clients['payment-engine']!.cert).publicKey;
const certPoint = (() => {
  const jwk = certKey.export({ format: 'jwk' });
  return Buffer.concat([Buffer.of(4), Buffer.from(jwk.x!, 'base64url'), Buffer.from(jwk.y!, 'base64url')]);
})();

await call(admin.keyAdmin, 'CreateKey', { keyId: 'hot-a', algorithm: 'ECDSA_SECP256K1' });
await call(admin.keyAdmin, 'CreateKey', { keyId: 'hot-b', algorithm: 'ECDSA_SECP256K1' });
await call(admin.keyAdmin, 'CreateKey', { keyId: 'shared-1', algorithm: 'ECDSA_SECP256K1' });

const digestReq = (over: Record<string, unknown> = {}) => ({
  keyId: 'hot-a',
  requestId: randomUUID(),
  clientTime: nowTimestamp(),
  digest: randomBytes(32),
  ...over,
});
/** `req` signed by `signer` as the client helper would, then changed by `change` (what an attacker replays). */
function tampered(
  req: object,
  change: Record<string, unknown>,
  kind: 'sign' | 'batch' = 'sign',
  signer = engineSigner,
) {
  return { ...signRequest(kind, req, signer), ...change };
}
const INVALID = 'REQUEST_SIGNATURE_INVALID';
const U = status.UNAUTHENTICATED;

async function exportAll(): Promise<string[]> {
  const stream = (
    auditor.audit as unknown as { ExportLog(r: object): grpc.ClientReadableStream<{ json: string }> }
  ).ExportLog({});
  const lines: string[] = [];
  for await (const m of stream) lines.push(m.json);
  return lines;
}
const entriesOf = (lines: string[]) =>
  lines.map((l) => JSON.parse(l)).filter((r) => r.type === 'entry') as Array<AuditEntry & { type: 'entry' }>;

t.test('a signed request is accepted and its audit entry holds a signature noble verifies', async (t) => {
  const req = digestReq();
  const res = await call<{ signature: Buffer }>(engine.signer, 'Sign', req);
  t.equal(res.signature.length, 64);
  const entry = entriesOf(await exportAll()).find((e) => e.requestId === req.requestId && e.signatureHash);
  t.ok(entry?.request, 'the signed entry carries the request');
  const message = Buffer.from(entry!.request!.message, 'hex');
  const ms = Number(req.clientTime.seconds) * 1000 + Math.floor(req.clientTime.nanos / 1e6);
  const expected =
    `hsm-signer/sign-request/v1\nkind sign\nclient payment-engine\nkey hot-a\nversion 0\nid ${req.requestId}\n` +
    `time ${ms}\npayloads 1\ndigest - ${createHash('sha256').update(req.digest).digest('hex')}\n`;
  t.equal(message.toString('utf8'), expected, 'the stored bytes are the canonical request');
  const sig = Buffer.from(entry!.request!.signature, 'hex');
  t.ok(p256.verify(sig, message, certPoint, { format: 'der', lowS: false }), 'noble: signed by the certificate key');
  t.equal(entry!.request!.signingKey, engineSigner.signingKey);
});

t.test('a signature over anything else is refused UNAUTHENTICATED / REQUEST_SIGNATURE_INVALID', async (t) => {
  const base = digestReq();
  const cases: Array<[string, object]> = [
    ['another payload', tampered(base, { digest: randomBytes(32) })],
    ['another key id', tampered(base, { keyId: 'hot-b' })],
    ['another key version', tampered(base, { keyVersion: 1 })],
    ['another request id', tampered(base, { requestId: randomUUID() })],
    [
      'an older client time than sent',
      tampered(
        { ...base, clientTime: { seconds: String(Number(base.clientTime.seconds) - 60), nanos: 0 } },
        { clientTime: base.clientTime },
      ),
    ],
    ['a replay scope added', tampered(base, { replayScope: { chainId: '1', accountNonce: '7' } })],
    [
      "another key (a fresh P-256 key) under the certificate key's name",
      tampered(
        base,
        { requestSigningKey: engineSigner.signingKey },
        'sign',
        requestSigner('payment-engine', generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey),
      ),
    ],
    [
      "a key that is not the client's",
      tampered(
        base,
        {},
        'sign',
        requestSigner('payment-engine', generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey),
      ),
    ],
    [
      'signed as another client',
      tampered(base, {}, 'sign', requestSigner('other-engine', ts.pki.clients['payment-engine']!.key)),
    ],
    ['garbage signature', { ...base, requestSignature: randomBytes(70), requestSigningKey: engineSigner.signingKey }],
  ];
  for (const [name, req] of cases) {
    const d = await refused(t, call(unsigned.signer, 'Sign', req), U, INVALID);
    t.equal(d.metadata.client, 'payment-engine', `${name}: metadata names the client`);
  }
  // Nothing was reserved by those refusals: the genuine request under the same id signs.
  const ok = await call<{ signature: Buffer }>(engine.signer, 'Sign', base);
  t.equal(ok.signature.length, 64, 'the untampered request still signs');
  const refusedEntries = entriesOf(await exportAll()).filter((e) => e.reason === INVALID);
  t.ok(refusedEntries.length >= cases.length, 'each refusal is audited');
});

t.test('client time: an old or future signed request is refused by the freshness window', async (t) => {
  const old = { seconds: String(Math.floor(Date.now() / 1000) - 3600), nanos: 0 };
  await refused(
    t,
    call(engine.signer, 'Sign', digestReq({ clientTime: old })),
    status.FAILED_PRECONDITION,
    'STALE_REQUEST',
  );
  const future = { seconds: String(Math.floor(Date.now() / 1000) + 3600), nanos: 0 };
  await refused(
    t,
    call(engine.signer, 'Sign', digestReq({ clientTime: future })),
    status.FAILED_PRECONDITION,
    'FUTURE_REQUEST',
  );
});

t.test('unsigned requests: refused when required, accepted when not; bad signatures never', async (t) => {
  const d = await refused(t, call(unsigned.signer, 'Sign', digestReq()), U, 'REQUEST_SIGNATURE_REQUIRED');
  t.equal(d.metadata.client, 'payment-engine');
  await refused(
    t,
    call(unsigned.signer, 'SignBatch', {
      batchId: randomUUID(),
      keyId: 'hot-a',
      clientTime: nowTimestamp(),
      items: [{ digest: randomBytes(32) }],
    }),
    U,
    'REQUEST_SIGNATURE_REQUIRED',
  );
  const other = connect(ts.address, tlsOf('other-engine'), 'localhost', { signRequests: false });
  t.teardown(() => other.close());
  const res = await call<{ signature: Buffer }>(other.signer, 'Sign', digestReq({ keyId: 'shared-1' }));
  t.equal(res.signature.length, 64, 'other-engine (requireSignedRequests: false) signs unsigned');
  const otherSigner = certificateSigner(tlsOf('other-engine'));
  const bad = tampered(digestReq({ keyId: 'shared-1' }), { digest: randomBytes(32) }, 'sign', otherSigner);
  await refused(t, call(other.signer, 'Sign', bad), U, INVALID);
  const signed = ts.as('other-engine');
  t.equal(
    (await call<{ signature: Buffer }>(signed.signer, 'Sign', digestReq({ keyId: 'shared-1' }))).signature.length,
    64,
  );
});

t.test('a registered Ed25519 key signs for its client; another client cannot use it', async (t) => {
  const edSigner = requestSigner('ed-engine', ed.privateKey);
  const c = connect(ts.address, tlsOf('ed-engine'), 'localhost', { signRequests: edSigner });
  t.teardown(() => c.close());
  t.equal((await call<{ signature: Buffer }>(c.signer, 'Sign', digestReq())).signature.length, 64, 'registered key');
  t.equal(
    (await call<{ signature: Buffer }>(ts.as('ed-engine').signer, 'Sign', digestReq())).signature.length,
    64,
    'certificate key',
  );
  const stolen = connect(ts.address, tlsOf('payment-engine'), 'localhost', {
    signRequests: requestSigner('payment-engine', ed.privateKey),
  });
  t.teardown(() => stolen.close());
  await refused(t, call(stolen.signer, 'Sign', digestReq()), U, INVALID);
});

t.test('batches: the signature covers every item; one altered item is refused', async (t) => {
  const batch = {
    batchId: randomUUID(),
    keyId: 'hot-a',
    clientTime: nowTimestamp(),
    items: [transfer({ nonce: 100 }).payload, transfer({ nonce: 101 }).payload, transfer({ nonce: 102 }).payload],
  };
  const items = [...batch.items];
  items[1] = transfer({ nonce: 101, value: 10n ** 18n }).payload;
  await refused(t, call(unsigned.signer, 'SignBatch', tampered(batch, { items }, 'batch')), U, INVALID);
  await refused(
    t,
    call(unsigned.signer, 'SignBatch', tampered(batch, { items: batch.items.slice(0, 2) }, 'batch')),
    U,
    INVALID,
  );
  await refused(t, call(unsigned.signer, 'SignBatch', tampered(batch, { batchId: randomUUID() }, 'batch')), U, INVALID);
  const res = await call<{ results: Array<{ signed?: unknown }> }>(engine.signer, 'SignBatch', batch);
  t.equal(res.results.filter((r) => r.signed).length, 3, 'the genuine batch signs every item');
  const entry = entriesOf(await exportAll()).find(
    (e) => e.kind === 'batch' && e.requestId === batch.batchId && e.decision === 'allowed',
  );
  t.ok(entry?.request, 'the batch entry carries the request');
  t.match(
    Buffer.from(entry!.request!.message, 'hex').toString(),
    /^hsm-signer\/sign-request\/v1\nkind batch\n[\s\S]*\npayloads 3\n/,
  );
});

t.test('verify-audit --requests: every signature asked for by a client, forged entries named', async (t) => {
  const certs = `${ts.dir}/certs`;
  const keyFile = (name: string, pem: string | Buffer) =>
    writeFile(`${certs}-${name}.pem`, pem).then(() => `${certs}-${name}.pem`);
  const args = [
    '--requests',
    '--client-key',
    `payment-engine=${await keyFile('engine', ts.pki.clients['payment-engine']!.cert)}`,
    '--client-key',
    `other-engine=${await keyFile('other', ts.pki.clients['other-engine']!.cert)}`,
    '--client-key',
    `ed-engine=${await keyFile('ed', Buffer.concat([ts.pki.clients['ed-engine']!.cert, Buffer.from(edPub)]))}`,
    '--json',
  ];
  const verify = async (lines: string[]) => {
    const file = `${ts.dir}/export-${randomUUID()}.jsonl`;
    await writeFile(file, `${lines.join('\n')}\n`);
    const out = await run(tsx, [`${repoRoot}/scripts/verify-audit.ts`, file, ...args]).then(
      (r) => ({ code: 0, stdout: r.stdout }),
      (e) => ({ code: e.code as number, stdout: e.stdout as string }),
    );
    return {
      ...out,
      report: JSON.parse(out.stdout) as {
        ok: boolean;
        requests: { verified: number; covered: number; findings: Array<{ seq: number; what: string }> };
      },
    };
  };
  const lines = await exportAll();
  t.ok(
    (
      await verifyExport(
        (async function* () {
          yield* lines;
        })(),
      )
    ).ok,
    'the chain verifies',
  );
  const honest = await verify(lines);
  // other-engine signs unsigned (its config allows it): those signatures, and only those, are named.
  const unsignedSeqs = entriesOf(lines)
    .filter((e) => e.client === 'other-engine' && e.signatureHash && !e.request)
    .map((e) => e.seq);
  t.equal(unsignedSeqs.length, 1, 'one unsigned signature of other-engine');
  t.equal(honest.code, 1);
  t.same(
    honest.report.requests.findings.map((f) => f.seq),
    unsignedSeqs,
    'only the unsigned signature is named',
  );
  t.ok(honest.report.requests.covered >= 6, `signatures covered: ${honest.report.requests.covered}`);

  // A writer with the signer's database (and code) appends signature entries no client asked for:
  // chain, tree and the signer's next checkpoint are all consistent with them.
  const genuine = entriesOf(lines).filter(
    (e) => e.kind === 'sign' && e.request && e.client === 'payment-engine' && e.signatureHash,
  );
  const donor = genuine[0]!;
  const forger = await openStore({ sqlite: { path: `${ts.dir}/signer.db` } } as never);
  const forge = (requestId: string, request?: AuditEntry['request']) => ({
    ...eventDraft('sign', new Date(), 'payment-engine', { keyId: 'hot-a', keyVersion: 1 }),
    requestId,
    decision: 'allowed' as const,
    signatureHash: randomBytes(32),
    ...(request ? { request } : {}),
  });
  await forger.appendAudit([
    forge('forged-none'),
    forge('forged-replayed', donor.request),
    forge(donor.requestId!, { ...donor.request!, signature: genuine[1]!.request!.signature }),
  ]);
  await forger.close();
  const after = await exportAll();
  t.ok(
    (
      await verifyExport(
        (async function* () {
          yield* after;
        })(),
      )
    ).ok,
    'the chain still verifies',
  );
  const seqOf = (id: string) =>
    entriesOf(after)
      .filter((e) => e.requestId === id)
      .at(-1)!.seq;
  const caught = await verify(after);
  t.equal(caught.code, 1);
  const named = (seq: number, what: RegExp) =>
    caught.report.requests.findings.some((f) => f.seq === seq && what.test(f.what));
  t.ok(named(seqOf('forged-none'), /without a client request/), 'a signature with no request is named');
  t.ok(named(seqOf('forged-replayed'), /another request id/), 'a genuine request replayed under another id is named');
  t.ok(named(seqOf(donor.requestId!), /does not verify/), 'a request with a forged signature is named');
  t.equal(caught.report.requests.findings.length, 4, 'and nothing else (plus the unsigned one)');

  // ... or edits the request fields of an entry in place: the chain no longer verifies.
  withDb(`${ts.dir}/signer.db`, (db) =>
    db.prepare('UPDATE audit SET request = ? WHERE seq = ?').run(JSON.stringify(genuine[1]!.request), donor.seq),
  );
  const store = await openStore({ sqlite: { path: `${ts.dir}/signer.db` } } as never);
  const stored = new Map<number, string>();
  for await (const e of store.readAudit(1, Number.MAX_SAFE_INTEGER))
    stored.set(e.seq, JSON.stringify({ type: 'entry', ...e }));
  await store.close();
  const edited = after.map((l) => {
    const r = JSON.parse(l) as { type: string; seq: number };
    return r.type === 'entry' ? stored.get(r.seq)! : l;
  });
  const report = await verify(edited);
  t.equal(report.code, 1, 'verify-audit fails');
  t.notOk(report.report.ok);
  t.match(
    JSON.stringify(report.report),
    new RegExp(`"seq":${donor.seq}|entry ${donor.seq}`),
    'naming the edited entry',
  );
});
