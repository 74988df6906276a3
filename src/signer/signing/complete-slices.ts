import type { AuditDraft } from '../../core/audit/draft.js';
import type { Completion, ReplayStore } from '../../core/replay/records.js';

/**
 * Results (and their audit entries) of a large batch are committed in slices: each slice is one
 * store call and one event-loop turn, so hot requests commit between them instead of waiting
 * behind a thousand rows. Every slice is durable before any result of the batch is returned.
 */
export const COMPLETE_SLICE = 100;

/** What one signed item commits: its result, then its entries (cosigner faults, its signature). */
export interface ItemCompletion {
  done: Completion;
  drafts: AuditDraft[];
}

/**
 * Commits a batch's results slice by slice while the rest of the batch is still being signed:
 * slice k (items k*SLICE.. in item order) goes to the store once each of its items has its
 * signature or its failure, after slice k-1. Without this the whole completion (the audit
 * entries' hashing, the rows) ran after the last signature, with the HSM idle. Order, slices and
 * transactions are those of committing at the end; only the time changes. Nothing here releases
 * a signature: the caller returns results after `finish` (every slice committed).
 */
export class SliceCommitter {
  private readonly pending: Array<ItemCompletion | null | undefined>;
  private readonly left: number[];
  private next = 0;
  private chain: Promise<void> = Promise.resolve();
  private readonly dropped = new Set<string>();

  constructor(
    private readonly store: Pick<ReplayStore, 'complete'>,
    items: number,
    private readonly slice = COMPLETE_SLICE,
  ) {
    this.pending = new Array(items);
    this.left = Array.from({ length: Math.ceil(items / slice) }, (_, k) => Math.min(slice, items - k * slice));
  }

  /** Item `index` was signed (its completion) or failed (null: nothing to commit here). */
  settle(index: number, c: ItemCompletion | null): void {
    this.pending[index] = c;
    const k = Math.floor(index / this.slice);
    this.left[k]!--;
    while (this.next < this.left.length && this.left[this.next] === 0) this.commit(this.next++);
  }

  /** Resolves once every slice committed, with the completions another attempt had finished first. */
  async finish(): Promise<Set<string>> {
    await this.chain;
    return this.dropped;
  }

  private commit(k: number): void {
    const part = this.pending.slice(k * this.slice, (k + 1) * this.slice).filter((c): c is ItemCompletion => !!c);
    if (part.length === 0) return;
    // Chained: one slice at a time, so a slice never joins another in one long transaction. A
    // failure ends the chain (later slices stay pending, as a crash would leave them).
    this.chain = this.chain.then(async () => {
      const r = await this.store.complete(
        part.map((c) => c.done),
        part.flatMap((c) => c.drafts),
      );
      for (const d of r.dropped) this.dropped.add(`${d.client}\0${d.requestId}`);
    });
    // Handled here, thrown by finish(): a failed slice must not be an unhandled rejection meanwhile.
    this.chain.catch(() => {});
  }
}
