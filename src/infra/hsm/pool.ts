import type { Metrics } from '../metrics.js';

/** Hot-wallet requests are served before batch items whenever both wait for a session. */
export type Lane = 'hot' | 'batch';

interface Waiter<S> {
  resolve(s: S): void;
  reject(e: unknown): void;
  /** Set while the wait has a deadline; cleared when the waiter is served or rejected. */
  timer?: NodeJS.Timeout;
}

/**
 * A fixed set of HSM sessions handed out one operation at a time. A PKCS#11 session runs one
 * operation at a time, so an operation MUST hold its session from SignInit to the end of Sign.
 */
export class SessionPool<S> {
  private free: S[] = [];
  private waiters: Record<Lane, Waiter<S>[]> = { hot: [], batch: [] };
  private busy = 0;
  private total = 0;

  /** `timeoutError` is what a wait that reached its limit rejects with, given the limit. */
  constructor(
    private readonly metrics?: Metrics,
    private readonly timeoutError: (waitMs: number) => unknown = (ms) => new Error(`no free session within ${ms} ms`),
  ) {}

  get inUse(): number {
    return this.busy;
  }

  get size(): number {
    return this.total;
  }

  /** Adds a newly opened session. */
  add(s: S): void {
    this.total++;
    this.busy++;
    this.release(s);
  }

  /**
   * A free session, or the next one released (hot lane first). With `waitMs`, a caller that is
   * still queued after that long leaves the queue and gets the pool's timeout error: a stuck or
   * saturated HSM turns into a prompt refusal instead of a request that waits forever. The
   * timer exists only while the caller waits, so the uncontended path costs nothing more.
   */
  acquire(lane: Lane, waitMs?: number): Promise<S> {
    const s = this.free.pop();
    if (s !== undefined) {
      this.busy++;
      this.observe();
      return Promise.resolve(s);
    }
    if (waitMs !== undefined && waitMs <= 0) return Promise.reject(this.timeoutError(0));
    return new Promise<S>((resolve, reject) => {
      const waiter: Waiter<S> = { resolve, reject };
      if (waitMs !== undefined) {
        waiter.timer = setTimeout(() => {
          const queue = this.waiters[lane];
          const i = queue.indexOf(waiter);
          if (i < 0) return;
          queue.splice(i, 1);
          this.observe();
          reject(this.timeoutError(waitMs));
        }, waitMs);
      }
      this.waiters[lane].push(waiter);
      this.observe();
    });
  }

  /** Returns a healthy session: the next waiter gets it directly, hot lane first. */
  release(s: S): void {
    const next = this.waiters.hot.shift() ?? this.waiters.batch.shift();
    if (next) {
      clearTimeout(next.timer);
      next.resolve(s);
    } else {
      this.busy--;
      this.free.push(s);
    }
    this.observe();
  }

  /** Forgets a session that the caller has closed or found dead. */
  discard(): void {
    this.busy--;
    this.total--;
    this.observe();
  }

  /** Takes every idle session out of the pool (to close them). */
  takeIdle(): S[] {
    const idle = this.free;
    this.free = [];
    this.total -= idle.length;
    this.observe();
    return idle;
  }

  rejectWaiters(e: unknown): void {
    for (const lane of ['hot', 'batch'] as const) {
      for (const w of this.waiters[lane].splice(0)) {
        clearTimeout(w.timer);
        w.reject(e);
      }
    }
    this.observe();
  }

  private observe(): void {
    if (!this.metrics) return;
    this.metrics.sessionsInUse.set(this.busy);
    this.metrics.sessionsTotal.set(this.total);
    this.metrics.sessionWaiters.set({ lane: 'hot' }, this.waiters.hot.length);
    this.metrics.sessionWaiters.set({ lane: 'batch' }, this.waiters.batch.length);
  }
}
