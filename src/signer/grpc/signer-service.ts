import type * as grpc from '@grpc/grpc-js';
import { SignerError } from '../../core/errors.js';
import type { KeyRegistry } from '../keys/registry.js';
import type { Logger } from '../../infra/log.js';
import type { Metrics } from '../../infra/metrics.js';
import type { SignFlow } from '../signing/flow.js';
import type { Payload } from '../signing/service.js';
import type { Authorizer, Identity } from '../../infra/grpc/auth.js';
import { keyToWire } from './convert.js';
import { unary } from '../../infra/grpc/unary.js';
import { statusOf, toServiceError } from '../../infra/grpc/status.js';
import { refusalDraft, wasAudited } from '../audit/drafts.js';
import type { AuditStore } from '../../infra/store/audit.js';

const REQUEST_ID = /^[\x21-\x7e]{1,128}$/;

interface WireTimestamp {
  seconds: string;
  nanos: number;
}

interface WirePayload {
  payload?: 'digest' | 'message' | 'evmTransaction';
  digest?: Buffer;
  message?: Buffer;
  evmTransaction?: { unsignedTx: Buffer };
  replayScope?: { chainId: string; accountNonce: string } | null;
}

interface WireSignRequest extends WirePayload {
  keyId: string;
  requestId: string;
  clientTime: WireTimestamp | null;
  keyVersion: number;
}

interface WireBatchRequest {
  batchId: string;
  keyId: string;
  clientTime: WireTimestamp | null;
  items: WirePayload[];
}

function payloadOf(req: WirePayload): Payload {
  const scope = req.replayScope ? { scope: { chainId: BigInt(req.replayScope.chainId), nonce: BigInt(req.replayScope.accountNonce) } } : {};
  switch (req.payload) {
    case 'digest':
      return { kind: 'digest', digest: req.digest!, ...scope };
    case 'message':
      return { kind: 'message', message: req.message!, ...scope };
    case 'evmTransaction':
      if (req.replayScope) throw new SignerError('REQUEST_INVALID', 'replay_scope is for digests and messages; an EVM transaction carries its own chain id and nonce');
      return { kind: 'evm', unsignedTx: req.evmTransaction?.unsignedTx ?? Buffer.alloc(0) };
    default:
      throw new SignerError('PAYLOAD_INVALID', 'a payload (digest, message or evm_transaction) is required');
  }
}

function timeOf(t: WireTimestamp | null): Date {
  if (!t) throw new SignerError('REQUEST_INVALID', 'client_time is required');
  return new Date(Number(t.seconds) * 1000 + Math.floor(t.nanos / 1e6));
}

