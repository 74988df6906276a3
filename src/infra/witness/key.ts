import { ed25519 } from '@noble/curves/ed25519.js';
import pkcs11js from 'pkcs11js';
import { CKM_EDDSA } from '../hsm/algorithms.js';
import type { Hsm } from '../hsm/hsm.js';
import { generateKeyPair, readPublicKey } from '../hsm/keypair.js';

/** Label of the witness's Ed25519 key pair in its token. */
export const WITNESS_KEY_LABEL = 'hsm-signer/witness-cosigning';

export interface WitnessKey {
  /** Raw Ed25519 public key (32 bytes): what the signer's `witness.endpoints[].publicKey` holds. */
  readonly publicKey: Uint8Array;
  /** Signs with the token's key (CKM_EDDSA) and checks the signature before returning it. */
  sign(message: Uint8Array): Promise<Uint8Array>;
}

/**
 * The witness's own cosigning key, generated inside its token on first start (never imported, so
 * it never existed outside the HSM) and found there by label afterwards. Two key pairs under the
 * label are refused: which one the log's auditors trust would be a guess.
 */
export async function ensureWitnessKey(hsm: Hsm, label = WITNESS_KEY_LABEL): Promise<WitnessKey> {
  const found = await hsm.manage((session) =>
    hsm
      .find(session, [
        { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PRIVATE_KEY },
        { type: pkcs11js.CKA_LABEL, value: label },
      ])
      .map((o) => hsm.p11.C_GetAttributeValue(session, o, [{ type: pkcs11js.CKA_ID }])[0]!.value as Buffer),
  );
  if (found.length > 1)
    throw new Error(`${found.length} private keys are labelled "${label}" in the token; expected one`);
  const { ckaId, publicKey } = found[0]
    ? { ckaId: found[0], publicKey: await readPublicKey(hsm, 'ed25519', found[0]) }
    : await generateKeyPair(hsm, 'ed25519', label);
  const pub = new Uint8Array(publicKey);
  return {
    publicKey: pub,
    async sign(message) {
      const sig = new Uint8Array(await hsm.sign(ckaId, { mechanism: CKM_EDDSA }, message));
      // A cosignature that does not verify would be published under our name: never return one.
      if (!ed25519.verify(sig, message, pub)) throw new Error('witness key: the token returned a bad signature');
      return sig;
    },
  };
}
