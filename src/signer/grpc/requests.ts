import { SignerError } from '../../core/errors.js';
import type { CanonicalPayload } from '../../core/request-signing/canonical.js';
import type { Payload } from '../signing/service.js';

/** Request messages as proto-loader decodes them (64-bit integers as decimal strings). */
export interface WireTimestamp {
  seconds: string;
  nanos: number;
}

export interface WirePayload {
  payload?: 'digest' | 'message' | 'evmTransaction';
  digest?: Buffer;
  message?: Buffer;
  evmTransaction?: { unsignedTx: Buffer };
  replayScope?: { chainId: string; accountNonce: string } | null;
}

export interface WireSignRequest extends WirePayload {
  keyId: string;
  requestId: string;
  clientTime: WireTimestamp | null;
  keyVersion: number;
}

export interface WireBatchRequest {
  batchId: string;
  keyId: string;
  clientTime: WireTimestamp | null;
  items: WirePayload[];
}

/**
 * Replay scopes are kept in signed 64-bit columns (SQLite INTEGER, PostgreSQL BIGINT); the wire
 * type is uint64, so values above this would fail inside the store transaction.
 */
export const MAX_SCOPE_VALUE = 2n ** 63n - 1n;

function scopeValue(field: string, value: string): bigint {
  const n = BigInt(value);
  if (n > MAX_SCOPE_VALUE) {
    throw new SignerError(
      'REQUEST_INVALID',
      `replay_scope.${field} ${value} is above ${MAX_SCOPE_VALUE}, the largest the replay store keeps`,
      {
        field: `replay_scope.${field}`,
        max: String(MAX_SCOPE_VALUE),
      },
    );
  }
  return n;
}

/** The payload of a Sign request or batch item; REQUEST_INVALID or PAYLOAD_INVALID otherwise. */
export function payloadOf(req: WirePayload): Payload {
  const scope = req.replayScope
    ? {
        scope: {
          chainId: scopeValue('chain_id', req.replayScope.chainId),
          nonce: scopeValue('account_nonce', req.replayScope.accountNonce),
        },
      }
    : {};
  switch (req.payload) {
    case 'digest':
      return { kind: 'digest', digest: req.digest!, ...scope };
    case 'message':
      return { kind: 'message', message: req.message!, ...scope };
    case 'evmTransaction':
      if (req.replayScope)
        throw new SignerError(
          'REQUEST_INVALID',
          'replay_scope is for digests and messages; an EVM transaction carries its own chain id and nonce',
        );
      return { kind: 'evm', unsignedTx: req.evmTransaction?.unsignedTx ?? Buffer.alloc(0) };
    default:
      throw new SignerError('PAYLOAD_INVALID', 'a payload (digest, message or evm_transaction) is required');
  }
}

/** client_time as a Date; an invalid time is left to the freshness check, which refuses it. */
export function timeOf(t: WireTimestamp | null): Date {
  if (!t) throw new SignerError('REQUEST_INVALID', 'client_time is required');
  return new Date(Number(t.seconds) * 1000 + Math.floor(t.nanos / 1e6));
}

/** A decoded payload as a line of the canonical request (src/core/request-signing/canonical.ts). */
export function canonicalPayload(p: Payload): CanonicalPayload {
  switch (p.kind) {
    case 'digest':
      return { kind: 'digest', bytes: p.digest, scope: p.scope };
    case 'message':
      return { kind: 'message', bytes: p.message, scope: p.scope };
    case 'evm':
      return { kind: 'evm_transaction', bytes: p.unsignedTx };
  }
}
