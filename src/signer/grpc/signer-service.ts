import type * as grpc from '@grpc/grpc-js';
import { refusalDraft } from '../../core/audit/draft.js';
import { SignerError } from '../../core/errors.js';
import type { Authorizer, Identity } from '../../infra/grpc/auth.js';
import { bounded, statusOf, toServiceError } from '../../infra/grpc/status.js';
import { unary } from '../../infra/grpc/unary.js';
import type { Logger } from '../../infra/log.js';
import type { Metrics } from '../../infra/metrics.js';
import type { AuditStore } from '../../infra/store/audit.js';
import type { BatchResultStore } from '../../infra/store/batch-results.js';
import type { KeyRegistry } from '../keys/registry.js';
import { type CheckedBatch, MAX_BATCH_ITEMS, type ReleaseGate, type SignFlow } from '../signing/flow.js';
import { batchResultsHandler } from './batch-results.js';
import { MAX_ITEM_MESSAGE_BYTES, requireBatchResponseFits } from './batch-size.js';
import { keyToWire } from './convert.js';
import { requireId } from './ids.js';
import type { RequestSignatures, WireRequestSignature } from './request-signature.js';
import { canonicalPayload, payloadOf, timeOf, type WireBatchRequest, type WireSignRequest } from './requests.js';
import type { KeyWatchers } from './watch.js';

/** The metric label of every key id that is not a known key: labels stay one per real key. */
export const UNKNOWN_KEY_LABEL = '_unknown';

function deadlineOf(call: grpc.ServerUnaryCall<unknown, unknown>): number | undefined {
  const d = call.getDeadline();
  const ms = d instanceof Date ? d.getTime() : d;
  return Number.isFinite(ms) ? ms : undefined;
}

