import type * as grpc from '@grpc/grpc-js';
import { SignerError } from '../../core/errors.js';
import { isThresholdAlgorithm } from '../../core/frost/suites.js';
import type { Authorizer } from '../../infra/grpc/auth.js';
import { unary } from '../../infra/grpc/unary.js';
import type { Logger } from '../../infra/log.js';
import type { PolicyRecord, Store } from '../../infra/store/store.js';
import type { KeyRegistry } from '../keys/registry.js';
import type { Proposals } from '../policy/proposals.js';
import type { PolicyRegistry } from '../policy/registry.js';
import { algorithmFromWire, keyToWire, timestamp } from './convert.js';
import { requireId } from './ids.js';
import { quorumHandlers } from './quorum-service.js';

const policyToWire = (p: PolicyRecord) => ({
  name: p.name,
  document: p.document,
  version: p.version,
  updatedAt: timestamp(p.updatedAt),
  updatedBy: p.updatedBy,
});

export function keyAdminHandlers(deps: {
  auth: Authorizer;
  keys: KeyRegistry;
  policies: PolicyRegistry;
  jobs: Pick<Store, 'withJobLock'>;
  /** Default overlap of a rotation: how long the previous version stays verify-only. */
  overlapMs: number;
  /** The admin quorum's flow; undefined when the config has no `admins`. */
  proposals?: Proposals | undefined;
  log: Logger;
}): grpc.UntypedServiceImplementation {
  // Each change is audited by the registry that makes it, in the change's own transaction.
  const { auth, keys, policies, jobs, overlapMs, log } = deps;
  /** A threshold key's DKG holds the job lock of scheduled rotation and refresh: one ceremony per key across replicas. */
  const ceremonyLock = async <T>(keyId: string, threshold: boolean, fn: () => Promise<T>): Promise<T> => {
    if (!threshold) return fn();
    const done = await jobs.withJobLock(`rotate:${keyId}`, fn);
    if (done === undefined) {
      const why = `key "${keyId}" is being created, rotated or refreshed elsewhere; retry`;
      throw new SignerError('KEY_ROTATION_CONFLICT', why, { keyId });
    }
    return done;
  };
  return {
    ...quorumHandlers({ auth, proposals: deps.proposals, log }),
    CreateKey: unary(log, async (call: grpc.ServerUnaryCall<{ keyId: string; algorithm: string }, unknown>) => {
      const id = auth.require(call, 'admin');
      const algorithm = algorithmFromWire(call.request.algorithm);
      if (!algorithm)
        throw new SignerError(
          'REQUEST_INVALID',
          'algorithm must be ECDSA_SECP256K1, ECDSA_P256, ED25519, FROST_ED25519 or FROST_SECP256K1_TR',
        );
      const keyId = requireId('key_id', 'key', call.request.keyId);
      const key = await ceremonyLock(keyId, isThresholdAlgorithm(algorithm), () =>
        keys.create(keyId, algorithm, { client: id.client }),
      );
      log.info({ client: id.client, keyId: key.keyId, algorithm }, 'key created by admin');
      return keyToWire(key);
    }),

    RotateKey: unary(log, async (call: grpc.ServerUnaryCall<{ keyId: string; overlapSeconds: number }, unknown>) => {
      const id = auth.require(call, 'admin');
      const overlap = call.request.overlapSeconds > 0 ? call.request.overlapSeconds * 1000 : overlapMs;
      const keyId = requireId('key_id', 'key', call.request.keyId);
      // A key made on another replica may not be loaded here yet (a version keeps its key's algorithm).
      if (!keys.has(keyId)) await keys.load();
      const threshold = keys.has(keyId) && isThresholdAlgorithm(keys.history(keyId)[0]!.algorithm);
      const { next, previous } = await ceremonyLock(keyId, threshold, () =>
        keys.rotate(keyId, overlap, { client: id.client }),
      );
      const after = keys.history(next.keyId);
      return {
        active: keyToWire(after.find((k) => k.version === next.version)!),
        previous: keyToWire(after.find((k) => k.version === previous.version)!),
      };
    }),

    DisableKeyVersion: unary(log, async (call: grpc.ServerUnaryCall<{ keyId: string; version: number }, unknown>) => {
      const id = auth.require(call, 'admin');
      const k = await keys.disable(requireId('key_id', 'key', call.request.keyId), call.request.version, {
        client: id.client,
      });
      return keyToWire(k);
    }),

    DestroyKeyVersion: unary(
      log,
      async (
        call: grpc.ServerUnaryCall<
          { keyId: string; version: number; confirmKeyId: string; confirmSwept: boolean },
          unknown
        >,
      ) => {
        const id = auth.require(call, 'admin');
        const keyId = requireId('key_id', 'key', call.request.keyId);
        if (deps.proposals)
          throw new SignerError(
            'QUORUM_REQUIRED',
            'destroying a key version needs the admin quorum: use ProposeDestroyKeyVersion',
            {
              keyId,
            },
          );
        const r = call.request;
        const k = await keys.destroy(
          keyId,
          r.version,
          r.confirmKeyId,
          { client: id.client },
          new Date(),
          r.confirmSwept,
        );
        return keyToWire(k);
      },
    ),

    RefreshShares: unary(log, async (call: grpc.ServerUnaryCall<{ keyId: string }, unknown>) => {
      const id = auth.require(call, 'admin');
      // The same job lock as scheduled rotation and refresh: one ceremony per key across replicas.
      const keyId = requireId('key_id', 'key', call.request.keyId);
      const k = await jobs.withJobLock(`rotate:${keyId}`, () => keys.refreshShares(keyId, { client: id.client }));
      if (!k) {
        const why = `key "${keyId}" is being rotated or refreshed elsewhere; retry`;
        throw new SignerError('KEY_ROTATION_CONFLICT', why, { keyId });
      }
      return keyToWire(k);
    }),

    SetPolicy: unary(log, async (call: grpc.ServerUnaryCall<{ name: string; document: string }, unknown>) => {
      const id = auth.require(call, 'admin');
      const name = requireId('name', 'key', call.request.name, 'POLICY_INVALID');
      return policyToWire(await policies.set(name, call.request.document, id.client, new Date()));
    }),

    GetPolicy: unary(
      log,
      async (call: grpc.ServerUnaryCall<{ selector?: 'name' | 'keyId'; name?: string; keyId?: string }, unknown>) => {
        // Auditors read policies too: what was allowed is part of what they check.
        const id = auth.identify(call);
        if (!id.roles.has('auditor')) auth.require(call, 'admin');
        const r = call.request;
        if (r.selector === 'name') return policyToWire(policies.get(requireId('name', 'key', r.name!)));
        if (r.selector === 'keyId') return policyToWire(policies.recordForKey(requireId('key_id', 'key', r.keyId!)));
        throw new SignerError('REQUEST_INVALID', 'name or key_id is required');
      },
    ),
  };
}
