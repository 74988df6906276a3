import type * as grpc from '@grpc/grpc-js';
import { exportRecords } from '../audit/export.js';
import type { AuditKeyRef, Checkpointer } from '../audit/checkpointer.js';
import type { Logger } from '../../infra/log.js';
import type { AuditStore } from '../../infra/store/audit.js';
import type { Authorizer } from '../../infra/grpc/auth.js';
import { toServiceError } from '../../infra/grpc/status.js';

type Ts = { seconds: string; nanos: number } | null;
const dateOf = (t: Ts) => (t ? new Date(Number(t.seconds) * 1000 + Math.floor(t.nanos / 1e6)) : null);

export function auditHandlers(deps: {
  auth: Authorizer;
  store: AuditStore;
  checkpointer: Checkpointer;
  auditKeys: () => AuditKeyRef[];
  log: Logger;
}): grpc.UntypedServiceImplementation {
  const { auth, store, checkpointer, auditKeys, log } = deps;
  return {
    ExportLog: async (call: grpc.ServerWritableStream<{ from: Ts; to: Ts }, { json: string }>) => {
      try {
        const id = auth.require(call, 'auditor');
        log.info({ client: id.client, from: call.request.from, to: call.request.to }, 'audit export');
        for await (const record of exportRecords(store, checkpointer, auditKeys(), { from: dateOf(call.request.from), to: dateOf(call.request.to) })) {
          if (call.cancelled) return;
          // Respect flow control: a slow auditor must not make the server buffer the whole log.
          if (!call.write({ json: JSON.stringify(record) })) await new Promise((r) => call.once('drain', r));
        }
        call.end();
      } catch (e) {
        call.emit('error', toServiceError(e, log));
      }
    },
  };
}
