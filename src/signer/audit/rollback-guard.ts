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
 * results and audit entries are committed and before it returns them; releases that arrive
 * while a mark write runs share the next one (one C_SetAttributeValue per group, serialised).
 * Each write first checks that the database still contains the current mark, so a rollback
 * while running (a standby promoted under the signer) is caught before the next release.
 */
export class RollbackGuard {
  private tripped: Extract<RollbackCheck, { ok: false }> | undefined;
  private running = false;
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

  private pump(): void {
    if (this.running || this.waiters.length === 0) return;
    this.running = true;
    const group = this.waiters.splice(0);
    this.advance()
      .then(
        () => group.forEach((w) => w.resolve()),
        (e) => group.forEach((w) => w.reject(e)),
      )
      .finally(() => {
        this.running = false;
        this.pump();
      });
  }

  private async advance(): Promise<void> {
    this.assertServing();
    const mark = this.o.mark.head;
    const db = await this.o.heads.head();
    const atMark = mark && mark.size <= db.size ? await this.o.heads.rootAt(mark.size, mark) : undefined;
    const c = checkRollback(mark, 'hsm', db.size, atMark);
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
