import type * as grpc from '@grpc/grpc-js';
import { ErrorInfo, RetryInfo, RpcStatus } from '../infra/grpc/proto.js';

export interface DecodedError {
  code: number;
  message: string;
  reason?: string;
  metadata: Record<string, string>;
  /** From google.rpc.RetryInfo, when the server says when to retry. */
  retryDelayMs?: number;
}

/** Reads the google.rpc.ErrorInfo a signer refusal carries (AIP-193). */
export function decodeError(e: grpc.ServiceError): DecodedError {
  const out: DecodedError = { code: e.code, message: e.details, metadata: {} };
  const bin = e.metadata?.get('grpc-status-details-bin')[0];
  if (!(bin instanceof Buffer)) return out;
  const st = RpcStatus.toObject(RpcStatus.decode(bin), { defaults: true }) as {
    details: Array<{ type_url?: string; typeUrl?: string; value: Uint8Array }>;
  };
  for (const d of st.details) {
    if ((d.type_url ?? d.typeUrl) === 'type.googleapis.com/google.rpc.RetryInfo') {
      const r = RetryInfo.toObject(RetryInfo.decode(d.value), { longs: Number, defaults: true }) as {
        retryDelay?: { seconds: number; nanos: number };
      };
      out.retryDelayMs = (r.retryDelay?.seconds ?? 0) * 1000 + Math.round((r.retryDelay?.nanos ?? 0) / 1e6);
      continue;
    }
    if ((d.type_url ?? d.typeUrl) !== 'type.googleapis.com/google.rpc.ErrorInfo') continue;
    const info = ErrorInfo.toObject(ErrorInfo.decode(d.value), { defaults: true }) as {
      reason: string;
      metadata: Record<string, string>;
    };
    out.reason = info.reason;
    out.metadata = info.metadata;
  }
  return out;
}
