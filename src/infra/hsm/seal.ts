/**
 * Sealing of threshold key shares (ARCHITECTURE.md: keys stay in hardware): a share is stored only as AES-256-GCM
 * ciphertext under a non-extractable AES key generated inside this node's own token. Encryption
 * and decryption run in the HSM, so the sealing key never exists outside it; the share's
 * plaintext exists in this process only between `unseal` and the end of the protocol step.
 */
import { randomBytes } from 'node:crypto';
import pkcs11js from 'pkcs11js';
import { ckrCode } from './errors.js';
import type { Hsm } from './hsm.js';
import { LOCKED_KEY } from './keypair.js';
import type { Lane } from './pool.js';

/**
 * Format of a sealed share: `0x01 || iv (12) || ciphertext || tag (16)`. The version byte lets a
 * later format (another mechanism, key wrap, a longer tag) sit next to shares already on disk
 * and be told apart without guessing; an unknown version is refused, never tried.
 */
const VERSION = 0x01;
const IV_BYTES = 12; // 96-bit IV: GCM's native size (no GHASH of the IV; NIST SP 800-38D 8.2.2)
const TAG_BYTES = 16; // full 128-bit tag
const HEADER_BYTES = 1 + IV_BYTES;

/** AES-256: the key length generated here and required of a key found by label. */
const KEY_BYTES = 32;

/**
 * A sealed share could not be opened: wrong additional data, wrong key, any changed bit, or a
 * blob that is not a sealed share at all. The message never carries key or share material.
 */
export class SealError extends Error {
  override name = 'SealError';
}

/**
 * The additional data for a share of threshold key `keyId` in group `group` (its group id or
 * group public key). Callers MUST seal and unseal with it: GCM authenticates the additional
 * data, so a share copied to another key's or another group's row in the store fails to unseal
 * instead of being used in the wrong protocol run. Fields are length-prefixed under a domain
 * tag, so ("ab", "c") and ("a", "bc") never encode the same.
 */
export function shareAad(keyId: string, group: Uint8Array | string): Buffer {
  const fields = [Buffer.from('hsm-signer/threshold-share'), Buffer.from(keyId, 'utf8'), Buffer.from(group)];
  const out: Buffer[] = [];
  for (const f of fields) {
    if (f.length > 0xffff) throw new RangeError('share additional data field longer than 65535 bytes');
    const len = Buffer.alloc(2);
    len.writeUInt16BE(f.length);
    out.push(len, f);
  }
  return Buffer.concat(out);
}

/**
 * Returns the CKA_ID of the token's AES sealing key labelled `label`, generating it inside the
 * token if there is none: AES-256, token object, private, sensitive, never extractable, usable
 * only to encrypt and decrypt (not to wrap or unwrap other keys, not to derive), unmodifiable
 * and not copyable. Runs under `hsm.manage`, so
 * two callers never generate two keys with one label in one process.
 *
 * Fails closed: a key found under the label that was not generated in the token, could ever be
 * extracted, is not AES-256 or cannot encrypt and decrypt is refused, never used.
 */