export function signerHandlers(deps: {
  auth: Authorizer;
  keys: KeyRegistry;
  flow: SignFlow;
  audit: AuditStore & BatchResultStore;
  metrics: Metrics;
  /** The largest SignBatch response or GetBatchResults page, in bytes (limits.batchResponseBytes). */
  batchResponseBytes: number;
  watchers: KeyWatchers;
  /** Client request signatures: checked after the request parsed, before anything is reserved. */
  signatures: RequestSignatures;
  log: Logger;
  /** Throws when signing must stop (the audit log does not extend the last signed checkpoint). */
  gate?: () => void;
  /** The rollback mark's release gate, for stored results read back (GetBatchResults). */
  release?: ReleaseGate | undefined;
}): grpc.UntypedServiceImplementation {
  const { auth, keys, flow, audit, metrics, watchers, signatures, log, gate, release, batchResponseBytes } = deps;

  /**
   * Checks the ids, authorises a sign on the key, counts and logs the outcome, and audits the
   * refusals raised before the reservation: bad ids, authorisation, and `check` (unknown key,
   * bad payload, no policy, stale client time), which store nothing. What `run` throws was
   * decided and audited in a store transaction by the sign flow (or nothing was stored): the
   * edge never writes a second entry for it. An id reaches the log, the metric labels or the
   * audit log only after it passed its grammar, and a key id reaches a label only when it names
   * a real key.
   */
  async function observed<C, T>(
    id: Identity,
    raw: { keyId: string; requestId: string },
    what: { kind: 'sign' | 'batch'; [k: string]: unknown },
    check: (keyId: string, requestId: string) => C | Promise<C>,
    run: (checked: C, keyId: string, requestId: string) => Promise<T>,
  ): Promise<T> {
    const started = process.hrtime.bigint();
    let keyId: string | undefined;
    let requestId: string | undefined;
    let algorithm = 'unknown';
    let checked: C;
    const label = () => (keyId !== undefined && keys.has(keyId) ? keyId : UNKNOWN_KEY_LABEL);
    const refusal = (e: unknown): string => {
      const reason = (e as Partial<SignerError>).reason ?? 'INTERNAL';
      metrics.signs.inc({ key: label(), algorithm, outcome: reason });
      const metadata = (e as Partial<SignerError>).metadata;
      log.info(
        { client: id.client, keyId: keyId ?? null, requestId: requestId ?? null, ...what, reason, ...metadata },
        'sign refused',
      );
      return reason;
    };
    try {
      keyId = requireId('key_id', 'key', raw.keyId);
      requestId =
        what.kind === 'batch'
          ? requireId('batch_id', 'batch', raw.requestId)
          : requireId('request_id', 'request', raw.requestId);
      auth.requireKey(id, keyId);
      gate?.();
      algorithm = keys.has(keyId) ? keys.history(keyId)[0]!.algorithm : 'unknown';
      checked = await check(keyId, requestId);
    } catch (e) {
      const reason = refusal(e);
      const known = keyId !== undefined && keys.has(keyId);
      const version = known ? (keys.history(keyId!).find((v) => v.state === 'active')?.version ?? null) : null;
      const base = {
        at: new Date(),
        client: id.client,
        keyId: known ? keyId! : null,
        keyVersion: version,
        requestId: requestId ?? null,
      };
      // Not into a log found rewritten: the append may itself fail there, and the refusal would
      // turn into INTERNAL; the log line (refusal() above) records it.
      if (reason !== 'AUDIT_LOG_INCONSISTENT') await audit.appendAudit([refusalDraft(what.kind, base, reason)]);
      throw e;
    }
    try {
      const out = await run(checked, keyId, requestId);
      metrics.signs.inc({ key: label(), algorithm, outcome: 'ok' });
      metrics.signSeconds.observe({ algorithm }, Number(process.hrtime.bigint() - started) / 1e9);
      log.debug({ client: id.client, keyId, requestId, ...what }, 'signed');
      return out;
    } catch (e) {
      refusal(e);
      throw e;
    }
  }

  return {
    Sign: unary(log, async (call: grpc.ServerUnaryCall<WireSignRequest & WireRequestSignature, unknown>) => {
      const req = call.request;
      const id = auth.require(call, 'signer');
      const check = (keyId: string, requestId: string) => {
        const clientTime = timeOf(req.clientTime);
        const payload = payloadOf(req);
        const request = signatures.check(
          id,
          () => ({
            kind: 'sign',
            client: id.client,
            keyId,
            keyVersion: req.keyVersion,
            id: requestId,
            clientTimeMs: clientTime.getTime(),
            payloads: [canonicalPayload(payload)],
          }),
          req,
        );
        const deadline = deadlineOf(call);
        return flow.checkSign({
          client: id.client,
          keyId,
          keyVersion: req.keyVersion,
          requestId,
          clientTime,
          payload,
          deadline,
          request,
          clientCert: id.certificate,
        });
      };
      return observed(id, req, { kind: 'sign' }, check, (checked) => flow.sign(checked));
    }),

    SignBatch: unary(log, async (call: grpc.ServerUnaryCall<WireBatchRequest & WireRequestSignature, unknown>) => {
      const req = call.request;
      const id = auth.require(call, 'signer');
      const what = { kind: 'batch', items: req.items.length } as const;
      const check = (keyId: string, batchId: string) => {
        // First: a response the client could not read would leave it without the signatures
        // of nonces this batch spends. Refused here, nothing is reserved.
        // (Beyond the hard cap on items, the count's own refusal says more: checkBatch.)
        if (req.items.length <= MAX_BATCH_ITEMS) requireBatchResponseFits(req.items, batchResponseBytes);
        const clientTime = timeOf(req.clientTime);
        const payloads = req.items.map((item, i) => {
          try {
            return payloadOf(item);
          } catch (e) {
            throw new SignerError('PAYLOAD_INVALID', `item ${i}: ${(e as Error).message}`, { index: String(i) });
          }
        });
        const request = signatures.check(
          id,
          () => ({
            kind: 'batch',
            client: id.client,
            keyId,
            keyVersion: 0,
            id: batchId,
            clientTimeMs: clientTime.getTime(),
            payloads: payloads.map(canonicalPayload),
          }),
          req,
        );
        const deadline = deadlineOf(call);
        const clientCert = id.certificate;
        return flow.checkBatch({
          client: id.client,
          keyId,
          batchId,
          clientTime,
          payloads,
          deadline,
          request,
          clientCert,
        });
      };
      const run = async (checked: CheckedBatch, _keyId: string, batchId: string) => {
        const results = await flow.signBatch(checked);
        // Item messages are cut, so an item error has a size bound (batch-size.ts).
        const wire = results.map((r) =>
          'error' in r
            ? {
                error: {
                  code: statusOf(r.error.reason),
                  reason: r.error.reason,
                  message: bounded(r.error.message, MAX_ITEM_MESSAGE_BYTES),
                },
              }
            : r,
        );
        return { batchId, results: wire };
      };
      return observed(id, { keyId: req.keyId, requestId: req.batchId }, what, check, run);
    }),

    GetBatchResults: batchResultsHandler({ auth, store: audit, limitBytes: batchResponseBytes, gate, release, log }),

    GetPublicKey: unary(log, async (call: grpc.ServerUnaryCall<{ keyId: string }, unknown>) => {
      const id = auth.identify(call);
      const keyId = requireId('key_id', 'key', call.request.keyId);
      if (!id.roles.has('admin') && !id.roles.has('auditor')) auth.requireKey(auth.require(call, 'signer'), keyId);
      return { ...keyToWire(keys.get(keyId)), versions: keys.history(keyId).map(keyToWire) };
    }),

    WatchKeys: (call: grpc.ServerWritableStream<{ keyId: string }, unknown>) => {
      let client: string;
      let expiresAt: number;
      let visible: (keyId: string) => boolean;
      // Run at the open and again while the stream lives (KeyWatchers.revalidate).
      const authorize = () => {
        const id = auth.identify(call);
        const all = id.roles.has('admin') || id.roles.has('auditor');
        if (!all) auth.require(call, 'signer');
        return { id, all };
      };
      try {
        const { id, all } = authorize();
        // Empty: every key the client may see.
        const only = call.request.keyId === '' ? '' : requireId('key_id', 'key', call.request.keyId);
        client = id.client;
        expiresAt = id.notAfter;
        visible = (keyId) => (!only || keyId === only) && (all || auth.maySign(id.client, keyId));
      } catch (e) {
        call.emit('error', toServiceError(e, log));
        return;
      }
      watchers.watch(call, client, visible, authorize, expiresAt);
    },

    ListKeys: unary(log, async (call: grpc.ServerUnaryCall<unknown, unknown>) => {
      const id = auth.identify(call);
      const all = id.roles.has('admin') || id.roles.has('auditor');
      if (!all) auth.require(call, 'signer');
      return {
        keys: keys
          .list()
          .filter((k) => all || auth.maySign(id.client, k.keyId))
          .map(keyToWire),
      };
    }),
  };
}
