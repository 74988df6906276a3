import { type AuditEntry, entryDigests, GENESIS } from '../../core/audit/chain.js';
import { type AuditDraft, draftToEntry } from '../../core/audit/draft.js';

/** The audit table's columns, in the order of the values chainDrafts gives each row. */
export const AUDIT_COLUMNS = [
  'seq',
  'at',
  'at_ms',
  'kind',
  'client',
  'key_id',
  'key_version',
  'request_id',
  'payload_hash',
  'intent',
  'decision',
  'reason',
  'signature_hash',
  'prev_hash',
  'hash',
  // The entry's signed request as JSON (AuditEntry.request); NULL when it has none.
  'request',
] as const;

export interface AuditHead {
  seq: number;
  hash: string;
}

/**
 * Numbers and chains `drafts` after `head` (undefined for an empty log), for every store: seq
 * head+1, head+2..., each entry linked to the previous one's hash (GENESIS before the first) and
 * hashed with entryHash over draftToEntry, so all dialects hash the same bytes. Returns each
 * entry's row values in AUDIT_COLUMNS order, the entries themselves and their leaf hashes (for
 * the Merkle tree, audit-tree-codec.ts treeAppend, written in the same transaction; both hashes
 * come from one serialisation of the entry, chain.ts entryDigests), and the new head.
 *
 * The caller MUST run this inside the transaction that inserts the rows, after making itself
 * the log's only appender (SQLite: the write lock; PostgreSQL: the audit lock) and reading the
 * head under it; otherwise two appenders chain onto one head (a fork). Throws on a draft that
 * cannot be an entry (an invalid date, an intent canonicalJson refuses): the transaction then
 * rolls back, together with the change the entries describe.
 */
export function chainDrafts(
  drafts: AuditDraft[],
  head: AuditHead | undefined,
): { rows: unknown[][]; entries: AuditEntry[]; leaves: Uint8Array[]; head: AuditHead | undefined } {
  let seq = head?.seq ?? 0;
  let prevHash = head?.hash ?? GENESIS;
  const rows: unknown[][] = [];
  const entries: AuditEntry[] = [];
  const leaves: Uint8Array[] = [];
  for (const d of drafts) {
    seq++;
    const entry = draftToEntry(d, seq, prevHash);
    const { hash, leaf } = entryDigests(entry);
    entries.push({ ...entry, hash });
    leaves.push(leaf);
    rows.push([
      seq,
      entry.at,
      d.at.getTime(),
      entry.kind,
      entry.client,
      entry.keyId,
      entry.keyVersion,
      entry.requestId,
      entry.payloadHash,
      entry.intent === null ? null : JSON.stringify(entry.intent),
      entry.decision,
      entry.reason,
      entry.signatureHash,
      prevHash,
      hash,
      entry.request ? JSON.stringify(entry.request) : null,
    ]);
    prevHash = hash;
  }
  return { rows, entries, leaves, head: rows.length > 0 ? { seq, hash: prevHash } : head };
}