export function ensureSealingKey(hsm: Hsm, label: string): Promise<Buffer> {
  if (label.length === 0) throw new TypeError('sealing key label must not be empty');
  return hsm.manage(async (session) => {
    const found = hsm.find(session, [
      { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
      { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_AES },
      { type: pkcs11js.CKA_LABEL, value: label },
    ]);
    if (found.length > 1)
      throw new Error(`${found.length} AES keys are labelled "${label}" in the token; expected one`);
    if (found.length === 1) return checkSealingKey(hsm, session, found[0]!, label);
    const ckaId = randomBytes(16);
    await hsm.p11.C_GenerateKeyAsync(session, { mechanism: pkcs11js.CKM_AES_KEY_GEN }, [
      { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
      { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_AES },
      { type: pkcs11js.CKA_VALUE_LEN, value: KEY_BYTES },
      { type: pkcs11js.CKA_ID, value: ckaId },
      { type: pkcs11js.CKA_LABEL, value: label },
      { type: pkcs11js.CKA_TOKEN, value: true },
      { type: pkcs11js.CKA_PRIVATE, value: true },
      { type: pkcs11js.CKA_SENSITIVE, value: true },
      { type: pkcs11js.CKA_EXTRACTABLE, value: false },
      { type: pkcs11js.CKA_ENCRYPT, value: true },
      { type: pkcs11js.CKA_DECRYPT, value: true },
      // Not a wrapping key: it cannot be used to export other keys out of the token.
      { type: pkcs11js.CKA_WRAP, value: false },
      { type: pkcs11js.CKA_UNWRAP, value: false },
      // No derivation, no attribute change, no copy. Not required of a key found by label: one
      // made before this existed still seals the shares already stored.
      ...LOCKED_KEY,
    ]);
    return ckaId;
  });
}

/** The CKA_ID of a sealing key found by label, after checking it is one we would have made. */
function checkSealingKey(hsm: Hsm, session: Buffer, key: Buffer, label: string): Buffer {
  const [id, len, local, sensitive, alwaysSensitive, extractable, neverExtractable, encrypt, decrypt, token] = hsm.p11
    .C_GetAttributeValue(session, key, [
      { type: pkcs11js.CKA_ID },
      { type: pkcs11js.CKA_VALUE_LEN },
      { type: pkcs11js.CKA_LOCAL },
      { type: pkcs11js.CKA_SENSITIVE },
      { type: pkcs11js.CKA_ALWAYS_SENSITIVE },
      { type: pkcs11js.CKA_EXTRACTABLE },
      { type: pkcs11js.CKA_NEVER_EXTRACTABLE },
      { type: pkcs11js.CKA_ENCRYPT },
      { type: pkcs11js.CKA_DECRYPT },
      { type: pkcs11js.CKA_TOKEN },
    ])
    .map((a) => a.value as Buffer);
  const on = (b: Buffer | undefined) => b !== undefined && b.length > 0 && b.some((x) => x !== 0);
  const ok =
    id !== undefined &&
    id.length > 0 &&
    len !== undefined &&
    readUlong(len) === KEY_BYTES &&
    on(local) && // generated in the token, not imported
    on(sensitive) &&
    on(alwaysSensitive) &&
    !on(extractable) &&
    on(neverExtractable) &&
    on(encrypt) &&
    on(decrypt) &&
    on(token);
  if (!ok) {
    throw new Error(
      `the AES key labelled "${label}" is not a sealing key this signer accepts ` +
        '(it must be AES-256, generated in the token, always sensitive, never extractable, encrypt and decrypt)',
    );
  }
  return Buffer.from(id);
}

/** CK_ULONG as the module returns it: native width and byte order (little-endian on our hosts). */
function readUlong(b: Buffer): number {
  if (b.length === 8) return Number(b.readBigUInt64LE());
  if (b.length === 4) return b.readUInt32LE();
  return -1;
}

/**
 * CKM_AES_GCM parameters in pkcs11js's CK_GCM_PARAMS form (PKCS#11 2.40 layout, which SoftHSM
 * 2.6 reads). `ivBits` is set explicitly so no field of the native struct is left uninitialised.
 * The version byte is authenticated with the caller's additional data, so a blob cannot be
 * relabelled as another format version and still open.
 */
function gcm(iv: Buffer, aad: Uint8Array): pkcs11js.Mechanism {
  const parameter: pkcs11js.GcmParams = {
    type: pkcs11js.CK_PARAMS_GCM,
    iv,
    ivBits: IV_BYTES * 8,
    aad: Buffer.concat([Buffer.of(VERSION), aad]),
    tagBits: TAG_BYTES * 8,
  };
  return { mechanism: pkcs11js.CKM_AES_GCM, parameter };
}

/** A Buffer over the same bytes, so secrets are not copied into more places than needed. */
function view(b: Uint8Array): Buffer {
  return Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength);
}

/**
 * Encrypts a share under the sealing key `keyCkaId` inside the HSM: AES-256-GCM with a fresh
 * random 96-bit IV per call and a 128-bit tag over `aad` (use {@link shareAad}). Returns
 * `0x01 || iv || ciphertext || tag`. Random IVs keep the GCM bound of 2^32 seals per key well
 * out of reach for share counts. The caller still owns `plaintext` and SHOULD wipe it after use.
 */
export async function seal(
  hsm: Hsm,
  keyCkaId: Uint8Array,
  plaintext: Uint8Array,
  aad: Uint8Array,
  lane: Lane = 'hot',
): Promise<Buffer> {
  if (plaintext.length === 0) throw new TypeError('refusing to seal an empty share');
  const iv = randomBytes(IV_BYTES);
  const body = await hsm.withSession(lane, (session) => {
    hsm.p11.C_EncryptInit(session, gcm(iv, aad), hsm.objectHandle(session, keyCkaId, pkcs11js.CKO_SECRET_KEY));
    return hsm.p11.C_EncryptAsync(session, view(plaintext), Buffer.alloc(plaintext.length + TAG_BYTES));
  });
  if (body.length !== plaintext.length + TAG_BYTES) {
    throw new Error(
      `the HSM returned ${body.length} bytes of AES-GCM output; expected ${plaintext.length + TAG_BYTES}`,
    );
  }
  return Buffer.concat([Buffer.of(VERSION), iv, body]);
}

/**
 * PKCS#11 results of C_Decrypt, after a successful C_DecryptInit, that mean "this ciphertext,
 * tag or additional data is not what was sealed". PKCS#11 2.40 names CKR_ENCRYPTED_DATA_INVALID;
 * SoftHSM 2.6.1 reports a GCM tag mismatch as CKR_GENERAL_ERROR (its OpenSSL decryptFinal fails).
 * Either way no plaintext is released. Any other failure (session, token, key handle) keeps its
 * own meaning and goes through the HSM's failure handling.
 */
const AUTH_FAILED = new Set([
  pkcs11js.CKR_ENCRYPTED_DATA_INVALID,
  pkcs11js.CKR_ENCRYPTED_DATA_LEN_RANGE,
  pkcs11js.CKR_GENERAL_ERROR,
]);

/**
 * Decrypts and authenticates a share sealed by {@link seal} with the same key and `aad`. Throws
 * {@link SealError} on any mismatch or a malformed blob; no unauthenticated byte is returned.
 * The caller owns the returned plaintext and MUST wipe it (`fill(0)`) when the protocol step ends.
 */
export async function unseal(
  hsm: Hsm,
  keyCkaId: Uint8Array,
  sealed: Uint8Array,
  aad: Uint8Array,
  lane: Lane = 'hot',
): Promise<Buffer> {
  const blob = view(sealed);
  if (blob.length < HEADER_BYTES + TAG_BYTES + 1) {
    throw new SealError(
      `the sealed share failed authentication: ${blob.length} bytes is too short to be a sealed share`,
    );
  }
  if (blob[0] !== VERSION) {
    throw new SealError(
      `the sealed share failed authentication: unknown format version 0x${blob[0]!.toString(16).padStart(2, '0')}`,
    );
  }
  const iv = Buffer.from(blob.subarray(1, HEADER_BYTES));
  const body = blob.subarray(HEADER_BYTES);
  const out = Buffer.alloc(body.length);
  try {
    const plain = await hsm.withSession(lane, async (session) => {
      hsm.p11.C_DecryptInit(session, gcm(iv, aad), hsm.objectHandle(session, keyCkaId, pkcs11js.CKO_SECRET_KEY));
      try {
        return await hsm.p11.C_DecryptAsync(session, body, out);
      } catch (e) {
        // A SealError is not a PKCS#11 error, so the pool keeps the session (C_Decrypt ended the
        // operation either way); the cause is dropped, it adds nothing and could carry data.
        const code = ckrCode(e);
        if (code !== undefined && AUTH_FAILED.has(code)) throw new SealError('the sealed share failed authentication');
        throw e;
      }
    });
    if (plain.length !== body.length - TAG_BYTES) {
      throw new Error(`the HSM returned ${plain.length} bytes of plaintext; expected ${body.length - TAG_BYTES}`);
    }
    // A copy of exactly the share in memory of its own (Buffer.alloc never uses the shared
    // pool), so the caller can wipe what it was given; the work buffer is wiped below.
    const share = Buffer.alloc(plain.length);
    plain.copy(share);
    return share;
  } finally {
    out.fill(0);
  }
}
