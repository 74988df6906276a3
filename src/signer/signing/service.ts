import { createHash } from 'node:crypto';
import { SignerError } from '../../core/errors.js';
import { isThresholdAlgorithm } from '../../core/frost/suites.js';
import { parseDigest } from '../../core/payloads/digest.js';
import {
  assembleSignedEvm,
  type DecodedEvmTx,
  decodeEvmTransaction,
  evmAddress,
  type SignedEvmTx,
} from '../../core/payloads/evm.js';
import { parseMessage } from '../../core/payloads/message.js';
import type { Algorithm, HsmAlgorithm } from '../../infra/config/schema.js';
import { ALGORITHMS } from '../../infra/hsm/algorithms.js';
import type { Hsm } from '../../infra/hsm/hsm.js';
import type { Lane } from '../../infra/hsm/pool.js';
import type { KeyRecord } from '../../infra/store/store.js';
import type { KeyRegistry } from '../keys/registry.js';
import { sweepVersions } from '../keys/sweep.js';
import type { ClientSigned, FaultListener, ThresholdSigner } from '../threshold/threshold-signer.js';
import { type Signature, type SignatureCheck, signatureCheck } from './selfcheck.js';

/**
 * The (chain, account nonce) a payload the service does not decode spends, declared by the
 * client: one payload per (key version, chain, nonce), as for decoded EVM transactions.
 */
export interface ReplayScope {
  chainId: bigint;
  nonce: bigint;
}

export type Payload =
  | { kind: 'digest'; digest: Uint8Array; scope?: ReplayScope }
  | { kind: 'message'; message: Uint8Array; scope?: ReplayScope }
  | { kind: 'evm'; unsignedTx: Uint8Array };

/** A decoded, validated payload bound to a key version, ready for policy and signing. */
export interface Prepared {
  key: KeyRecord;
  kind: Payload['kind'];
  /** What the HSM signs: the digest, the message, or the transaction's signing hash. */
  data: Uint8Array;
  evm?: DecodedEvmTx;
  scope?: ReplayScope;
  /**
   * sha256 over key id, kind and payload bytes: "the same request" for replays. Not the version:
   * a retry that spans a rotation must find the original result, not look like another payload.
   */
  payloadHash: Uint8Array;
  /**
   * Set when `key` is a retired version named explicitly: the request can only be a sweep to the
   * active version's address (src/core/policy/sweep.ts decides, in the sign flow).
   */
  sweep?: { activeVersion: number; activeAddress: `0x${string}` };
}

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
  'frost-ed25519': new Set(['message']),
  // BIP340 signs 32-byte messages: a Taproot sighash, sent as a digest.
  'frost-secp256k1-tr': new Set(['digest']),
};

/**
 * Decodes payloads, signs them in the HSM and verifies each result before returning it.
 * Callers MUST have authorised the client, applied policy and reserved the request first.
 */
export class SigningService {
  private readonly checks = new Map<string, SignatureCheck>();
  /** EVM addresses by public key: two keccaks and a checksum per signature otherwise. */
  private readonly addresses = new WeakMap<Uint8Array, string>();

  constructor(
    private readonly hsm: Hsm,
    private readonly keys: KeyRegistry,
    private readonly threshold?: ThresholdSigner,
  ) {}

  /**
   * Validates the payload against the key version (0: the active one) and decodes it; throws
   * INVALID_ARGUMENT refusals, or KEY_VERSION_RETIRED for a pinned version that no longer signs.
   */
  prepare(keyId: string, payload: Payload, version = 0): Prepared {
    const sweep = sweepVersions(this.keys, keyId, version);
    if (sweep) return this.prepareSweep(sweep.retired, sweep.active, payload);
    const key = this.keys.forSigning(keyId, version);
    if (!ACCEPTS[key.algorithm].has(payload.kind)) {
      throw new SignerError(
        'PAYLOAD_KIND_UNSUPPORTED',
        `key "${keyId}" (${key.algorithm}) does not sign ${payload.kind} payloads`,
        {
          keyId,
          algorithm: key.algorithm,
        },
      );
    }
    const raw =
      payload.kind === 'digest' ? payload.digest : payload.kind === 'message' ? payload.message : payload.unsignedTx;
    const payloadHash = createHash('sha256').update(`${key.keyId}\0${payload.kind}\0`).update(raw).digest();
    if (payload.kind === 'evm') {
      const evm = decodeEvmTransaction(payload.unsignedTx);
      return { key, kind: 'evm', data: evm.signingHash, evm, payloadHash };
    }
    const data = payload.kind === 'digest' ? parseDigest(payload.digest) : parseMessage(payload.message);
    return { key, kind: payload.kind, data, payloadHash, ...(payload.scope ? { scope: payload.scope } : {}) };
  }

