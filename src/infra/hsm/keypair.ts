import { randomBytes } from 'node:crypto';
import pkcs11js from 'pkcs11js';
import type { HsmAlgorithm } from '../config/schema.js';
import { ALGORITHMS } from './algorithms.js';
import type { Hsm } from './hsm.js';

export interface GeneratedKey {
  /** CKA_ID shared by the private and public objects. */
  ckaId: Buffer;
  /** Uncompressed SEC1 point (65 bytes) for ECDSA, 32 bytes for Ed25519. */
  publicKey: Buffer;
}

/**
 * Attributes that lock a private or secret key down beyond sensitive / not extractable (all
 * accepted by SoftHSM 2.6.1): no key derivation from it (ECDH with our signing key), no change
 * to any attribute after creation (C_SetAttributeValue fails with CKR_ACTION_PROHIBITED), and
 * no copy (C_CopyObject could otherwise make a twin with weaker attributes).
 */
export const LOCKED_KEY = [
  { type: pkcs11js.CKA_DERIVE, value: false },
  { type: pkcs11js.CKA_MODIFIABLE, value: false },
  { type: pkcs11js.CKA_COPYABLE, value: false },
];

/**
 * Generates a key pair inside the token. The private key is a token object that is sensitive,
 * never extractable, and locked ({@link LOCKED_KEY}), so its value cannot leave the HSM by any
 * PKCS#11 call and it cannot be copied, changed or used to derive another key.
 */
export function generateKeyPair(hsm: Hsm, algorithm: HsmAlgorithm, label: string): Promise<GeneratedKey> {
  const spec = ALGORITHMS[algorithm];
  const ckaId = randomBytes(16);
  const common = [
    { type: pkcs11js.CKA_TOKEN, value: true },
    { type: pkcs11js.CKA_KEY_TYPE, value: spec.keyType },
    { type: pkcs11js.CKA_ID, value: ckaId },
    { type: pkcs11js.CKA_LABEL, value: label },
  ];
  return hsm.manage(async (session) => {
    const { publicKey } = await hsm.p11.C_GenerateKeyPairAsync(
      session,
      { mechanism: spec.keyGen },
      [
        ...common,
        { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PUBLIC_KEY },
        { type: pkcs11js.CKA_EC_PARAMS, value: spec.ecParams },
        { type: pkcs11js.CKA_VERIFY, value: true },
      ],
      [
        ...common,
        { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PRIVATE_KEY },
        { type: pkcs11js.CKA_PRIVATE, value: true },
        { type: pkcs11js.CKA_SENSITIVE, value: true },
        { type: pkcs11js.CKA_EXTRACTABLE, value: false },
        { type: pkcs11js.CKA_SIGN, value: true },
        ...LOCKED_KEY,
      ],
    );
    const [attr] = hsm.p11.C_GetAttributeValue(session, publicKey, [{ type: pkcs11js.CKA_EC_POINT }]);
    return { ckaId, publicKey: unwrapEcPoint(attr!.value as Buffer, algorithm) };
  });
}

/** Reads the public key of the pair with this CKA_ID from the token. */
export function readPublicKey(hsm: Hsm, algorithm: HsmAlgorithm, ckaId: Uint8Array): Promise<Buffer> {
  return hsm.manage((session) => {
    const [obj] = hsm.find(session, [
      { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PUBLIC_KEY },
      { type: pkcs11js.CKA_ID, value: Buffer.from(ckaId) },
    ]);
    if (!obj) throw new Error('public key object not found in token');
    const [attr] = hsm.p11.C_GetAttributeValue(session, obj, [{ type: pkcs11js.CKA_EC_POINT }]);
    return unwrapEcPoint(attr!.value as Buffer, algorithm);
  });
}

/**
 * CKA_EC_POINT is a DER OCTET STRING around the point in PKCS#11 2.40; some modules return the
 * bare point. Accept both, judged by the curve's point size so a bare point is never misread.
 */
export function unwrapEcPoint(v: Buffer, algorithm: HsmAlgorithm): Buffer {
  const size = algorithm === 'ed25519' ? 32 : 65;
  if (v.length === size) return v;
  if (v.length === size + 2 && v[0] === 0x04 && v[1] === size) return v.subarray(2);
  throw new Error(`unexpected CKA_EC_POINT encoding (${v.length} bytes)`);
}

/**
 * Destroys the private key object with this CKA_ID (C_DestroyObject), and the public one too
 * when `withPublic` (an unused pair). The public key of a destroyed version stays in the store,
 * so signatures it made can still be verified.
 */
export function destroyPrivateKey(hsm: Hsm, ckaId: Uint8Array, withPublic = false): Promise<void> {
  return hsm.manage((session) => {
    const classes = withPublic ? [pkcs11js.CKO_PRIVATE_KEY, pkcs11js.CKO_PUBLIC_KEY] : [pkcs11js.CKO_PRIVATE_KEY];
    for (const cls of classes) {
      for (const obj of hsm.find(session, [
        { type: pkcs11js.CKA_CLASS, value: cls },
        { type: pkcs11js.CKA_ID, value: Buffer.from(ckaId) },
      ])) {
        hsm.p11.C_DestroyObject(session, obj);
      }
    }
    hsm.forget(ckaId);
  });
}
