import type { RecordState } from '../../core/replay/records.js';

/**
 * Reading a committed batch's results back by batch id, a page at a time. Item i of a batch is
 * the request record "<batch id>#<i>" of the batch's client (src/signer/signing/flow.ts), so a
 * page is one query: the batch row, joined with the page's request records by primary key.
 * Nothing here writes: the records are those the reservation and the completion committed.
 */

export interface BatchItemRecord {
  /** The item's index in the batch. */
  index: number;
  state: RecordState;
  /** The stored response (the exact SignResponse the batch returned), once done. */
  result?: Uint8Array;
  /** Pending and past its lease: its signing failed or its signer died; a retry signs it. */
  leaseExpired: boolean;
}

export interface BatchPage {
  /** Items from the requested index on, contiguous, at most the requested count. */
  items: BatchItemRecord[];
  /** Whether an item follows the last one returned. */
  more: boolean;
}

export interface BatchResultStore {
  /**
   * Up to `count` items of the client's batch from index `from` on; undefined when the client
   * has no batch of that id on record (never sent, refused, pruned, or another client's).
   */
  batchResults(client: string, batchId: string, from: number, count: number, now: Date): Promise<BatchPage | undefined>;
}

/** One row of the page query: a request record, or nulls for a batch with none in the range. */
export interface BatchItemRow {
  request_id: string | null;
  state: string | null;
  result: Uint8Array | null;
  lease_until: number | string | null;
}

/**
 * The page query. A batch row is always returned when the batch exists (LEFT JOIN), so "no
 * rows" means "no such batch of this client", in the same query that reads the items.
 */
export const BATCH_ITEMS_SQL = {
  sqlite: `SELECT r.request_id, r.state, r.result, r.lease_until
    FROM batches b
    LEFT JOIN requests r ON r.client = b.client AND r.request_id IN (SELECT value FROM json_each(?))
    WHERE b.client = ? AND b.batch_id = ?`,
  postgres: `SELECT r.request_id, r.state, r.result, r.lease_until
    FROM batches b
    LEFT JOIN requests r ON r.client = b.client AND r.request_id = ANY($3::text[])
    WHERE b.client = $1 AND b.batch_id = $2`,
} as const;

/** The request ids of items from..from+count (one more than a page, to tell whether more follow). */
export function batchItemIds(batchId: string, from: number, count: number): string[] {
  return Array.from({ length: count + 1 }, (_, k) => `${batchId}#${from + k}`);
}

/** The page from the query's rows: contiguous items from `from`, cut at the first gap. */
export function batchPage(
  rows: readonly BatchItemRow[],
  batchId: string,
  from: number,
  count: number,
  now: Date,
): BatchPage | undefined {
  if (rows.length === 0) return undefined;
  const byIndex = new Map<number, BatchItemRecord>();
  const prefix = `${batchId}#`;
  for (const r of rows) {
    if (r.request_id === null || !r.request_id.startsWith(prefix)) continue;
    const index = Number(r.request_id.slice(prefix.length));
    byIndex.set(index, {
      index,
      state: r.state === 'done' ? 'done' : 'pending',
      ...(r.result ? { result: new Uint8Array(r.result) } : {}),
      leaseExpired: Number(r.lease_until) <= now.getTime(),
    });
  }
  const items: BatchItemRecord[] = [];
  for (let i = from; i < from + count && byIndex.has(i); i++) items.push(byIndex.get(i)!);
  return { items, more: items.length === count && byIndex.has(from + count) };
}
