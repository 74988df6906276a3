import { randomBytes } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import pkcs11js from 'pkcs11js';
import t from 'tap';
import { makeToken, tempDir } from '../harness/token.js';
import { Hsm } from '../src/infra/hsm/hsm.js';
import { ensureSealingKey, SealError, seal, shareAad, unseal } from '../src/infra/hsm/seal.js';

// Invariant 1: a threshold share is stored only sealed under a non-extractable AES key of the
// node's own token. A real SoftHSM token, so the key's attributes are the token's, not a mock's.
const dir = await tempDir('seal');
t.teardown(() => dir.cleanup());
const token = await makeToken(dir.path, 'seal');
Object.assign(process.env, token.env);
const open = () => Hsm.open({ uri: token.uri, sessions: 2, recoveryIntervalMs: 100 });
let hsm = await open();
t.teardown(() => hsm.close());

const LABEL = 'share-sealing';
const keyId = await ensureSealingKey(hsm, LABEL);
const share = randomBytes(32);
const aad = shareAad('treasury-frost', 'group-1');

/** True if any 8-byte run of `needle` occurs in `hay`: no recognisable piece of the share. */
function containsPiece(hay: Buffer, needle: Buffer): boolean {
  for (let i = 0; i + 8 <= needle.length; i++) if (hay.includes(needle.subarray(i, i + 8))) return true;
  return false;
}

t.test('a sealed share round-trips and hides the plaintext', async (t) => {
  const sealed = await seal(hsm, keyId, share, aad);
  t.equal(sealed[0], 0x01, 'format version 1');
  t.equal(sealed.length, 1 + 12 + share.length + 16, 'version, 96-bit IV, ciphertext, 128-bit tag');
  t.notOk(containsPiece(sealed, share), 'no 8-byte piece of the share in the sealed bytes');
  t.same(await unseal(hsm, keyId, sealed, aad), share, 'unseals to the same share');

  const again = await seal(hsm, keyId, share, aad);
  t.not(again.toString('hex'), sealed.toString('hex'), 'sealing the same share twice gives different bytes');
  t.not(again.subarray(1, 13).toString('hex'), sealed.subarray(1, 13).toString('hex'), 'a fresh IV each time');
  t.same(await unseal(hsm, keyId, again, aad), share);

  const view = new Uint8Array(share.buffer.slice(share.byteOffset, share.byteOffset + share.length));
  t.same(await unseal(hsm, keyId, await seal(hsm, keyId, view, aad), aad), share, 'a plain Uint8Array seals too');
});

t.test('the additional data binds the key id and the group', async (t) => {
  const sealed = await seal(hsm, keyId, share, aad);
  const wrong: Array<[string, Uint8Array]> = [
    ['another key id', shareAad('treasury-frost-2', 'group-1')],
    ['another group', shareAad('treasury-frost', 'group-2')],
    ['fields shifted across the boundary', shareAad('treasury-fros', 'tgroup-1')],
    ['no additional data', Buffer.alloc(0)],
    ['raw concatenation instead of the encoding', Buffer.from('treasury-frostgroup-1')],
  ];
  for (const [name, other] of wrong) {
    const err = await unseal(hsm, keyId, sealed, other).then(
      () => undefined,
      (e: unknown) => e,
    );
    t.type(err, SealError, `${name}: SealError`);
    t.match((err as Error).message, /sealed share failed authentication/, `${name}: says why`);
    t.notOk((err as Error).message.includes(share.toString('hex')), `${name}: no share bytes in the message`);
    t.equal((err as Error).cause, undefined, `${name}: no cause attached`);
  }
  t.same(shareAad('a', 'bc').equals(shareAad('ab', 'c')), false, 'the encoding is unambiguous');
});

