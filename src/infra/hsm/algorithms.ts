import pkcs11js from 'pkcs11js';
import type { HsmAlgorithm } from '../config/schema.js';

// Not exported by pkcs11js 2.1; values from PKCS#11 v3.0.
export const CKK_EC_EDWARDS = 0x40;
export const CKM_EC_EDWARDS_KEY_PAIR_GEN = 0x1055;
export const CKM_EDDSA = 0x1057;

export interface AlgorithmSpec {
  keyType: number;
  keyGen: number;
  sign: number;
  /** DER-encoded OID of the curve (CKA_EC_PARAMS). */
  ecParams: Buffer;
}

export const ALGORITHMS: Record<HsmAlgorithm, AlgorithmSpec> = {
  'ecdsa-secp256k1': {
    keyType: pkcs11js.CKK_EC,
    keyGen: pkcs11js.CKM_EC_KEY_PAIR_GEN,
    sign: pkcs11js.CKM_ECDSA,
    ecParams: Buffer.from('06052b8104000a', 'hex'), // 1.3.132.0.10
  },
  'ecdsa-p256': {
    keyType: pkcs11js.CKK_EC,
    keyGen: pkcs11js.CKM_EC_KEY_PAIR_GEN,
    sign: pkcs11js.CKM_ECDSA,
    ecParams: Buffer.from('06082a8648ce3d030107', 'hex'), // 1.2.840.10045.3.1.7
  },
  ed25519: {
    keyType: CKK_EC_EDWARDS,
    keyGen: CKM_EC_EDWARDS_KEY_PAIR_GEN,
    sign: CKM_EDDSA,
    ecParams: Buffer.from('06032b6570', 'hex'), // 1.3.101.112
  },
};
