/**
 * What the bench sends: random digests, unsigned EIP-1559 transfers (built by ethers, as a
 * payment engine would) with nonces that never repeat per key, and threshold signatures checked
 * with noble's verifiers. Each op is an `Op` of bench/load.ts.
 */
import { randomBytes, randomInt } from 'node:crypto';
import type * as grpc from '@grpc/grpc-js';
import { ed25519 } from '@noble/curves/ed25519.js';
import { schnorr } from '@noble/curves/secp256k1.js';
import { transfer } from '../harness/evm.js';
import { call, nowTimestamp } from '../src/client/client.js';
import type { ThresholdAlgorithm } from '../src/core/frost/suites.js';
import type { Op } from './load.js';

/** Random 32-byte digests / messages, none all-zero, reused round-robin. */
const PAYLOADS = Array.from({ length: 4096 }, () => randomBytes(32));
export const payload = (seq: number) => PAYLOADS[seq & 4095]!;

/** Unique among runs against one store: request and batch ids start with it. */
export const RUN = randomBytes(4).toString('hex');

/** The next nonce of one key on one chain; the bench is its only user. */
export class Nonces {
  private next = 0;
  take(n = 1): number {
    const first = this.next;
    this.next += n;
    return first;
  }
}

export type EvmItem = ReturnType<typeof transfer>['payload'];

/** `n` transfers on chain 1 with contiguous nonces from `first`. */
export const evmTransfers = (first: number, n: number): EvmItem[] =>
  Array.from({ length: n }, (_, i) => transfer({ nonce: first + i }).payload);

/** Signer.Sign of a digest (or an Ed25519 message), round-robin over `signers`. */
export function signOp(signers: grpc.Client[], keyId: string, kind: 'digest' | 'message'): Op {
  const run = randomBytes(4).toString('hex');
  return (seq: number) =>
    call(signers[seq % signers.length]!, 'Sign', {
      keyId,
      requestId: `bench-${run}-${seq}`,
      clientTime: nowTimestamp(),
      [kind]: payload(seq),
    }).then(() => 1);
}

/** Signer.Sign of an EVM transfer with the key's next nonce. */
export function signEvmOp(signers: grpc.Client[], keyId: string, nonces: Nonces): Op {
  const run = randomBytes(4).toString('hex');
  return (seq: number) => {
    const nonce = nonces.take();
    return call(signers[seq % signers.length]!, 'Sign', {
      keyId,
      requestId: `evm-${run}-${nonce}`,
      clientTime: nowTimestamp(),
      ...transfer({ nonce }).payload,
    }).then(() => 1);
  };
}

/** One Signer.SignBatch; resolves to the number of items, rejects if any item failed. */
export async function signBatch(signer: grpc.Client, keyId: string, batchId: string, items: object[]): Promise<number> {
  const res = await call<{ results: Array<{ error?: { reason: string; message: string } | null }> }>(
    signer,
    'SignBatch',
    { batchId, keyId, clientTime: nowTimestamp(), items },
    120_000,
  );
  const failed = res.results.find((r) => r.error);
  if (failed || res.results.length !== items.length) {
    throw new Error(
      `batch ${batchId}: item failed: ${failed?.error ? `${failed.error.reason}: ${failed.error.message}` : 'missing results'}`,
    );
  }
  return items.length;
}

/** What a threshold signature signs: a 32-byte digest (BIP340) or a 32..64-byte message (Ed25519). */
export const THRESHOLD_KIND: Record<ThresholdAlgorithm, 'digest' | 'message'> = {
  'frost-ed25519': 'message',
  'frost-secp256k1-tr': 'digest',
};

/** Random payloads of a suite, used round-robin by the in-process baseline and the service alike. */
export const thresholdPayloads = (suite: ThresholdAlgorithm, n = 1024): Buffer[] =>
  Array.from({ length: n }, () => randomBytes(THRESHOLD_KIND[suite] === 'digest' ? 32 : 32 + randomInt(33)));

/** Checks a signature with noble's chain verifier (RFC 8032 strict, BIP340), not the FROST code. */
export function verifies(suite: ThresholdAlgorithm, signature: Uint8Array, payload: Uint8Array, publicKey: Uint8Array) {
  try {
    if (suite === 'frost-ed25519') return ed25519.verify(signature, payload, publicKey, { zip215: false });
    return schnorr.verify(signature, payload, publicKey);
  } catch {
    return false;
  }
}

/**
 * Signer.Sign on a threshold key; every 7th signature (up to 300) is kept, and `check` throws
 * unless each verifies under the key's public key: a fast wrong answer must not count.
 */
export function thresholdSignOp(
  signer: grpc.Client,
  key: { keyId: string; publicKey: Uint8Array },
  suite: ThresholdAlgorithm,
  payloads: Buffer[],
) {
  const run = randomBytes(4).toString('hex');
  const sample: Array<[Uint8Array, Uint8Array]> = [];
  const op: Op = async (seq) => {
    const payload = payloads[seq % payloads.length]!;
    const request = { keyId: key.keyId, requestId: `tb-${run}-${seq}`, clientTime: nowTimestamp() };
    const sign = { ...request, [THRESHOLD_KIND[suite]]: payload };
    const res = await call<{ signature: Buffer }>(signer, 'Sign', sign, 30_000);
    if (seq % 7 === 0 && sample.length < 300) sample.push([res.signature, payload]);
    return 1;
  };
  const check = () => {
    const bad = sample.filter(([sig, payload]) => !verifies(suite, sig, payload, key.publicKey)).length;
    if (bad || !sample.length) throw new Error(`${suite}: ${bad} of ${sample.length} sampled signatures do not verify`);
    return sample.length;
  };
  return { op, check };
}
