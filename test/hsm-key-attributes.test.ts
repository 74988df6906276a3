import pkcs11js from 'pkcs11js';
import t, { type Test } from 'tap';
import { makeToken, tempDir } from '../harness/token.js';
import { CKR_ACTION_PROHIBITED, ckrCode, ckrName } from '../src/infra/hsm/errors.js';
import { Hsm } from '../src/infra/hsm/hsm.js';
import { destroyPrivateKey, generateKeyPair } from '../src/infra/hsm/keypair.js';
import { ensureSealingKey } from '../src/infra/hsm/seal.js';

// Keys made by the signer's own code on a real SoftHSM token, read back and attacked through
// PKCS#11 the way another program logged in to the same token could.
const tmp = await tempDir('key-attributes-');
const token = await makeToken(tmp.path);
Object.assign(process.env, token.env);
const hsm = await Hsm.open({ uri: token.uri, sessions: 2, recoveryIntervalMs: 1000 });
t.teardown(async () => {
  await hsm.close();
  await tmp.cleanup();
});
const p11 = hsm.p11;

const ATTRS = {
  CKA_SENSITIVE: true,
  CKA_ALWAYS_SENSITIVE: true,
  CKA_EXTRACTABLE: false,
  CKA_NEVER_EXTRACTABLE: true,
  CKA_DERIVE: false,
  CKA_MODIFIABLE: false,
  CKA_COPYABLE: false,
  CKA_TOKEN: true,
  CKA_PRIVATE: true,
} as const;

function find(session: Buffer, cls: number, ckaId: Uint8Array): Buffer {
  const [obj] = hsm.find(session, [
    { type: pkcs11js.CKA_CLASS, value: cls },
    { type: pkcs11js.CKA_ID, value: Buffer.from(ckaId) },
  ]);
  if (!obj) throw new Error('object not found');
  return obj;
}

/**
 * The CKR a PKCS#11 call fails with, or 'CKR_OK' if it went through. pkcs11js 2.1 throws a plain
 * Error ("CKR_VENDOR_DEFINED:27") from C_SetAttributeValue and C_CopyObject: the code is read
 * from its message.
 */
function outcome(fn: () => unknown): string {
  try {
    fn();
    return 'CKR_OK';
  } catch (e) {
    const code = ckrCode(e) ?? Number(/^CKR_\w+:(\d+)/.exec((e as Error).message)?.[1]);
    if (!Number.isInteger(code)) throw e;
    return ckrName(new pkcs11js.Pkcs11Error('refused', code, 'test'));
  }
}

/** Reads every attribute of ATTRS back and tries to change, copy and derive from the key. */
async function checkLocked(t: Test, what: string, cls: number, ckaId: Uint8Array) {
  await hsm.manage((s) => {
    const key = find(s, cls, ckaId);
    const names = Object.keys(ATTRS) as Array<keyof typeof ATTRS>;
    const values = p11.C_GetAttributeValue(
      s,
      key,
      names.map((n) => ({ type: pkcs11js[n] })),
    );
    names.forEach((n, i) => {
      const v = values[i]!.value as Buffer;
      t.equal(v.length === 1 && v[0] === 1, ATTRS[n], `${what}: ${n} is ${ATTRS[n]}`);
    });
    for (const [attr, value] of [
      ['CKA_LABEL', 'renamed'],
      ['CKA_DERIVE', true],
      ['CKA_EXTRACTABLE', true],
      ['CKA_SENSITIVE', false],
    ] as const) {
      const r = outcome(() => p11.C_SetAttributeValue(s, key, [{ type: pkcs11js[attr], value }]));
      t.not(r, 'CKR_OK', `${what}: C_SetAttributeValue(${attr}) is refused (${r})`);
    }
    // CKA_LABEL is the one change PKCS#11 allows on an ordinary key: its refusal is the lock.
    t.equal(
      outcome(() => p11.C_SetAttributeValue(s, key, [{ type: pkcs11js.CKA_LABEL, value: 'renamed' }])),
      'CKR_ACTION_PROHIBITED',
      `${what}: not modifiable`,
    );
    t.equal(
      outcome(() => p11.C_CopyObject(s, key, [])),
      'CKR_ACTION_PROHIBITED',
      `${what}: C_CopyObject refused`,
    );
    const weaker = [{ type: pkcs11js.CKA_TOKEN, value: false }];
    t.equal(
      outcome(() => p11.C_CopyObject(s, key, weaker)),
      'CKR_ACTION_PROHIBITED',
      `${what}: no session copy`,
    );
  });
}

t.test('CKR_ACTION_PROHIBITED has its name', async (t) => {
  t.equal(ckrName(new pkcs11js.Pkcs11Error('x', CKR_ACTION_PROHIBITED, 'C_CopyObject')), 'CKR_ACTION_PROHIBITED');
});

for (const algorithm of ['ecdsa-secp256k1', 'ecdsa-p256', 'ed25519'] as const) {
  t.test(`${algorithm} private keys are locked`, async (t) => {
    const key = await generateKeyPair(hsm, algorithm, `locked-${algorithm}`);
    await checkLocked(t, algorithm, pkcs11js.CKO_PRIVATE_KEY, key.ckaId);
    await hsm.manage((s) => {
      const priv = find(s, pkcs11js.CKO_PRIVATE_KEY, key.ckaId);
      const [derive] = p11.C_GetAttributeValue(s, priv, [{ type: pkcs11js.CKA_DERIVE }]);
      t.same(derive!.value, Buffer.of(0));
      if (algorithm === 'ed25519') return;
      // ECDH with the signing key would turn it into a key-agreement oracle: refused.
      const r = outcome(() =>
        p11.C_DeriveKey(
          s,
          {
            mechanism: pkcs11js.CKM_ECDH1_DERIVE,
            parameter: {
              type: pkcs11js.CK_PARAMS_EC_DH,
              kdf: pkcs11js.CKD_NULL,
              publicData: key.publicKey,
            } as pkcs11js.ECDH1,
          },
          priv,
          [
            { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
            { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_GENERIC_SECRET },
            { type: pkcs11js.CKA_VALUE_LEN, value: 32 },
            { type: pkcs11js.CKA_TOKEN, value: false },
          ],
        ),
      );
      t.equal(r, 'CKR_KEY_FUNCTION_NOT_PERMITTED', `no ECDH with the signing key (${r})`);
    });
    // Not modifiable is not "not destroyable": retiring a key still works.
    await destroyPrivateKey(hsm, key.ckaId, true);
    const left = await hsm.manage((s) => hsm.find(s, [{ type: pkcs11js.CKA_ID, value: key.ckaId }]));
    t.equal(left.length, 0, 'the locked key can still be destroyed');
  });
}

t.test('the share-sealing AES key is locked', async (t) => {
  const ckaId = await ensureSealingKey(hsm, 'locked-sealing-key');
  await checkLocked(t, 'sealing key', pkcs11js.CKO_SECRET_KEY, ckaId);
  t.same(await ensureSealingKey(hsm, 'locked-sealing-key'), ckaId, 'found again by label and accepted');
});
