/** How one call of a run ended. */
export type Settled<R> = { value: R } | { error: unknown };

export interface BatcherOptions {
  /** Runs at once; calls made meanwhile wait and go together into the next one. Default 1. */
  maxInFlight?: number;
  /** A run takes calls while their total size stays within this (the first call always goes). */
  maxSize?: number;
}

interface Queued<C, R> {
  call: C;
  size: number;
  resolve: (v: R) => void;
  reject: (e: unknown) => void;
}

/**
 * The stores' one batching primitive: the calls submitted in one event-loop turn are handed to
 * `run` together, so that many callers share one transaction and one commit (an fsync, or a
 * PostgreSQL round trip and a turn of the audit lock) instead of paying one each. Used for
 * SQLite's group commit, PostgreSQL's reservation groups, completions and audit appends.
 *
 * `run` returns one outcome per call, in call order: a call fails alone when its outcome is an
 * error. If `run` throws, every call of that run fails with the error. Calls are never settled
 * before `run` returns, i.e. before their transaction committed.
 */
export class Batcher<C, R> {
  private queue: Array<Queued<C, R>> = [];
  private scheduled = false;
  private inFlight = 0;
  private readonly maxInFlight: number;
  private readonly maxSize: number;

  constructor(
    private readonly run: (calls: C[]) => Promise<Array<Settled<R>>> | Array<Settled<R>>,
    opts: BatcherOptions = {},
  ) {
    this.maxInFlight = opts.maxInFlight ?? 1;
    this.maxSize = opts.maxSize ?? Number.POSITIVE_INFINITY;
  }

  submit(call: C, size = 1): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      this.queue.push({ call, size, resolve, reject });
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => {
          this.scheduled = false;
          this.flush();
        });
      }
    });
  }

  private flush(): void {
    while (this.inFlight < this.maxInFlight && this.queue.length > 0) {
      let n = 0;
      let size = 0;
      while (n < this.queue.length && (n === 0 || size + this.queue[n]!.size <= this.maxSize)) {
        size += this.queue[n++]!.size;
      }
      const batch = this.queue.splice(0, n);
      this.inFlight++;
      let outcomes: Promise<Array<Settled<R>>>;
      try {
        outcomes = Promise.resolve(this.run(batch.map((b) => b.call)));
      } catch (e) {
        outcomes = Promise.reject(e);
      }
      outcomes
        .then(
          (results) =>
            batch.forEach((b, i) => {
              const r = results[i];
              if (!r) b.reject(new Error('batch run returned no outcome for a call'));
              else if ('error' in r) b.reject(r.error);
              else b.resolve(r.value);
            }),
          (e: unknown) => batch.forEach((b) => b.reject(e)),
        )
        .finally(() => {
          this.inFlight--;
          this.flush();
        });
    }
  }
}