  /**
   * A retired version signs only EVM transactions (sweeps, decided by the flow); anything else
   * is refused as before a sweep existed, with KEY_VERSION_RETIRED.
   */
  private prepareSweep(retired: KeyRecord, active: KeyRecord, payload: Payload): Prepared {
    if (payload.kind !== 'evm' || retired.algorithm !== 'ecdsa-secp256k1' || active.algorithm !== 'ecdsa-secp256k1') {
      const why =
        `key "${retired.keyId}" version ${retired.version} is ${retired.state}; sign with the active version ` +
        '(a retired EVM version signs only sweeps: EVM transfers to the active address)';
      throw new SignerError('KEY_VERSION_RETIRED', why, {
        keyId: retired.keyId,
        version: String(retired.version),
        state: retired.state,
      });
    }
    // Bound to the retired version: the same bytes as an ordinary request are another request.
    const hashed = `${retired.keyId}\0evm-sweep@v${retired.version}\0`;
    const payloadHash = createHash('sha256').update(hashed).update(payload.unsignedTx).digest();
    const evm = decodeEvmTransaction(payload.unsignedTx);
    const sweep = { activeVersion: active.version, activeAddress: evmAddress(active.publicKey) };
    return { key: retired, kind: 'evm', data: evm.signingHash, evm, payloadHash, sweep };
  }

  /**
   * `request` goes to threshold cosigners, which keep their own replay records; its `onFault`
   * hears of each cosigner left out of this signature (for the request's audit entries); its
   * `deadline` (epoch ms, the gRPC call's) caps the wait for an HSM session.
   */
  async sign(
    p: Prepared,
    lane: Lane = 'hot',
    request: {
      client: string;
      requestId: string;
      onFault?: FaultListener;
      deadline?: number | undefined;
      /** The client's signed request, which each cosigner of a threshold key checks itself. */
      signed?: ClientSigned | undefined;
    } = {
      client: '',
      requestId: '',
    },
  ): Promise<SignResult> {
    if (isThresholdAlgorithm(p.key.algorithm)) {
      if (!this.threshold)
        throw new SignerError(
          'THRESHOLD_NOT_CONFIGURED',
          'threshold keys need cosigners: set the threshold section of the config',
        );
      // The aggregate is checked with an independent verifier before it is returned.
      // The request's onFault hears of each cosigner left out (for the request's audit entries).
      const { client, requestId, onFault, signed } = request;
      const kind = p.kind as 'message' | 'digest';
      const scope = p.scope ? { scope: p.scope } : {};
      const faults = onFault ? { onFault } : {};
      const bytes = await this.threshold.sign(
        p.key,
        { client, requestId, kind, payload: p.data, ...scope, ...faults, signed },
        lane,
      );
      return { key: p.key, signature: { bytes } };
    }
    const mechanism = { mechanism: ALGORITHMS[p.key.algorithm as HsmAlgorithm].sign };
    const raw = await this.hsm.sign(p.key.ckaId, mechanism, p.data, lane, request.deadline);
    const signature = await this.check(p.key, lane)(p.data, raw);
    if (!p.evm) return { key: p.key, signature };
    const signed = assembleSignedEvm(
      p.evm,
      signature.bytes.subarray(0, 32),
      signature.bytes.subarray(32),
      signature.recoveryId!,
    );
    return {
      key: p.key,
      signature,
      evm: { ...signed, chainId: p.evm.intent.chainId, nonce: p.evm.intent.nonce, from: this.address(p.key.publicKey) },
    };
  }

  private address(publicKey: Uint8Array): string {
    let a = this.addresses.get(publicKey);
    if (a === undefined) {
      a = evmAddress(publicKey);
      this.addresses.set(publicKey, a);
    }
    return a;
  }

  private check(key: KeyRecord, lane: Lane): SignatureCheck {
    const id = `${lane}:${Buffer.from(key.ckaId).toString('hex')}`;
    let c = this.checks.get(id);
    if (!c) {
      const mechanism = { mechanism: ALGORITHMS[key.algorithm as HsmAlgorithm].sign };
      c = signatureCheck(key.algorithm as HsmAlgorithm, key.publicKey, (data, sig) =>
        this.hsm.verify(key.ckaId, mechanism, data, sig, lane),
      );
      this.checks.set(id, c);
    }
    return c;
  }
}