export function signerHandlers(deps: {
  auth: Authorizer;
  keys: KeyRegistry;
  flow: SignFlow;
  audit: AuditStore;
  metrics: Metrics;
  log: Logger;
  /** Throws when signing must stop (the audit log does not extend the last signed checkpoint). */
  gate?: () => void;
}): grpc.UntypedServiceImplementation {
  const { auth, keys, flow, audit, metrics, log, gate } = deps;

  /**
   * Authorises a sign on a key, counts and logs the outcome, and audits refusals that were
   * decided before the sign flow could audit them (authorisation, unknown key, bad payload).
   */
  async function observed<T>(
    id: Identity,
    keyId: string,
    what: { kind: 'sign' | 'batch'; requestId: string; [k: string]: unknown },
    fn: (algorithm: string) => Promise<T>,
  ): Promise<T> {
    const started = process.hrtime.bigint();
    let algorithm = 'unknown';
    try {
      if (!keyId) throw new SignerError('REQUEST_INVALID', 'key_id is required');
      auth.requireKey(id, keyId);
      gate?.();
      algorithm = keys.has(keyId) ? keys.history(keyId)[0]!.algorithm : 'unknown';
      const out = await fn(algorithm);
      metrics.signs.inc({ key: keyId, algorithm, outcome: 'ok' });
      metrics.signSeconds.observe({ algorithm }, Number(process.hrtime.bigint() - started) / 1e9);
      log.debug({ client: id.client, keyId, ...what }, 'signed');
      return out;
    } catch (e) {
      const reason = (e as Partial<SignerError>).reason ?? 'INTERNAL';
      metrics.signs.inc({ key: keyId, algorithm, outcome: reason });
      log.info({ client: id.client, keyId, ...what, reason, ...(e as Partial<SignerError>).metadata }, 'sign refused');
      if (!wasAudited(e)) {
        // Ids that fail their grammar are not copied into the log: they are the client's bytes.
        const known = keys.has(keyId);
        const requestId = REQUEST_ID.test(what.requestId) ? what.requestId : null;
        await audit.appendAudit([
          refusalDraft(what.kind, { at: new Date(), client: id.client, keyId: known ? keyId : null, keyVersion: known ? (keys.history(keyId).find((v) => v.state === 'active')?.version ?? null) : null, requestId }, reason),
        ]);
      }
      throw e;
    }
  }

  return {
    Sign: unary(log, async (call: grpc.ServerUnaryCall<WireSignRequest, unknown>) => {
      const req = call.request;
      const id = auth.require(call, 'signer');
      return observed(id, req.keyId, { kind: 'sign', requestId: req.requestId }, async () => {
        if (!REQUEST_ID.test(req.requestId)) throw new SignerError('REQUEST_INVALID', 'request_id must be 1..128 printable ASCII characters');
        const clientTime = timeOf(req.clientTime);
        return flow.sign({ client: id.client, keyId: req.keyId, keyVersion: req.keyVersion, requestId: req.requestId, clientTime, payload: payloadOf(req) });
      });
    }),

    SignBatch: unary(log, async (call: grpc.ServerUnaryCall<WireBatchRequest, unknown>) => {
      const req = call.request;
      const id = auth.require(call, 'signer');
      return observed(id, req.keyId, { kind: 'batch', requestId: req.batchId, items: req.items.length }, async () => {
        const clientTime = timeOf(req.clientTime);
        const payloads = req.items.map((item, i) => {
          try {
            return payloadOf(item);
          } catch (e) {
            throw new SignerError('PAYLOAD_INVALID', `item ${i}: ${(e as Error).message}`, { index: String(i) });
          }
        });
        const results = await flow.signBatch({ client: id.client, keyId: req.keyId, batchId: req.batchId, clientTime, payloads });
        const wire = results.map((r) => ('error' in r ? { error: { code: statusOf(r.error.reason), ...r.error } } : r));
        return { batchId: req.batchId, results: wire };
      });
    }),

    GetPublicKey: unary(log, async (call: grpc.ServerUnaryCall<{ keyId: string }, unknown>) => {
      const id = auth.identify(call);
      if (!id.roles.has('admin') && !id.roles.has('auditor')) auth.requireKey(auth.require(call, 'signer'), call.request.keyId);
      return { ...keyToWire(keys.get(call.request.keyId)), versions: keys.history(call.request.keyId).map(keyToWire) };
    }),

    WatchKeys: (call: grpc.ServerWritableStream<{ keyId: string }, unknown>) => {
      let visible: (keyId: string) => boolean;
      try {
        const id = auth.identify(call);
        const all = id.roles.has('admin') || id.roles.has('auditor');
        if (!all) auth.require(call, 'signer');
        const only = call.request.keyId;
        visible = (keyId) => (!only || keyId === only) && (all || auth.maySign(id.client, keyId));
      } catch (e) {
        call.emit('error', toServiceError(e, log));
        return;
      }
      const send = (keyId: string) => {
        if (!visible(keyId) || !keys.has(keyId)) return;
        for (const k of keys.history(keyId)) call.write(keyToWire(k));
      };
      for (const keyId of new Set(keys.list().map((k) => k.keyId))) send(keyId);
      keys.on('change', send);
      call.on('cancelled', () => keys.off('change', send));
      call.on('close', () => keys.off('change', send));
    },

    ListKeys: unary(log, async (call: grpc.ServerUnaryCall<unknown, unknown>) => {
      const id = auth.identify(call);
      const all = id.roles.has('admin') || id.roles.has('auditor');
      if (!all) auth.require(call, 'signer');
      return { keys: keys.list().filter((k) => all || auth.maySign(id.client, k.keyId)).map(keyToWire) };
    }),
  };
}
