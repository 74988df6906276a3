import { EXPORT_FORMAT } from '../../core/audit/format.js';
import type { AuditStore } from '../../infra/store/audit.js';
import type { AuditKeyRef, Checkpointer } from './checkpointer.js';

/**
 * The records of an export, in order: a header with the audit public keys, then the entries of
 * the period with each stored checkpoint right after the entry it covers, ending with a
 * checkpoint over the last entry (signed now, by the checkpointer, if none exists), so truncation
 * is detectable.
 * Reads the log in pages: memory stays flat whatever the period's size.
 */
export async function* exportRecords(
  store: AuditStore,
  checkpointer: Checkpointer,
  auditKeys: AuditKeyRef[],
  period: { from: Date | null; to: Date | null },
): AsyncGenerator<Record<string, unknown>> {
  yield {
    type: 'header',
    format: EXPORT_FORMAT,
    exportedAt: new Date().toISOString(),
    from: period.from?.toISOString() ?? null,
    to: period.to?.toISOString() ?? null,
    auditKeys: auditKeys.map((k) => ({
      keyId: k.keyId,
      version: k.version,
      algorithm: 'ed25519',
      publicKey: Buffer.from(k.publicKey).toString('hex'),
    })),
  };
  const range = await store.auditRange(period.from, period.to);
  if (!range) return;
  const checkpoints = await store.checkpoints(range.first, range.last);
  let c = 0;
  for await (const entry of store.readAudit(range.first, range.last)) {
    yield { type: 'entry', ...entry };
    let covered = false;
    while (c < checkpoints.length && checkpoints[c]!.seq <= entry.seq) {
      if (checkpoints[c]!.seq === entry.seq) {
        yield { type: 'checkpoint', ...checkpoints[c]! };
        covered = true;
      }
      c++;
    }
    // Signed only after the checkpointer has checked the log extends its last signed tree and
    // this entry, as stored, is in it: an export never signs whatever head the database holds.
    if (entry.seq === range.last && !covered)
      yield { type: 'checkpoint', ...(await checkpointer.checkpointAt(entry.seq)) };
  }
}
