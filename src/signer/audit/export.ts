import { EXPORT_FORMAT } from '../../core/audit/format.js';
import type { AuditStore } from '../../infra/store/audit.js';
import type { AuditTreeStore, StoredNote } from '../../infra/store/audit-tree.js';
import type { AuditKeyRef, Checkpointer } from './checkpointer.js';

/**
 * The records of an export, in order: a header with the audit public keys, then the entries of
 * the period with each stored checkpoint right after the entry it covers, ending with a
 * checkpoint over the last entry (signed now, by the checkpointer, if none exists), so truncation
 * is detectable. Then, last, the `note` record: the C2SP tree checkpoint the export ends under,
 * the smallest signed note covering its last entry, with the proofs an auditor needs to check
 * the export against it offline (format.ts), so no separate checkpoint file is needed.
 *
 * When the log has entries beyond the last checkpoint, the export asks the checkpointer for a
 * fresh one rather than stopping at the last checkpointed size: the auditor asked for the period
 * up to now, and the checkpointer signs only a head it has proved extends the last one it
 * signed (recomputing the new leaves from the stored content), so signing on demand can never
 * sign a head the database alone made up; an export that stopped short would leave its newest
 * entries vouched for by nothing. The note is read after the entries are streamed, so it carries
 * the witness cosignatures collected meanwhile.
 * Reads the log in pages: memory stays flat whatever the period's size.
 */
export async function* exportRecords(
  store: AuditStore & AuditTreeStore,
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
  const note = await closingNote(store, checkpointer, range.last);
  const hex = (hs: Uint8Array[]) => hs.map((h) => Buffer.from(h).toString('hex'));
  yield {
    type: 'note',
    size: note.size,
    note: note.note,
    inclusion: range.first > 1 ? hex(await store.inclusionProof(range.first, note.size)) : [],
    consistency: range.last < note.size ? hex(await store.consistencyProof(range.last, note.size)) : [],
  };
}

/** The smallest signed note covering entry `last`; the checkpointer signs the head when none does. */
async function closingNote(store: AuditTreeStore, checkpointer: Checkpointer, last: number): Promise<StoredNote> {
  const stored = await store.checkpointNote(last, true);
  if (stored) return stored;
  await checkpointer.checkpointHead();
  const fresh = await store.checkpointNote(last, true);
  if (!fresh) throw new Error(`export: no checkpoint note covers entry ${last} after checkpointing the head`);
  return fresh;
}
