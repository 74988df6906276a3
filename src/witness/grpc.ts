import type * as grpc from '@grpc/grpc-js';
import { SignerError } from '../core/errors.js';
import { unary } from '../infra/grpc/unary.js';
import type { Logger } from '../infra/log.js';
import type { AddCheckpointRequest, WitnessService } from './service.js';

/**
 * signer.v1.Witness over grpc-js, a thin adapter: it admits only callers whose client
 * certificate (verified by TLS against the CA) has a CN named in `witnessing.clients`, and maps
 * refusals through the status table. The checks live in the service.
 */
export function witnessGrpc(service: WitnessService, clients: ReadonlySet<string>, log: Logger) {
  const authorize = (call: Pick<grpc.ServerUnaryCall<unknown, unknown>, 'getAuthContext'>) => {
    const cn = call.getAuthContext()?.sslPeerCertificate?.subject?.CN;
    if (typeof cn !== 'string' || !clients.has(cn)) {
      throw new SignerError('NOT_AUTHORIZED', `client "${String(cn)}" may not call this witness`);
    }
  };
  const rpc = <Req, Res>(method: (r: Req) => Res | Promise<Res>) =>
    unary<Req, Res>(log, async (call) => {
      authorize(call);
      return method(call.request);
    });
  return {
    AddCheckpoint: rpc((r: AddCheckpointRequest) => service.addCheckpoint(r)),
    GetLatest: rpc((r: { origin: string }) => service.getLatest(r)),
  };
}
