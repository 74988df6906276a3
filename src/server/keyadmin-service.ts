import type * as grpc from '@grpc/grpc-js';
import { invalid } from '../errors.js';
import type { KeyRegistry } from '../keys/registry.js';
import type { Logger } from '../log.js';
import type { Authorizer } from './auth.js';
import { algorithmFromWire, keyToWire } from './convert.js';
import { unary } from './unary.js';

export function keyAdminHandlers(deps: { auth: Authorizer; keys: KeyRegistry; log: Logger }): grpc.UntypedServiceImplementation {
  const { auth, keys, log } = deps;
  return {
    CreateKey: unary(log, async (call: grpc.ServerUnaryCall<{ keyId: string; algorithm: string }, unknown>) => {
      const id = auth.require(call, 'admin');
      const algorithm = algorithmFromWire(call.request.algorithm);
      if (!algorithm) throw invalid('REQUEST_INVALID', 'algorithm must be ECDSA_SECP256K1, ECDSA_P256 or ED25519');
      const key = await keys.create(call.request.keyId, algorithm);
      log.info({ client: id.client, keyId: key.keyId, algorithm }, 'key created by admin');
      return keyToWire(key);
    }),
  };
}