t.test('any flipped bit, truncation or unknown version is refused', async (t) => {
  const sealed = await seal(hsm, keyId, share, aad);
  let refused = 0;
  for (let bit = 0; bit < sealed.length * 8; bit++) {
    const bad = Buffer.from(sealed);
    bad[bit >> 3] = bad[bit >> 3]! ^ (1 << (bit & 7));
    const err = await unseal(hsm, keyId, bad, aad).then(
      () => undefined,
      (e: unknown) => e,
    );
    if (err instanceof SealError) refused++;
    else t.fail(`bit ${bit}: ${err === undefined ? 'unsealed' : String(err)}`);
  }
  t.equal(refused, sealed.length * 8, `all ${sealed.length * 8} single-bit flips refused with SealError`);

  const malformed: Array<[string, Buffer]> = [
    ['empty', Buffer.alloc(0)],
    ['version only', Buffer.of(0x01)],
    ['header and tag, no ciphertext', sealed.subarray(0, 1 + 12 + 16)],
    ['truncated by one byte', sealed.subarray(0, sealed.length - 1)],
    ['one extra byte', Buffer.concat([sealed, Buffer.of(0)])],
    ['unknown version 0x02', Buffer.concat([Buffer.of(0x02), sealed.subarray(1)])],
    ['unknown version 0x00', Buffer.concat([Buffer.of(0x00), sealed.subarray(1)])],
  ];
  for (const [name, blob] of malformed) await t.rejects(unseal(hsm, keyId, blob, aad), SealError, name);
  t.ok(hsm.up, 'the token is still up');
  t.equal(hsm.sessions.inUse, 0, 'every session went back to the pool');
  t.equal(hsm.sessions.size, 2, 'no session was dropped');
  t.same(await unseal(hsm, keyId, sealed, aad), share, 'the pool still unseals afterwards');
});

t.test('a share sealed under another sealing key does not unseal', async (t) => {
  const otherKey = await ensureSealingKey(hsm, 'other-node-sealing');
  t.not(otherKey.toString('hex'), keyId.toString('hex'));
  const sealed = await seal(hsm, otherKey, share, aad);
  await t.rejects(unseal(hsm, keyId, sealed, aad), SealError);
  t.same(await unseal(hsm, otherKey, sealed, aad), share);
});

t.test('concurrent seals and unseals share the session pool', async (t) => {
  const shares = Array.from({ length: 40 }, () => randomBytes(32));
  const sealed = await Promise.all(
    shares.map((s, i) => seal(hsm, keyId, s, shareAad(`k${i}`, 'g'), i % 2 ? 'batch' : 'hot')),
  );
  const opened = await Promise.all(sealed.map((s, i) => unseal(hsm, keyId, s, shareAad(`k${i}`, 'g'))));
  t.same(opened, shares);
  t.equal(new Set(sealed.map((s) => s.subarray(1, 13).toString('hex'))).size, shares.length, 'no IV repeated');
});

t.test('empty shares and unknown keys are refused', async (t) => {
  await t.rejects(seal(hsm, keyId, Buffer.alloc(0), aad), /empty share/);
  await t.rejects(seal(hsm, randomBytes(16), share, aad), /expected one key object/);
  t.throws(() => ensureSealingKey(hsm, ''), /must not be empty/);
});

