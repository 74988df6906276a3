/**
 * Audit has one owner: a key or policy change commits together with its audit entry, so when
 * the entry cannot be written the change does not happen. A trigger installed in the running
 * signer's SQLite file makes every audit insert fail; the admin calls then fail with INTERNAL,
 * and the policy, the key versions, the token and the file are as they were.
 */
import { status } from '@grpc/grpc-js';
import Database from 'better-sqlite3';
import pkcs11js from 'pkcs11js';
import t from 'tap';
import { OPEN_POLICY, refused, startTestSigner } from '../harness/signer.js';
import { call } from '../src/client/client.js';

const ts = await startTestSigner();
t.teardown(() => ts.close());
const admin = ts.as('security-admin');
const path = `${ts.dir}/signer.db`;

type Key = { keyId: string; version: number; state: string; publicKey: Buffer };
type Policy = { name: string; version: number; document: string };
const publicKey = (keyId: string) => call<Key & { versions: Key[] }>(admin.signer, 'GetPublicKey', { keyId });
const policy = (name: string) => call<Policy>(admin.keyAdmin, 'GetPolicy', { name });
const versions = (k: { versions: Key[] }) =>
  k.versions.map((v) => `v${v.version}:${v.state}:${v.publicKey.toString('hex')}`);

await call(admin.keyAdmin, 'CreateKey', { keyId: 'hot-a', algorithm: 'ECDSA_SECP256K1' });

/** What the database file holds, read past the signer. */
function onDisk() {
  const db = new Database(path, { readonly: true });
  try {
    return {
      keys: db.prepare('SELECT key_id, version, state, cka_id FROM keys ORDER BY key_id, version').all(),
      policies: db.prepare('SELECT name, version, document FROM policies ORDER BY name, version').all(),
      audit: db.prepare('SELECT seq, kind, hash FROM audit ORDER BY seq').all() as Array<{ seq: number; kind: string }>,
    };
  } finally {
    db.close();
  }
}

function auditInserts(fail: boolean): void {
  const db = new Database(path);
  try {
    const abort = "SELECT RAISE(ABORT, 'audit insert refused by test')";
    if (fail) db.exec(`CREATE TRIGGER audit_fails BEFORE INSERT ON audit BEGIN ${abort}; END`);
    else db.exec('DROP TRIGGER IF EXISTS audit_fails');
  } finally {
    db.close();
  }
}

/** The token's private keys, found through the signer's own HSM: a discarded version leaves none behind. */
function tokenKeys(): Promise<number> {
  const all = [{ type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PRIVATE_KEY }];
  return ts.signer.hsm.manage((s) => ts.signer.hsm.find(s, all).length);
}

t.test('when the audit insert fails, SetPolicy and RotateKey fail and change nothing', async (t) => {
  const policyBefore = await policy('open');
  const keyBefore = await publicKey('hot-a');
  const diskBefore = onDisk();
  const tokenBefore = await tokenKeys();
  t.equal(diskBefore.audit.at(-1)!.kind, 'key.create', 'the key creation was audited with it');

  auditInserts(true);
  t.teardown(() => auditInserts(false));
  const changed = JSON.stringify({ ...OPEN_POLICY, freshness: { maxSkewSeconds: 60 } });
  const internal = (method: string, request: object) =>
    refused(t, call(admin.keyAdmin, method, request), status.INTERNAL, 'INTERNAL');
  await internal('SetPolicy', { name: 'open', document: changed });
  await internal('RotateKey', { keyId: 'hot-a', overlapSeconds: 60 });
  await internal('DisableKeyVersion', { keyId: 'hot-a', version: 1 });
  await internal('CreateKey', { keyId: 'hot-b', algorithm: 'ED25519' });

  t.same(await policy('open'), policyBefore, 'GetPolicy: the same version and document');
  t.same(versions(await publicKey('hot-a')), versions(keyBefore), 'GetPublicKey: the same versions and states');
  await refused(t, publicKey('hot-b'), status.NOT_FOUND, 'KEY_NOT_FOUND');
  t.same(onDisk(), diskBefore, 'the file: no key, policy or audit row changed');
  t.equal(await tokenKeys(), tokenBefore, 'the token: the keys generated for the refused changes were removed');

  auditInserts(false);
  const set = await call<Policy>(admin.keyAdmin, 'SetPolicy', { name: 'open', document: changed });
  t.equal(set.version, policyBefore.version + 1, 'with the audit back, the policy changes');
  const rotated = await call<{ active: Key }>(admin.keyAdmin, 'RotateKey', { keyId: 'hot-a', overlapSeconds: 60 });
  t.equal(rotated.active.version, 2, 'and the key rotates to the next version: the refused one left no trace');
  const after = onDisk();
  t.same(
    after.audit.slice(diskBefore.audit.length).map((e) => e.kind),
    ['policy.set', 'key.rotate'],
    'each change with its one entry',
  );
});
