import type * as grpc from '@grpc/grpc-js';
import { SignerError } from '../../core/errors.js';
import type { PeerTrust } from '../grpc/peer-trust.js';
import { unary } from '../grpc/unary.js';
import type { Logger } from '../log.js';
import type { AddCheckpointRequest, WitnessService } from './service.js';

/** Who may call a witness: the certificate checks of its server, and the admitted CNs. */
export interface WitnessCallers {
  /** Validity, CRL and pins of the caller's certificate, at every call (src/infra/grpc/peer-trust.ts). */
  trust: PeerTrust;
  /** `witnessing.clients`, as last (re)loaded. */
  clients(): ReadonlySet<string>;
}

/**
 * signer.v1.Witness over grpc-js, a thin adapter: it admits only callers whose client
 * certificate may still be used (not expired, not revoked by the CRL, matching its pins: the
 * signer's own per-call checks) and whose CN is named in `witnessing.clients`, and maps
 * refusals through the status table. The checks of checkpoints live in the service.
 */
export function witnessGrpc(service: WitnessService, callers: WitnessCallers, log: Logger) {
  const authorize = (call: Pick<grpc.ServerUnaryCall<unknown, unknown>, 'getAuthContext'>) => {
    const cn = callers.trust.verify(call).cn;
    if (!callers.clients().has(cn)) {
      throw new SignerError('NOT_AUTHORIZED', `client "${cn}" may not call this witness`, { client: cn });
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
