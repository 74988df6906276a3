import type * as grpc from '@grpc/grpc-js';
import { SignerError } from '../../core/errors.js';
import type { KeyRegistry } from '../keys/registry.js';
import type { Logger } from '../../infra/log.js';
import type { Metrics } from '../../infra/metrics.js';
import type { CheckedBatch, SignFlow } from '../signing/flow.js';
import type { Payload } from '../signing/service.js';
import type { Authorizer, Identity } from '../../infra/grpc/auth.js';
import { keyToWire } from './convert.js';
import { unary } from '../../infra/grpc/unary.js';
import { statusOf, toServiceError } from '../../infra/grpc/status.js';
import { refusalDraft } from '../audit/drafts.js';
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
   * Authorises a sign on a key, counts and logs the outcome, and audits the refusals raised
   * before the reservation: authorisation, request fields, and `check` (unknown key, bad
   * payload, no policy, stale client time), which store nothing. What `run` throws was decided
   * and audited in a store transaction by the sign flow (or nothing was stored): the edge never
   * writes a second entry for it.
   */
  async function observed<C, T>(
    id: Identity,
    keyId: string,
    what: { kind: 'sign' | 'batch'; requestId: string; [k: string]: unknown },
    check: () => C | Promise<C>,
    run: (checked: C) => Promise<T>,
  ): Promise<T> {
    const started = process.hrtime.bigint();
    let algorithm = 'unknown';
    let checked: C;
    try {
      if (!keyId) throw new SignerError('REQUEST_INVALID', 'key_id is required');
      auth.requireKey(id, keyId);
      gate?.();
      algorithm = keys.has(keyId) ? keys.history(keyId)[0]!.algorithm : 'unknown';
      checked = await check();
    } catch (e) {
      const reason = refusal(e, keyId, algorithm, id, what);
      // Ids that fail their grammar are not copied into the log: they are the client's bytes.
      const known = keys.has(keyId);
      const keyVersion = known ? (keys.history(keyId).find((v) => v.state === 'active')?.version ?? null) : null;
      const requestId = REQUEST_ID.test(what.requestId) ? what.requestId : null;
      const base = { at: new Date(), client: id.client, keyId: known ? keyId : null, keyVersion, requestId };
      // Not into a log found rewritten: the append may itself fail there, and the refusal would
      // turn into INTERNAL; the log line (refusal() above) records it.
      if (reason !== 'AUDIT_LOG_INCONSISTENT') await audit.appendAudit([refusalDraft(what.kind, base, reason)]);
      throw e;
    }
    try {
      const out = await run(checked);
      metrics.signs.inc({ key: keyId, algorithm, outcome: 'ok' });
      metrics.signSeconds.observe({ algorithm }, Number(process.hrtime.bigint() - started) / 1e9);
      log.debug({ client: id.client, keyId, ...what }, 'signed');
      return out;
    } catch (e) {
      refusal(e, keyId, algorithm, id, what);
      throw e;
    }
  }

  /** Counts and logs a refusal; its reason. */
  function refusal(e: unknown, keyId: string, algorithm: string, id: Identity, what: Record<string, unknown>): string {
    const reason = (e as Partial<SignerError>).reason ?? 'INTERNAL';
    metrics.signs.inc({ key: keyId, algorithm, outcome: reason });
    log.info({ client: id.client, keyId, ...what, reason, ...(e as Partial<SignerError>).metadata }, 'sign refused');
    return reason;
  }

  return {
    Sign: unary(log, async (call: grpc.ServerUnaryCall<WireSignRequest, unknown>) => {
      const req = call.request;
      const id = auth.require(call, 'signer');
      const check = () => {
        if (!REQUEST_ID.test(req.requestId)) throw new SignerError('REQUEST_INVALID', 'request_id must be 1..128 printable ASCII characters');
        const clientTime = timeOf(req.clientTime);
        const { keyId, keyVersion, requestId } = req;
        return flow.checkSign({ client: id.client, keyId, keyVersion, requestId, clientTime, payload: payloadOf(req) });
      };
      const what = { kind: 'sign' as const, requestId: req.requestId };
      return observed(id, req.keyId, what, check, (checked) => flow.sign(checked));
    }),

    SignBatch: unary(log, async (call: grpc.ServerUnaryCall<WireBatchRequest, unknown>) => {
      const req = call.request;
      const id = auth.require(call, 'signer');
      const check = () => {
        const clientTime = timeOf(req.clientTime);
        const payloads = req.items.map((item, i) => {
          try {
            return payloadOf(item);
          } catch (e) {
            throw new SignerError('PAYLOAD_INVALID', `item ${i}: ${(e as Error).message}`, { index: String(i) });
          }
        });
        return flow.checkBatch({ client: id.client, keyId: req.keyId, batchId: req.batchId, clientTime, payloads });
      };
      const run = async (checked: CheckedBatch) => {
        const results = await flow.signBatch(checked);
        const wire = results.map((r) => ('error' in r ? { error: { code: statusOf(r.error.reason), ...r.error } } : r));
        return { batchId: req.batchId, results: wire };
      };
      return observed(id, req.keyId, { kind: 'batch', requestId: req.batchId, items: req.items.length }, check, run);
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
