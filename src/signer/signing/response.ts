import type { Algorithm } from '../../infra/config/schema.js';
import type { SignResult } from '../signing/service.js';

export const ALG_TO_WIRE: Record<Algorithm, string> = {
  'ecdsa-secp256k1': 'ECDSA_SECP256K1',
  'ecdsa-p256': 'ECDSA_P256',
  ed25519: 'ED25519',
  'frost-ed25519': 'FROST_ED25519',
  'frost-secp256k1-tr': 'FROST_SECP256K1_TR',
};

/** The SignResponse for a signed payload; also what the replay store keeps. */
export function signResultToWire(out: SignResult, requestId: string) {
  return {
    keyId: out.key.keyId,
    keyVersion: out.key.version,
    algorithm: ALG_TO_WIRE[out.key.algorithm],
    signature: Buffer.from(out.signature.bytes),
    ...(out.signature.recoveryId !== undefined ? { recoveryId: out.signature.recoveryId } : {}),
    requestId,
    evm: out.evm
      ? {
          r: Buffer.from(out.evm.r),
          s: Buffer.from(out.evm.s),
          v: out.evm.v.toString(),
          yParity: out.evm.yParity,
          signedTx: Buffer.from(out.evm.signedRlp),
          txHash: Buffer.from(out.evm.txHash),
          chainId: out.evm.chainId.toString(),
          nonce: out.evm.nonce.toString(),
          from: out.evm.from,
        }
      : null,
  };
}
