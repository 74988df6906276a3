/**
 * What the bench sends: random digests, and unsigned EIP-1559 transfers (built by ethers, as a
 * payment engine would) with nonces that never repeat per key.
 */
import { randomBytes } from 'node:crypto';
import type * as grpc from '@grpc/grpc-js';
import { call, nowTimestamp } from '../src/client/client.js';
import { transfer } from '../harness/evm.js';

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
export const evmTransfers = (first: number, n: number): EvmItem[] => Array.from({ length: n }, (_, i) => transfer({ nonce: first + i }).payload);

/** Signer.Sign of a digest (or an Ed25519 message), round-robin over `signers`. */
export function signOp(signers: grpc.Client[], keyId: string, kind: 'digest' | 'message') {
  const run = randomBytes(4).toString('hex');
  return (seq: number) =>
    call(signers[seq % signers.length]!, 'Sign', { keyId, requestId: `bench-${run}-${seq}`, clientTime: nowTimestamp(), [kind]: payload(seq) }).then(() => 1);
}

/** Signer.Sign of an EVM transfer with the key's next nonce. */
export function signEvmOp(signers: grpc.Client[], keyId: string, nonces: Nonces) {
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
    throw new Error(`batch ${batchId}: item failed: ${failed?.error ? `${failed.error.reason}: ${failed.error.message}` : 'missing results'}`);
  }
  return items.length;
}

/** Signer.SignBatch calls of `batch` digests (or messages) each. */
export function signBatchOp(signers: grpc.Client[], keyId: string, kind: 'digest' | 'message', batch: number) {
  const run = randomBytes(4).toString('hex');
  return (seq: number) =>
    signBatch(
      signers[seq % signers.length]!,
      keyId,
      `bench-${run}-${seq}`,
      Array.from({ length: batch }, (_, i) => ({ [kind]: payload(seq * batch + i) })),
    );
}
