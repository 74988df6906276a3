import type { PeerAuthorizer } from '../infra/grpc/auth.js';
import { unary } from '../infra/grpc/unary.js';
import type { Logger } from '../infra/log.js';
import type { CosignerService } from './service.js';

/** The request a service method takes: the RPC's request as proto-loader decodes it. */
type In<M extends keyof CosignerService> = Parameters<CosignerService[M]>[0];

/**
 * signer.v1.Cosigner over grpc-js, a thin adapter: at every call it admits only a caller whose
 * client certificate is a peer named in config and may be used now (validity, CRL, pins:
 * `PeerAuthorizer`), hands the decoded request to the service, and maps every refusal through
 * the status table (`unary`). Protocol logic lives in the service.
 */
export function cosignerGrpc(service: CosignerService, peers: PeerAuthorizer, log: Logger) {
  /** One RPC: authorize, then the service method with the request. */
  const rpc = <Req, Res>(method: (r: Req) => Res | Promise<Res>) =>
    unary<Req, Res>(log, async (call) => {
      peers.require(call);
      return method(call.request);
    });
  return {
    Info: rpc(() => service.info()),
    Round1: rpc((r: In<'round1'>) => service.round1(r)),
    Round2: rpc((r: In<'round2'>) => service.round2(r)),
    Round3: rpc((r: In<'round3'>) => service.round3(r)),
    Finish: rpc((r: In<'finish'>) => service.finish(r)),
    Commit: rpc((r: In<'commit'>) => service.commit(r)),
    SignShare: rpc((r: In<'signShare'>) => service.signShare(r)),
    DestroyShares: rpc((r: In<'destroyShares'>) => service.destroyShares(r)),
    CancelShareDestroy: rpc((r: In<'cancelShareDestroy'>) => service.cancelShareDestroy(r)),
    ShareStatus: rpc((r: In<'shareStatus'>) => service.shareStatus(r)),
  };
}
