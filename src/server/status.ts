import * as grpc from '@grpc/grpc-js';
import { SignerError } from '../errors.js';
import type { Logger } from '../log.js';
import { ErrorInfo, RetryInfo, RpcStatus } from '../proto.js';

export const ERROR_DOMAIN = 'signer.v1';

/**
 * The one place where errors become gRPC statuses. A SignerError keeps its status, reason and
 * message; anything else is logged and reported as INTERNAL without its text, which could
 * carry data from a library or the HSM.
 */
export function toServiceError(e: unknown, log?: Logger): Partial<grpc.ServiceError> {
  const err =
    e instanceof SignerError ? e : new SignerError(grpc.status.INTERNAL, 'INTERNAL', 'internal error; see the signer log');
  if (!(e instanceof SignerError)) log?.error({ err: e }, 'unexpected error');
  const info = ErrorInfo.encode(
    ErrorInfo.create({ reason: err.reason, domain: ERROR_DOMAIN, metadata: err.metadata }),
  ).finish();
  const details = [{ type_url: 'type.googleapis.com/google.rpc.ErrorInfo', value: info }];
  if (err.retryDelayMs !== undefined) {
    const delay = { seconds: Math.floor(err.retryDelayMs / 1000), nanos: (err.retryDelayMs % 1000) * 1e6 };
    details.push({ type_url: 'type.googleapis.com/google.rpc.RetryInfo', value: RetryInfo.encode(RetryInfo.create({ retryDelay: delay })).finish() });
  }
  const encoded = RpcStatus.encode(RpcStatus.create({ code: err.code, message: err.message, details })).finish();
  const metadata = new grpc.Metadata();
  metadata.set('grpc-status-details-bin', Buffer.from(encoded));
  return { code: err.code, details: err.message, metadata };
}
