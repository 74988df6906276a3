/**
 * Client request signatures, pure parts: the canonical bytes against the vectors in
 * test/vectors/sign-request (written with Python, independently of src/core/request-signing),
 * verification with @noble/curves, the client's signing path through the proto serialisation,
 * the audit entry's optional `request` field (old entries hash as before) and the offline
 * request check of verify-audit --requests.
 */
import { createHash, createPrivateKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { ed25519 } from '@noble/curves/ed25519.js';
import { p256 } from '@noble/curves/nist.js';
import t from 'tap';
import { repoRoot } from '../harness/token.js';
import { requestSigner, signRequest } from '../src/client/request-signing.js';
import { type AuditEntry, canonicalJson, entryHash, GENESIS } from '../src/core/audit/chain.js';
import { parseCsvLine, toCsvRow } from '../src/core/audit/csv.js';
import { parseJsonLine } from '../src/core/audit/format.js';
import { entryBytes } from '../src/core/audit/leaf.js';
import { RequestAuditor } from '../src/core/request-signing/audit-check.js';
import {
  type CanonicalRequest,
  canonicalRequestText,
  parseCanonicalRequest,
} from '../src/core/request-signing/canonical.js';
import { type PublicKey, REQUEST_RULES, verifySignature } from '../src/core/signatures.js';
import { requestKeyOf } from '../src/infra/config/request-keys.js';

/** A client's request signature: the one verifier, under the request rules. */
const verifyRequest = (key: PublicKey, message: Uint8Array, signature: Uint8Array) =>
  verifySignature(key, message, signature, REQUEST_RULES);

interface VectorRequest {
  kind: 'sign' | 'batch';
  client: string;
  keyId: string;
  keyVersion: number;
  id: string;
  clientTime: { seconds: string; nanos: number };
  payloads: Array<{
    kind: 'digest' | 'message' | 'evm_transaction';
    hex: string;
    scope: { chainId: string; nonce: string } | null;
  }>;
}
const vectors = JSON.parse(readFileSync(`${repoRoot}/test/vectors/sign-request/vectors.json`, 'utf8')) as {
  keys: Record<'p256' | 'ed25519', { seed: string; publicKeyPem: string; fingerprint: string }>;
  vectors: Array<{
    name: string;
    request: VectorRequest;
    text: string;
    sha256: string;
    signatures: Record<'p256' | 'ed25519', string>;
  }>;
  invalid: Array<{ name: string; request: VectorRequest }>;
};

function canonical(r: VectorRequest): CanonicalRequest {
  return {
    kind: r.kind,
    client: r.client,
    keyId: r.keyId,
    keyVersion: r.keyVersion,
    id: r.id,
    clientTimeMs: Number(r.clientTime.seconds) * 1000 + Math.floor(r.clientTime.nanos / 1e6),
    payloads: r.payloads.map((p) => ({
      kind: p.kind,
      bytes: Buffer.from(p.hex, 'hex'),
      scope: p.scope ? { chainId: BigInt(p.scope.chainId), nonce: BigInt(p.scope.nonce) } : undefined,
    })),
  };
}

/** A vector request as a proto-loader SignRequest / SignBatchRequest object. */
function wireOf(r: VectorRequest): object {
  const item = (p: VectorRequest['payloads'][number]) => ({
    ...(p.kind === 'evm_transaction'
      ? { evmTransaction: { unsignedTx: Buffer.from(p.hex, 'hex') } }
      : { [p.kind]: Buffer.from(p.hex, 'hex') }),
    ...(p.scope ? { replayScope: { chainId: p.scope.chainId, accountNonce: p.scope.nonce } } : {}),
  });
  if (r.kind === 'batch')
    return { batchId: r.id, keyId: r.keyId, clientTime: r.clientTime, items: r.payloads.map(item) };
  return {
    keyId: r.keyId,
    requestId: r.id,
    keyVersion: r.keyVersion,
    clientTime: r.clientTime,
    ...item(r.payloads[0]!),
  };
}

/**
 * The vectors' test keys, derived from their public seeds as generate.py derives them (the file
 * stores no key material): P-256 scalar = SHA-256(seed) mod n, Ed25519 private key = SHA-256(seed).
 */
function privateKeyPem(alg: 'p256' | 'ed25519'): string {
  const seed = createHash('sha256').update(vectors.keys[alg].seed).digest();
  const b64 = (b: Uint8Array) => Buffer.from(b).toString('base64url');
  let jwk: Record<string, string>;
  if (alg === 'ed25519') jwk = { kty: 'OKP', crv: 'Ed25519', d: b64(seed), x: b64(ed25519.getPublicKey(seed)) };
  else {
    const n = p256.Point.CURVE().n;
    const d = Buffer.from((BigInt(`0x${seed.toString('hex')}`) % n).toString(16).padStart(64, '0'), 'hex');
    const pub = p256.getPublicKey(d, false);
    jwk = { kty: 'EC', crv: 'P-256', d: b64(d), x: b64(pub.subarray(1, 33)), y: b64(pub.subarray(33)) };
  }
  return createPrivateKey({ key: jwk, format: 'jwk' }).export({ type: 'pkcs8', format: 'pem' }) as string;
}

const keys = {
  p256: requestKeyOf(vectors.keys.p256.publicKeyPem, 'registered'),
  ed25519: requestKeyOf(vectors.keys.ed25519.publicKeyPem, 'registered'),
};

t.test('the canonical bytes are the vectors, and their signatures verify (noble)', async (t) => {
  t.equal(keys.p256.fingerprint, vectors.keys.p256.fingerprint, 'P-256 key fingerprint (SPKI SHA-256)');
  t.equal(keys.ed25519.fingerprint, vectors.keys.ed25519.fingerprint, 'Ed25519 key fingerprint');
  t.ok(vectors.vectors.length >= 5);
  for (const v of vectors.vectors) {
    const text = canonicalRequestText(canonical(v.request));
    t.equal(text, v.text, `${v.name}: text`);
    const bytes = Buffer.from(text, 'utf8');
    t.equal(createHash('sha256').update(bytes).digest('hex'), v.sha256, `${v.name}: sha256`);
    for (const alg of ['p256', 'ed25519'] as const) {
      const sig = Buffer.from(v.signatures[alg], 'hex');
      t.ok(verifyRequest(keys[alg], bytes, sig), `${v.name}: ${alg} signature verifies`);
      const other = Buffer.from(bytes);
      other[other.length - 2]! ^= 1;
      t.notOk(verifyRequest(keys[alg], other, sig), `${v.name}: ${alg}: one changed byte fails`);
    }
    t.notOk(
      verifyRequest(keys.p256, bytes, Buffer.from(v.signatures.ed25519, 'hex')),
      'a signature of another key fails',
    );
    t.same(parseCanonicalRequest(text).payloads.length, v.request.payloads.length, `${v.name}: parses back`);
  }
});

t.test('values the format cannot carry are refused, not encoded', async (t) => {
  for (const v of vectors.invalid) t.throws(() => canonicalRequestText(canonical(v.request)), RangeError, v.name);
  t.throws(
    () => parseCanonicalRequest(`${vectors.vectors[0]!.text}digest - ${'0'.repeat(64)}\n`),
    RangeError,
    'an extra line',
  );
  t.throws(() => parseCanonicalRequest(vectors.vectors[0]!.text.replace('version 0', 'version 00')), RangeError);
});

t.test('the client signs what the signer will decode: proto round trip, then the vector bytes', async (t) => {
  for (const [alg, algorithm] of [
    ['p256', 'ecdsa-p256'],
    ['ed25519', 'ed25519'],
  ] as const) {
    for (const v of vectors.vectors) {
      const signer = requestSigner(v.request.client, privateKeyPem(alg));
      t.equal(signer.signingKey, vectors.keys[alg].fingerprint);
      const signed = signRequest(v.request.kind, wireOf(v.request), signer) as {
        requestSignature: Buffer;
        requestSigningKey: string;
      };
      t.equal(signed.requestSigningKey, vectors.keys[alg].fingerprint, `${v.name}: key named`);
      t.ok(
        verifyRequest(keys[alg], Buffer.from(v.text, 'utf8'), signed.requestSignature),
        `${v.name}: ${algorithm} signature over the vector bytes`,
      );
      if (alg === 'ed25519')
        t.equal(signed.requestSignature.toString('hex'), v.signatures.ed25519, 'deterministic Ed25519');
    }
  }
  const already = { keyId: 'k', requestSignature: Buffer.from('00', 'hex'), requestSigningKey: 'x' };
  const signer = requestSigner('c', privateKeyPem('p256'));
  t.equal(signRequest('sign', already, signer), already, 'a request that carries a signature is left alone');
  const noTime = { keyId: 'k', requestId: 'r', digest: Buffer.alloc(32) };
  t.equal(signRequest('sign', noTime, signer), noTime, 'a request with no canonical form is sent unsigned');
});

const entry = (over: Partial<AuditEntry> = {}): Omit<AuditEntry, 'hash'> => ({
  seq: 7,
  at: '2026-01-01T00:00:00.000Z',
  kind: 'sign',
  client: 'payment-engine',
  keyId: 'hot-1',
  keyVersion: 1,
  requestId: '7b1c2f9e-0d7a-4a43-9d6e-2f3f1c1a9b10',
  payloadHash: 'ab'.repeat(32),
  intent: { kind: 'digest', bytes: '32' },
  decision: 'allowed',
  reason: null,
  signatureHash: 'cd'.repeat(32),
  prevHash: GENESIS,
  ...over,
});

t.test('audit entries: `request` is hashed only when present, so old entries keep their hash', async (t) => {
  const old = entry();
  const { prevHash, ...body } = old;
  // The hash of the format before request signing, written out: sha256(prevHash || canonical JSON of the 12 fields).
  const before = createHash('sha256').update(Buffer.from(prevHash, 'hex')).update(canonicalJson(body)).digest('hex');
  t.equal(entryHash(old), before, 'an entry without request hashes as before');
  t.equal(Buffer.from(entryBytes(old)).toString(), canonicalJson({ ...body, prevHash }), 'and has the same leaf bytes');
  const request = {
    message: Buffer.from(vectors.vectors[0]!.text).toString('hex'),
    signature: vectors.vectors[0]!.signatures.p256,
    signingKey: vectors.keys.p256.fingerprint,
  };
  const signed = entry({ request });
  t.not(entryHash(signed), before, 'the request is hashed');
  t.match(Buffer.from(entryBytes(signed)).toString(), /"request":\{"message":"/, 'and in the leaf');
  t.not(entryHash(entry({ request: { ...request, signingKey: keys.ed25519.fingerprint } })), entryHash(signed));
  // Both export forms carry it, and old CSV rows (one column fewer) still parse.
  const record = { type: 'entry' as const, ...signed, hash: entryHash(signed) };
  t.same(parseJsonLine(JSON.stringify(record), 1), record, 'JSONL round trip');
  t.same(parseCsvLine(toCsvRow(record), 1), record, 'CSV round trip');
  const plain = { type: 'entry' as const, ...old, hash: before };
  const oldRow = toCsvRow(plain).replace(/,$/, '');
  t.same(parseCsvLine(oldRow, 1), plain, 'a CSV row from before the request column');
  t.throws(() => parseJsonLine(JSON.stringify({ ...record, request: { ...request, extra: '1' } }), 1), /unknown field/);
  t.throws(
    () => parseJsonLine(JSON.stringify({ ...record, request: { ...request, signingKey: 'x' } }), 1),
    /signingKey/,
  );
});

t.test('the offline request check: covered signatures pass, anything else is named', async (t) => {
  const v = vectors.vectors[0]!; // sign, client payment-engine, key hot-1, version 0
  const b = vectors.vectors[3]!; // batch of 3
  const req = (x: typeof v) => ({
    message: Buffer.from(x.text).toString('hex'),
    signature: x.signatures.p256,
    signingKey: vectors.keys.p256.fingerprint,
  });
  const auditor = () => new RequestAuditor(new Map([['payment-engine', [keys.p256]]]));
  const good = auditor();
  good.accept({ ...entry({ request: req(v), requestId: v.request.id }), hash: '' });
  good.accept({
    ...entry({ kind: 'batch', requestId: b.request.id, intent: { items: '3' }, signatureHash: null, request: req(b) }),
    hash: '',
  });
  for (const i of [0, 1, 2]) good.accept({ ...entry({ requestId: `${b.request.id}#${i}` }), hash: '' });
  t.same(good.report(), { ok: true, verified: 2, covered: 4, findings: [] });

  const cases: Array<[string, Partial<AuditEntry>, RegExp]> = [
    ['no request at all', { seq: 9 }, /without a client request/],
    ['another request id', { requestId: 'other', request: req(v) }, /another request id/],
    ['another key', { keyId: 'hot-2', request: req(v) }, /another key/],
    ['another client', { client: 'other-engine', request: req(v) }, /another client/],
    [
      'a forged signature',
      { requestId: v.request.id, request: { ...req(v), signature: b.signatures.p256 } },
      /does not verify/,
    ],
    [
      'an unknown key',
      { requestId: v.request.id, request: { ...req(v), signingKey: keys.ed25519.fingerprint } },
      /not a key you supplied/,
    ],
    ['a batch item past the batch', { requestId: `${b.request.id}#3` }, /without a client request/],
  ];
  for (const [name, over, what] of cases) {
    const a = auditor();
    a.accept({
      ...entry({
        kind: 'batch',
        requestId: b.request.id,
        intent: { items: '3' },
        signatureHash: null,
        request: req(b),
      }),
      hash: '',
    });
    a.accept({ ...entry(over), hash: '' });
    const r = a.report();
    t.notOk(r.ok, name);
    t.match(r.findings[0]?.what, what, name);
  }
});
