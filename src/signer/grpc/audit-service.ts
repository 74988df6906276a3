import type * as grpc from '@grpc/grpc-js';
import { encodeVerifierKey, SIG_TYPE_ED25519 } from '../../core/audit/note.js';
import { SignerError } from '../../core/errors.js';
import type { Authorizer } from '../../infra/grpc/auth.js';
import { toServiceError } from '../../infra/grpc/status.js';
import { unary } from '../../infra/grpc/unary.js';
import type { Logger } from '../../infra/log.js';
import type { AuditStore } from '../../infra/store/audit.js';
import type { AuditTreeStore } from '../../infra/store/audit-tree.js';
import type { AuditKeyRef, Checkpointer } from '../audit/checkpointer.js';
import { exportRecords } from '../audit/export.js';

type Ts = { seconds: string; nanos: number } | null;
const dateOf = (t: Ts) => (t ? new Date(Number(t.seconds) * 1000 + Math.floor(t.nanos / 1e6)) : null);

/** A uint64 from the wire (a decimal string) as a safe integer, or REQUEST_INVALID. */
function size(v: string | number, field: string): number {
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 0)
    throw new SignerError('REQUEST_INVALID', `${field} is out of range`, { field });
  return n;
}

/** Records an export sends between two checks of the auditor's certificate. */
const RECHECK_EVERY = 256;

/** The Audit service: a thin adapter over the store, the checkpointer and the export (auditor role). */
export function auditHandlers(deps: {
  auth: Authorizer;
  store: AuditStore & AuditTreeStore;
  checkpointer: Checkpointer;
  auditKeys: () => AuditKeyRef[];
  log: Logger;
}): grpc.UntypedServiceImplementation {
  const { auth, store, checkpointer, auditKeys, log } = deps;
  /** Sizes beyond the log are refused here rather than as a missing node deep in a proof. */
  async function logSize(): Promise<number> {
    return (await store.auditHead())?.seq ?? 0;
  }
  return {
    ExportLog: async (call: grpc.ServerWritableStream<{ from: Ts; to: Ts }, { json: string }>) => {
      try {
        const id = auth.require(call, 'auditor');
        log.info({ client: id.client, from: call.request.from, to: call.request.to }, 'audit export');
        let sent = 0;
        for await (const record of exportRecords(store, checkpointer, auditKeys(), {
          from: dateOf(call.request.from),
          to: dateOf(call.request.to),
        })) {
          if (call.cancelled) return;
          // A long export is a call that outlives reloads: its certificate is checked again as
          // it goes (revoked, unpinned, expired: the export ends with that refusal).
          if (++sent % RECHECK_EVERY === 0) auth.require(call, 'auditor');
          // Respect flow control: a slow auditor must not make the server buffer the whole log.
          if (!call.write({ json: JSON.stringify(record) })) {
            await new Promise((r) => call.once('drain', r));
            auth.require(call, 'auditor');
          }
        }
        call.end();
      } catch (e) {
        call.emit('error', toServiceError(e, log));
      }
    },
    GetCheckpoint: unary(log, async (call: grpc.ServerUnaryCall<{ treeSize: string }, unknown>) => {
      auth.require(call, 'auditor');
      const want = size(call.request.treeSize, 'tree_size');
      const note = want === 0 ? await store.latestCheckpointNote() : await store.checkpointNote(want);
      if (!note) {
        const message =
          want === 0 ? 'no checkpoint has been signed yet' : `no checkpoint was signed at tree size ${want}`;
        throw new SignerError('REQUEST_INVALID', message, { treeSize: String(want) });
      }
      const verifierKey = encodeVerifierKey(checkpointer.origin, SIG_TYPE_ED25519, checkpointer.key.publicKey);
      return { note: note.note, treeSize: String(note.size), signedAt: note.at, verifierKey };
    }),
    GetInclusionProof: unary(log, async (call: grpc.ServerUnaryCall<{ seq: string; treeSize: string }, unknown>) => {
      auth.require(call, 'auditor');
      const seq = size(call.request.seq, 'seq');
      const treeSize = size(call.request.treeSize, 'tree_size');
      if (seq < 1 || seq > treeSize || treeSize > (await logSize())) {
        throw new SignerError('REQUEST_INVALID', 'need 1 <= seq <= tree_size <= the log size', {
          seq: String(seq),
          treeSize: String(treeSize),
        });
      }
      const hashes = await store.inclusionProof(seq, treeSize);
      let entry: object | undefined;
      for await (const e of store.readAudit(seq, seq)) entry = { type: 'entry', ...e };
      return {
        seq: String(seq),
        treeSize: String(treeSize),
        leafIndex: String(seq - 1),
        hashes: hashes.map((h) => Buffer.from(h)),
        entryJson: JSON.stringify(entry ?? null),
      };
    }),
    GetConsistencyProof: unary(
      log,
      async (call: grpc.ServerUnaryCall<{ fromSize: string; toSize: string }, unknown>) => {
        auth.require(call, 'auditor');
        const from = size(call.request.fromSize, 'from_size');
        const to = size(call.request.toSize, 'to_size');
        if (from < 1 || from > to || to > (await logSize())) {
          throw new SignerError('REQUEST_INVALID', 'need 0 < from_size <= to_size <= the log size', {
            fromSize: String(from),
            toSize: String(to),
          });
        }
        const hashes = await store.consistencyProof(from, to);
        return { fromSize: String(from), toSize: String(to), hashes: hashes.map((h) => Buffer.from(h)) };
      },
    ),
  };
}
