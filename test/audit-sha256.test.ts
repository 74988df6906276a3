import { randomBytes, randomInt } from 'node:crypto';
import { sha256 as nobleSha256 } from '@noble/hashes/sha2.js';
import { bytesToHex, concatBytes, hexToBytes, utf8ToBytes } from '@noble/hashes/utils.js';
import t from 'tap';
import {
  type AuditEntry,
  canonicalJson,
  entryDigests,
  entryHash,
  GENESIS,
  HASHED_FIELDS,
} from '../src/core/audit/chain.js';
import { type AuditDraft, draftToEntry } from '../src/core/audit/draft.js';
import { entryBytes, entryLeafHash } from '../src/core/audit/leaf.js';
import { EMPTY_ROOT, leafHash, nodeHash } from '../src/core/audit/merkle.js';
import { sha256 } from '../src/core/audit/sha256.js';
import { chainDrafts } from '../src/infra/store/audit-chain.js';

// The audit log hashes on Node's OpenSSL (src/core/audit/sha256.ts) and serialises an entry once
// for its chain hash and its leaf (chain.ts entryDigests). Both are held here to the reference:
// @noble/hashes over the canonical bytes as chain.ts and leaf.ts define them, byte for byte.

const reference = {
  entryHash: (e: Omit<AuditEntry, 'hash'>) => {
    const o = e as unknown as Record<string, unknown>;
    const body: Record<string, unknown> = {};
    for (const k of HASHED_FIELDS) body[k] = o[k];
    if (o.request !== undefined) body.request = o.request;
    return bytesToHex(nobleSha256(concatBytes(hexToBytes(e.prevHash), utf8ToBytes(canonicalJson(body)))));
  },
  leaf: (e: Omit<AuditEntry, 'hash'>) => nobleSha256(concatBytes(Uint8Array.of(0), entryBytes(e))),
};

/** Strings an entry may hold: ASCII, escapes JSON must write, unicode beyond the BMP, empty. */
const strings = [
  '',
  'a',
  'payment-engine',
  'quote " backslash \\ slash /',
  'é ü ß',
  '日本語',
  '😀 \u{1F680}',
  '\u2028\u2029',
  'x'.repeat(3000),
];
const pick = <T>(a: readonly T[]): T => a[randomInt(a.length)]!;
const maybe = <T>(v: T): T | null => (randomInt(3) === 0 ? null : v);

function randomDraft(): AuditDraft {
  const signed = randomInt(2) === 0;
  return {
    kind: pick(['sign', 'batch', 'key.create', 'policy.set', pick(strings) || 'x']),
    at: new Date(randomInt(0, 2 ** 47)),
    client: maybe(pick(strings)),
    keyId: maybe(pick(strings)),
    keyVersion: maybe(randomInt(0, 2 ** 31)),
    requestId: maybe(pick(strings)),
    payloadHash: maybe(randomBytes(32)),
    intent: maybe(Object.fromEntries(Array.from({ length: randomInt(6) }, () => [pick(strings), pick(strings)]))),
    decision: pick(['allowed', 'refused', 'done'] as const),
    reason: maybe(pick(['REPLAY', 'VALUE_LIMIT', pick(strings)])),
    signatureHash: maybe(randomBytes(32)),
    ...(signed
      ? {
          request: {
            message: randomBytes(randomInt(1, 600)).toString('hex'),
            signature: randomBytes(randomInt(64, 73)).toString('hex'),
            signingKey: `spki-sha256:${randomBytes(32).toString('hex')}`,
          },
        }
      : {}),
  };
}

t.test('sha256 is @noble/hashes byte for byte, on every length up to 4 KiB and on split inputs', async (t) => {
  t.same(sha256(new Uint8Array(0)), nobleSha256(new Uint8Array(0)), 'the empty string');
  t.same(EMPTY_ROOT, nobleSha256(new Uint8Array(0)), 'the empty tree head');
  let mismatches = 0;
  for (let n = 0; n <= 4096; n++) {
    const b = randomBytes(n);
    const cut = randomInt(n + 1);
    if (bytesToHex(sha256(b)) !== bytesToHex(nobleSha256(b))) mismatches++;
    if (bytesToHex(sha256(b.subarray(0, cut), b.subarray(cut))) !== bytesToHex(nobleSha256(b))) mismatches++;
  }
  t.equal(mismatches, 0, 'no length differs');
  t.equal(
    Object.getPrototypeOf(sha256(Uint8Array.of(1))),
    Uint8Array.prototype,
    'a plain Uint8Array, as noble returns',
  );
});

t.test('leaf and node hashes are the RFC 9162 preimages hashed by noble', async (t) => {
  for (let i = 0; i < 500; i++) {
    const [l, r, e] = [randomBytes(32), randomBytes(32), randomBytes(randomInt(0, 2000))];
    t.same(nodeHash(l, r), nobleSha256(concatBytes(Uint8Array.of(1), l, r)));
    t.same(leafHash(e), nobleSha256(concatBytes(Uint8Array.of(0), e)));
  }
});

t.test('entry hash and leaf from one serialisation equal the reference on 3,000 varied entries', async (t) => {
  let prevHash = GENESIS;
  let bad = 0;
  for (let seq = 1; seq <= 3000; seq++) {
    const entry = draftToEntry(randomDraft(), seq, prevHash);
    const d = entryDigests(entry);
    const want = reference.entryHash(entry);
    if (d.hash !== want || entryHash(entry) !== want) bad++;
    const leaf = bytesToHex(reference.leaf(entry));
    if (bytesToHex(d.leaf) !== leaf || bytesToHex(entryLeafHash(entry)) !== leaf) bad++;
    prevHash = want;
  }
  t.equal(bad, 0, 'every chain hash and leaf hash as the reference gives them');
});

t.test('the store path (chainDrafts) hands over the leaves of the entries it chained', async (t) => {
  const drafts = Array.from({ length: 50 }, randomDraft);
  const head = { seq: 41, hash: bytesToHex(randomBytes(32)) };
  const { entries, leaves } = chainDrafts(drafts, head);
  t.equal(entries[0]!.seq, 42);
  t.equal(entries[0]!.prevHash, head.hash);
  entries.forEach((e, i) => {
    const { hash, ...body } = e;
    t.equal(hash, reference.entryHash(body));
    t.same(leaves[i], reference.leaf(body));
  });
});

t.test('entryDigests refuses what entryHash refuses', async (t) => {
  const entry = draftToEntry(randomDraft(), 1, GENESIS);
  t.throws(() => entryDigests({ ...entry, extra: 1 } as never), /unknown field "extra"/);
  t.throws(() => entryDigests({ ...entry, prevHash: 'AB'.repeat(32) }), /prevHash must be 64 lowercase hex/);
  const { reason: _, ...missing } = entry;
  t.throws(() => entryDigests(missing as never), /field "reason" is undefined/);
  t.throws(() => entryDigests({ ...entry, intent: { a: 1n } } as never), /bigint is not JSON/);
});
