import type * as grpc from '@grpc/grpc-js';
import type { Logger } from '../log.js';
import { toServiceError } from './status.js';

/** Adapts an async handler to grpc-js, mapping every failure through `toServiceError`. */
export function unary<Req, Res>(log: Logger, fn: (call: grpc.ServerUnaryCall<Req, Res>) => Promise<Res>) {
  return (call: grpc.ServerUnaryCall<Req, Res>, callback: grpc.sendUnaryData<Res>) => {
    fn(call).then(
      (res) => callback(null, res),
      (e) => callback(toServiceError(e, log) as grpc.ServiceError),
    );
  };
}
