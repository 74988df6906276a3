import type Database from 'better-sqlite3';

interface Op {
  run: () => unknown;
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
}

/**
 * Runs every operation submitted in one event-loop turn inside one SQLite transaction, each in
 * its own savepoint, and settles them only after the commit. With synchronous=FULL a commit is
 * an fsync (~0.3 ms here); one per request would cap the service far below the HSM, one per
 * turn costs almost nothing per request. A failing operation rolls back only its savepoint.
 */
export class GroupCommit {
  private queue: Op[] = [];
  private scheduled = false;

  constructor(private readonly db: Database.Database) {}

  submit<T>(run: () => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.queue.push({ run, resolve: resolve as (v: unknown) => void, reject });
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  private flush(): void {
    this.scheduled = false;
    const ops = this.queue.splice(0);
    const results: Array<{ ok: true; value: unknown } | { ok: false; error: unknown }> = [];
    try {
      this.db
        .transaction(() => {
          for (const op of ops) {
            try {
              results.push({ ok: true, value: this.db.transaction(op.run)() });
            } catch (error) {
              results.push({ ok: false, error });
            }
          }
        })
        .immediate();
    } catch (error) {
      for (const op of ops) op.reject(error);
      return;
    }
    ops.forEach((op, i) => {
      const r = results[i]!;
      if (r.ok) op.resolve(r.value);
      else op.reject(r.error);
    });
  }
}
