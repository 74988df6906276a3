import type * as grpc from '@grpc/grpc-js';
import { invalid, notFound, type SignerError } from '../errors.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';
import type { KeyRegistry } from '../keys/registry.js';
import type { Payload, SigningService } from '../signing/service.js';
import type { Authorizer } from './auth.js';
import { algorithmToWire, keyToWire } from './convert.js';
import { unary } from './unary.js';

const REQUEST_ID = /^[\x21-\x7e]{1,128}$/;

interface WireSignRequest {
  keyId: string;
  requestId: string;
  clientTime: { seconds: string; nanos: number } | null;
  keyVersion: number;
  payload?: 'digest' | 'message' | 'evmTransaction';
  digest?: Buffer;
  message?: Buffer;
  evmTransaction?: { unsignedTx: Buffer };
}

function payloadOf(req: WireSignRequest): Payload {
  switch (req.payload) {
    case 'digest':
      return { kind: 'digest', digest: req.digest! };
    case 'message':
      return { kind: 'message', message: req.message! };
    case 'evmTransaction':
      return { kind: 'evm', unsignedTx: req.evmTransaction?.unsignedTx ?? Buffer.alloc(0) };
    default:
      throw invalid('PAYLOAD_INVALID', 'a payload (digest, message or evm_transaction) is required');
  }
}

function validate(req: WireSignRequest): void {
  if (!req.keyId) throw invalid('REQUEST_INVALID', 'key_id is required');
  if (!REQUEST_ID.test(req.requestId)) throw invalid('REQUEST_INVALID', 'request_id must be 1..128 printable ASCII characters');
  if (!req.clientTime) throw invalid('REQUEST_INVALID', 'client_time is required');
}

export function signerHandlers(deps: {
  auth: Authorizer;
  keys: KeyRegistry;
  signing: SigningService;
  metrics: Metrics;
  log: Logger;
}): grpc.UntypedServiceImplementation {
  const { auth, keys, signing, metrics, log } = deps;
  return {
    Sign: unary(log, async (call: grpc.ServerUnaryCall<WireSignRequest, unknown>) => {
      const started = process.hrtime.bigint();
      const req = call.request;
      const id = auth.require(call, 'signer');
      let algorithm = 'unknown';
      try {
        validate(req);
        auth.requireKey(id, req.keyId);
        const key = keys.get(req.keyId);
        algorithm = key.algorithm;
        if (req.keyVersion !== 0 && req.keyVersion !== key.version) {
          throw notFound('KEY_VERSION_NOT_FOUND', `key "${req.keyId}" has no version ${req.keyVersion}`);
        }
        const out = await signing.sign(req.keyId, payloadOf(req), 'hot');
        metrics.signs.inc({ key: req.keyId, algorithm, outcome: 'ok' });
        metrics.signSeconds.observe({ algorithm }, Number(process.hrtime.bigint() - started) / 1e9);
        log.debug({ client: id.client, keyId: req.keyId, requestId: req.requestId }, 'signed');
        return {
          keyId: out.key.keyId,
          keyVersion: out.key.version,
          algorithm: algorithmToWire(out.key.algorithm),
          signature: Buffer.from(out.signature.bytes),
          recoveryId: out.signature.recoveryId,
          requestId: req.requestId,
          evm: out.evm && {
            r: Buffer.from(out.evm.r),
            s: Buffer.from(out.evm.s),
            v: out.evm.v.toString(),
            yParity: out.evm.yParity,
            signedTx: Buffer.from(out.evm.signedRlp),
            txHash: Buffer.from(out.evm.txHash),
            chainId: out.evm.chainId.toString(),
            nonce: out.evm.nonce.toString(),
            from: out.evm.from,
          },
        };
      } catch (e) {
        const reason = (e as Partial<SignerError>).reason ?? 'INTERNAL';
        metrics.signs.inc({ key: req.keyId, algorithm, outcome: reason });
        log.info({ client: id.client, keyId: req.keyId, requestId: req.requestId, reason }, 'sign refused');
        throw e;
      }
    }),

    GetPublicKey: unary(log, async (call: grpc.ServerUnaryCall<{ keyId: string }, unknown>) => {
      const id = auth.identify(call);
      if (!id.roles.has('admin') && !id.roles.has('auditor')) auth.requireKey(auth.require(call, 'signer'), call.request.keyId);
      return keyToWire(keys.get(call.request.keyId));
    }),

    ListKeys: unary(log, async (call: grpc.ServerUnaryCall<unknown, unknown>) => {
      const id = auth.identify(call);
      const all = id.roles.has('admin') || id.roles.has('auditor');
      if (!all) auth.require(call, 'signer');
      return { keys: keys.list().filter((k) => all || auth.maySign(id.client, k.keyId)).map(keyToWire) };
    }),
  };
}