t.test('the sealing key is found again, not regenerated', async (t) => {
  const again = await ensureSealingKey(hsm, LABEL);
  t.same(again, keyId, 'same CKA_ID');
  const both = await Promise.all([ensureSealingKey(hsm, 'raced'), ensureSealingKey(hsm, 'raced')]);
  t.same(both[0], both[1], 'two concurrent callers get one key');
  const count = await hsm.manage(
    (session) =>
      hsm.find(session, [
        { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
        { type: pkcs11js.CKA_LABEL, value: 'raced' },
      ]).length,
  );
  t.equal(count, 1, 'one key object with that label in the token');
});

t.test('the sealing key cannot be read or made extractable', async (t) => {
  await hsm.manage((session) => {
    const p11 = hsm.p11;
    const key = hsm.objectHandle(session, keyId, pkcs11js.CKO_SECRET_KEY);
    const attrs = p11.C_GetAttributeValue(session, key, [
      { type: pkcs11js.CKA_SENSITIVE },
      { type: pkcs11js.CKA_EXTRACTABLE },
      { type: pkcs11js.CKA_TOKEN },
      { type: pkcs11js.CKA_PRIVATE },
      { type: pkcs11js.CKA_ENCRYPT },
      { type: pkcs11js.CKA_DECRYPT },
      { type: pkcs11js.CKA_WRAP },
      { type: pkcs11js.CKA_UNWRAP },
      { type: pkcs11js.CKA_LOCAL },
      { type: pkcs11js.CKA_NEVER_EXTRACTABLE },
      { type: pkcs11js.CKA_ALWAYS_SENSITIVE },
    ]);
    t.same(
      attrs.map((a) => (a.value as Buffer)[0]),
      [1, 0, 1, 1, 1, 1, 0, 0, 1, 1, 1],
      'sensitive, not extractable, private token object, encrypt/decrypt only, generated in the token',
    );
    const [type, len] = p11.C_GetAttributeValue(session, key, [
      { type: pkcs11js.CKA_KEY_TYPE },
      { type: pkcs11js.CKA_VALUE_LEN },
    ]);
    t.equal((type!.value as Buffer).readUInt32LE(), pkcs11js.CKK_AES, 'AES');
    t.equal((len!.value as Buffer).readUInt32LE(), 32, 'AES-256');
    t.throws(
      () => p11.C_GetAttributeValue(session, key, [{ type: pkcs11js.CKA_VALUE }]),
      { code: pkcs11js.CKR_ATTRIBUTE_SENSITIVE },
      'CKA_VALUE is unreadable',
    );
    t.throws(
      () => p11.C_SetAttributeValue(session, key, [{ type: pkcs11js.CKA_EXTRACTABLE, value: true }]),
      'CKA_EXTRACTABLE cannot be turned on',
    );
    t.throws(
      () => p11.C_SetAttributeValue(session, key, [{ type: pkcs11js.CKA_SENSITIVE, value: false }]),
      'CKA_SENSITIVE cannot be turned off',
    );
  });
});

t.test('a key imported under the label is refused, not used', async (t) => {
  await hsm.manage((session) =>
    hsm.p11.C_CreateObject(session, [
      { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
      { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_AES },
      { type: pkcs11js.CKA_VALUE, value: randomBytes(32) },
      { type: pkcs11js.CKA_ID, value: randomBytes(16) },
      { type: pkcs11js.CKA_LABEL, value: 'imported' },
      { type: pkcs11js.CKA_TOKEN, value: true },
      { type: pkcs11js.CKA_PRIVATE, value: true },
      { type: pkcs11js.CKA_SENSITIVE, value: true },
      { type: pkcs11js.CKA_EXTRACTABLE, value: false },
      { type: pkcs11js.CKA_ENCRYPT, value: true },
      { type: pkcs11js.CKA_DECRYPT, value: true },
    ]),
  );
  await t.rejects(ensureSealingKey(hsm, 'imported'), /not a sealing key this signer accepts/);
});

t.test('the sealing key persists on the token across a restart', async (t) => {
  const sealed = await seal(hsm, keyId, share, aad);
  await hsm.close();
  hsm = await open();
  t.same(await ensureSealingKey(hsm, LABEL), keyId, 'the same key is found after reopening');
  t.same(await unseal(hsm, keyId, sealed, aad), share, 'a share sealed before the restart unseals');
});

t.test('the token files on disk never hold the share', async (t) => {
  // Seal once more so the token has been written since the share was last in memory.
  await seal(hsm, keyId, share, aad);
  // Control: bytes the token does store in the clear (a public data object) are found by the
  // scan, so a clean result below means the share is absent, not that the scan is blind.
  const marker = randomBytes(32);
  await hsm.manage((session) =>
    hsm.p11.C_CreateObject(session, [
      { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_DATA },
      { type: pkcs11js.CKA_TOKEN, value: true },
      { type: pkcs11js.CKA_PRIVATE, value: false },
      { type: pkcs11js.CKA_VALUE, value: marker },
    ]),
  );
  const files: string[] = [];
  const walk = async (d: string): Promise<void> => {
    for (const e of await readdir(d, { withFileTypes: true })) {
      if (e.isDirectory()) await walk(join(d, e.name));
      else if (e.isFile()) files.push(join(d, e.name));
    }
  };
  await walk(dir.path);
  t.ok(
    files.some((f) => f.endsWith('.object')),
    'the token directory holds object files',
  );
  const contents = await Promise.all(files.map((f) => readFile(f)));
  t.ok(
    contents.some((c) => containsPiece(c, marker)),
    'control: a public object value is visible to the scan',
  );
  files.forEach((f, i) =>
    t.notOk(containsPiece(contents[i]!, share), `${f.slice(dir.path.length + 1)}: no piece of the share`),
  );
});
