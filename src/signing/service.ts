import type { Algorithm } from '../config/schema.js';
import { invalid } from '../errors.js';
import { ALGORITHMS } from '../hsm/algorithms.js';
import type { Hsm } from '../hsm/hsm.js';
import type { Lane } from '../hsm/pool.js';
import type { KeyRegistry } from '../keys/registry.js';
import { parseDigest } from '../payloads/digest.js';
import { assembleSignedEvm, decodeEvmTransaction, evmAddress, type SignedEvmTx } from '../payloads/evm.js';
import { parseMessage } from '../payloads/message.js';
import type { KeyRecord } from '../store/store.js';
import { signatureCheck, type Signature, type SignatureCheck } from './selfcheck.js';

export type Payload =
  | { kind: 'digest'; digest: Uint8Array }
  | { kind: 'message'; message: Uint8Array }
  | { kind: 'evm'; unsignedTx: Uint8Array };

export interface SignResult {
  key: KeyRecord;
  signature: Signature;
  evm?: SignedEvmTx & { chainId: bigint; nonce: bigint; from: string };
}

/** Which payload kinds each algorithm accepts: a digest only where the curve signs digests. */
const ACCEPTS: Record<Algorithm, ReadonlySet<Payload['kind']>> = {
  'ecdsa-secp256k1': new Set(['digest', 'evm']),
  'ecdsa-p256': new Set(['digest']),
  ed25519: new Set(['message']),
};

/**
 * Decodes a payload, signs it in the HSM and verifies the result before returning it. Callers
 * MUST have authorised the client for the key; this layer only checks that the payload fits it.
 */
export class SigningService {
  private readonly checks = new Map<string, SignatureCheck>();

  constructor(
    private readonly hsm: Hsm,
    private readonly keys: KeyRegistry,
  ) {}

  async sign(keyId: string, payload: Payload, lane: Lane = 'hot'): Promise<SignResult> {
    const key = this.keys.get(keyId);
    if (!ACCEPTS[key.algorithm].has(payload.kind)) {
      throw invalid('PAYLOAD_KIND_UNSUPPORTED', `key "${keyId}" (${key.algorithm}) does not sign ${payload.kind} payloads`, {
        keyId,
        algorithm: key.algorithm,
      });
    }
    const mechanism = { mechanism: ALGORITHMS[key.algorithm].sign };
    if (payload.kind === 'evm') {
      const tx = decodeEvmTransaction(payload.unsignedTx);
      const raw = await this.hsm.sign(key.ckaId, mechanism, tx.signingHash, lane);
      const signature = this.check(key)(tx.signingHash, raw);
      const r = signature.bytes.subarray(0, 32);
      const s = signature.bytes.subarray(32);
      const signed = assembleSignedEvm(tx, r, s, signature.recoveryId!);
      return {
        key,
        signature,
        evm: { ...signed, chainId: tx.intent.chainId, nonce: tx.intent.nonce, from: evmAddress(key.publicKey) },
      };
    }
    const data = payload.kind === 'digest' ? parseDigest(payload.digest) : parseMessage(payload.message);
    const raw = await this.hsm.sign(key.ckaId, mechanism, data, lane);
    return { key, signature: this.check(key)(data, raw) };
  }

  private check(key: KeyRecord): SignatureCheck {
    const id = Buffer.from(key.ckaId).toString('hex');
    let c = this.checks.get(id);
    if (!c) this.checks.set(id, (c = signatureCheck(key.algorithm, key.publicKey)));
    return c;
  }
}
