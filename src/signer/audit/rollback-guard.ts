import {
  checkRollback,
  lostRange,
  nextMark,
  type RollbackCheck,
  rolledBackError,
  type TreeHead,
} from '../../core/audit/rollback.js';
import { SignerError } from '../../core/errors.js';
import type { Logger } from '../../infra/log.js';

/** The database's log as the guard sees it: its head, and its head at an earlier size. */
export interface LogHeads {
  head(): Promise<TreeHead>;
  /**
   * The head the log had at `size` entries; undefined when it has fewer. With `chainHash` (a mark
   * of the previous release), the hash-chain hash of entry `size` instead of the tree head.
   */
  rootAt(size: number, opts?: { chainHash?: boolean }): Promise<Uint8Array | undefined>;
}

/** Where the mark is kept (src/infra/hsm/mark.ts): this replica's, and every head to check at start. */
export interface MarkKeeper {
  readonly head: TreeHead | undefined;
  advance(next: TreeHead): Promise<void>;
  /** Every kept head to check at start: all replicas' marks, and (when available) witnesses'. */
  all(): Promise<Array<{ source: string; head: TreeHead | undefined }>>;
  /** Ends what writes the mark (its thread), after the writes in flight. */
  close?(): Promise<void>;
}

export interface RollbackGuardOptions {
  heads: LogHeads;
  mark: MarkKeeper;
  log?: Logger;
  /** Called once when the guard trips (health NOT_SERVING, metric). */
  onTrip?: (c: Extract<RollbackCheck, { ok: false }>) => void;
}

/**
 * Holds signatures until the mark covers them. The sign flow calls `release()` after its
 * results and audit entries are committed and before it returns them. Releases share writes like
 * a group commit: those of one store commit group (they arrive in the same turn of the event
 * loop) start one write together, and those that arrive while a write runs share the next one
 * (one C_SetAttributeValue per group, serialised). Each write first checks that the database
 * still contains the current mark, so a rollback while running (a standby promoted under the
 * signer, a tail deleted in the live file) is caught before the next release.
 */
export class RollbackGuard {
  private tripped: Extract<RollbackCheck, { ok: false }> | undefined;
  private running = false;
  private scheduled = false;
  /** Settles when no write is scheduled or running (for close). */
  private idle: Promise<void> = Promise.resolve();
  private settle: (() => void) | undefined;
  private waiters: Array<{ resolve: () => void; reject: (e: unknown) => void }> = [];

  constructor(private readonly o: RollbackGuardOptions) {}

  /** The start check: every kept head must be in the database. Returns false when it trips. */
  async checkAtStart(): Promise<boolean> {
    const db = await this.o.heads.head();
    for (const { source, head } of await this.o.mark.all()) {
      const atMark = head && head.size <= db.size ? await this.o.heads.rootAt(head.size, head) : undefined;
      const c = checkRollback(head, source, db.size, atMark);
      if (!c.ok) {
        this.trip(c);
        return false;
      }
    }
    return true;
  }

  get rolledBack(): Extract<RollbackCheck, { ok: false }> | undefined {
    return this.tripped;
  }

  /** Throws STORE_ROLLED_BACK once tripped: called before anything is reserved or signed. */
  assertServing(): void {
    if (this.tripped) throw rolledBackError(this.tripped);
  }

  /** Resolves once the mark covers every entry committed before the call. */
  release(): Promise<void> {
    this.assertServing();
    return new Promise((resolve, reject) => {
      this.waiters.push({ resolve, reject });
      this.pump();
    });
  }

  /** Lets the writes in flight finish and ends the mark's writer: before the HSM is closed. */
  async close(): Promise<void> {
    await this.idle;
    await this.o.mark.close?.();
  }

  /**
   * Starts the next write once this turn's releases are in: the results of one commit group
   * resume one after another within a turn, and the first must not start a write of its own that
   * the rest then wait behind (the head it reads already holds their entries).
   */
  private pump(): void {
    if (this.running || this.scheduled || this.waiters.length === 0) return;
    this.scheduled = true;
    if (!this.settle) this.idle = new Promise((r) => (this.settle = r));
    setImmediate(() => {
      this.scheduled = false;
      this.running = true;
      const group = this.waiters.splice(0);
      this.advance()
        .then(
          () => group.forEach((w) => w.resolve()),
          (e) => group.forEach((w) => w.reject(e)),
        )
        .finally(() => {
          this.running = false;
          if (this.waiters.length > 0) return this.pump();
          this.settle?.();
          this.settle = undefined;
        });
    });
  }

  private async advance(): Promise<void> {
    this.assertServing();
    const mark = this.o.mark.head;
    const db = await this.o.heads.head();
    const c = checkRollback(mark, 'hsm', db.size, await this.rootAtMark(mark, db));
    if (!c.ok) {
      this.trip(c);
      throw rolledBackError(c);
    }
    const next = nextMark(mark, db);
    if (!next) return;
    try {
      await this.o.mark.advance(next);
    } catch (e) {
      this.o.log?.error(
        { err: e instanceof SignerError ? e.message : (e as Error).message },
        'could not record the released audit head in the HSM',
      );
      throw new SignerError(
        'HSM_UNAVAILABLE',
        'could not record the audit head in the HSM before releasing signatures; retry (a retry replays the result)',
      );
    }
  }

  /**
   * The database's head at the marked size. At the same size it is the head just read (no second
   * read); a chain-hash mark of the previous release is always read the way it was written.
   */
  private async rootAtMark(mark: TreeHead | undefined, db: TreeHead): Promise<Uint8Array | undefined> {
    if (!mark || mark.size > db.size) return undefined;
    if (mark.size === db.size && !mark.chainHash) return db.root;
    return this.o.heads.rootAt(mark.size, mark);
  }

  private trip(c: Extract<RollbackCheck, { ok: false }>): void {
    if (this.tripped) return;
    this.tripped = c;
    this.o.log?.fatal(
      lostRange(c),
      'STORE ROLLED BACK: the database does not contain the audit head signatures were released under ' +
        '(restored backup or promoted standby). Signing is stopped so no nonce gets a second payload. ' +
        'Stop the signers, work out which nonces were signed in the lost range, and run ' +
        'scripts/reconcile-rollback.ts (README, "Store rollback").',
    );
    this.o.onTrip?.(c);
  }
}
