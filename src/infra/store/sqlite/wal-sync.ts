import { closeSync, fdatasync, fsyncSync, openSync } from 'node:fs';
import { dirname } from 'node:path';

const DONE: Promise<void> = Promise.resolve();

/**
 * Makes SQLite's WAL commits durable off the event loop. The store runs with
 * `synchronous=NORMAL` (a commit writes its WAL frames without an fsync) and calls `committed()`
 * after each commit; `durable()` resolves once every commit made before the call is on stable
 * storage, after an `fdatasync` of the -wal file on the libuv pool. The WAL is append-only in
 * commit order and recovery replays it up to the last complete commit, so a sync started after
 * a commit covers it and every earlier one; one sync serves every commit made before it started.
 *
 * This is `synchronous=FULL`'s guarantee (on stable storage before the caller goes on) without
 * the event loop waiting in fsync: ~0.3 to 4 ms a commit here, during which the whole signer
 * stood still. Checkpoints keep SQLite's own syncs (NORMAL syncs the WAL before a checkpoint and
 * the database file after it, before the WAL restarts).
 *
 * A failed sync is final: the kernel may have dropped the dirty pages it could not write and
 * report the next sync clean, so every later `durable()` rejects with the first error and the
 * store stops accepting work (fail closed) until it is restarted.
 */
export class WalSync {
  private fd: number | undefined;
  private commits = 0;
  private synced = 0;
  private running = false;
  private failed: Error | undefined;
  private waiters: Array<{ upTo: number; resolve: () => void; reject: (e: unknown) => void }> = [];

  /** `walPath` MUST exist (the store opens it after the first transaction in WAL mode). */
  constructor(walPath: string) {
    this.fd = openSync(walPath, 'r+');
    // The -wal file's directory entry too, once: SQLite syncs it at its first WAL sync under
    // FULL; under NORMAL that would wait for the first checkpoint.
    fsyncSync(this.fd);
    const dir = openSync(dirname(walPath), 'r');
    try {
      fsyncSync(dir);
    } finally {
      closeSync(dir);
    }
  }

  /** Counts a commit; call it right after the commit returns, in the same turn. */
  committed(): void {
    this.commits++;
  }

  /** The first sync failure, if any: the store refuses work after it. */
  get error(): Error | undefined {
    return this.failed;
  }

  /** Resolves once every commit counted before this call is on stable storage. */
  durable(): Promise<void> {
    if (this.failed) return Promise.reject(this.failed);
    const upTo = this.commits;
    if (this.synced >= upTo) return DONE;
    return new Promise<void>((resolve, reject) => {
      this.waiters.push({ upTo, resolve, reject });
      this.start();
    });
  }

  /** Waits for the syncs in flight, then closes the file (before the database closes). */
  async close(): Promise<void> {
    await this.durable().catch(() => undefined);
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }

  private start(): void {
    if (this.running || this.fd === undefined) return;
    this.running = true;
    // Commits counted from here on may not be in this sync: they wait for the next one.
    const upTo = this.commits;
    fdatasync(this.fd, (err) => {
      this.running = false;
      if (err) {
        this.failed ??= new Error(`the SQLite WAL could not be synced to disk (${err.code ?? err.message})`);
        for (const w of this.waiters.splice(0)) w.reject(this.failed);
        return;
      }
      this.synced = upTo;
      // Waiters are in commit order: settle the prefix this sync covered.
      let n = 0;
      while (n < this.waiters.length && this.waiters[n]!.upTo <= upTo) this.waiters[n++]!.resolve();
      this.waiters.splice(0, n);
      if (this.waiters.length > 0) this.start();
    });
  }
}
