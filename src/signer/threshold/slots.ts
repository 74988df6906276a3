import type { SignIntent } from '../../core/policy/evaluate.js';

/** A request's traffic class: hot-wallet requests get a free slot before batch items. */
export type Lane = SignIntent['traffic'];

/**
 * A counting semaphore with two queues: at most `size` holders at once, and a released slot goes
 * to the longest-waiting hot request, else the longest-waiting batch item. Every `acquire` MUST
 * be paired with one `release`.
 */
export class Slots {
  private free: number;
  private readonly waiters: Record<Lane, Array<() => void>> = { hot: [], batch: [] };

  constructor(readonly size: number) {
    if (!Number.isInteger(size) || size < 1) {
      throw new RangeError(`slots: size must be a positive integer, not ${size}`);
    }
    this.free = size;
  }

  /** Slots held now. */
  get inUse(): number {
    return this.size - this.free;
  }

  /** Callers waiting for a slot in `lane`. */
  waiting(lane: Lane): number {
    return this.waiters[lane].length;
  }

  /** Resolves once the caller holds a slot. */
  acquire(lane: Lane): Promise<void> {
    if (this.free > 0) {
      this.free--;
      return Promise.resolve();
    }
    return new Promise<void>((resolve) => this.waiters[lane].push(resolve));
  }

  /** Hands the slot straight to the next waiter (hot first), or frees it. */
  release(): void {
    const next = this.waiters.hot.shift() ?? this.waiters.batch.shift();
    if (next) next();
    else if (this.free < this.size) this.free++;
    else throw new Error('slots: release without a matching acquire');
  }
}
