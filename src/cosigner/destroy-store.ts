import type Database from 'better-sqlite3';

/** Where the quorum's order to destroy a key version's shares stands on this cosigner. */
export type DestroyState = 'scheduled' | 'cancelled' | 'done';

export interface DestroyRow {
  proposalId: string;
  keyId: string;
  version: number;
  state: DestroyState;
  /** Who approved, with a hash of each signature (core/admin approvalsSummary). */
  approvals: string;
  dueAt: Date;
  closedAt: Date | null;
  /** The admin who cancelled, or "delay" when the shares were overwritten. */
  closedBy: string | null;
}

/**
 * The cosigner's record of the admin quorum's orders to destroy shares (README "Destroying
 * threshold shares"): one row per order, by its proposal id, scheduled until it is due (then
 * done, the shares overwritten) or cancelled by an admin (then never accepted again). A table
 * of its own in the cosigner's SQLite file, next to `shares` (made by migrations.ts).
 * `scrub` checkpoints and truncates its WAL.
 */
export class DestroyOrders {
  constructor(
    private readonly db: Database.Database,
    private readonly scrub: () => void,
  ) {}

  /**
   * Records the quorum's order to destroy a key version's shares, due at `dueAt`; from now on
   * they do not sign (`of`). Idempotent: an order for a version already scheduled answers
   * with that schedule. `cancelled` when this very order was cancelled here before (an admin's
   * cancel is final for its order; destroying needs a new proposal).
   */
  schedule(
    o: { proposalId: string; keyId: string; version: number; approvals: string },
    at: Date,
    dueAt: Date,
  ): { state: 'scheduled' | 'done'; dueAt: Date; shares: number; proposalId: string } | 'cancelled' {
    return this.db.transaction(() => {
      const mine = this.db.prepare('SELECT state FROM share_destroys WHERE proposal_id = ?').get(o.proposalId) as
        | { state: DestroyState }
        | undefined;
      if (mine?.state === 'cancelled') return 'cancelled' as const;
      const shares = (
        this.db
          .prepare('SELECT count(*) AS n FROM shares WHERE key_id = ? AND version = ?')
          .get(o.keyId, o.version) as {
          n: number;
        }
      ).n;
      const open = this.of(o.keyId, o.version);
      if (open) return { state: 'scheduled' as const, dueAt: open.dueAt, shares, proposalId: open.proposalId };
      if (mine) {
        const done = this.db.prepare('SELECT due_at FROM share_destroys WHERE proposal_id = ?').get(o.proposalId) as {
          due_at: number;
        };
        return { state: 'done' as const, dueAt: new Date(done.due_at), shares, proposalId: o.proposalId };
      }
      this.db
        .prepare(
          `INSERT INTO share_destroys (proposal_id, key_id, version, state, approvals, ordered_at, due_at)
           VALUES (?, ?, ?, 'scheduled', ?, ?, ?)`,
        )
        .run(o.proposalId, o.keyId, o.version, o.approvals, at.getTime(), dueAt.getTime());
      return { state: 'scheduled' as const, dueAt, shares, proposalId: o.proposalId };
    })();
  }

  /** The scheduled destruction of a key version's shares, if one is open. */
  of(keyId: string, version: number): { proposalId: string; dueAt: Date } | undefined {
    const r = this.db
      .prepare(
        "SELECT proposal_id, due_at FROM share_destroys WHERE key_id = ? AND version = ? AND state = 'scheduled'",
      )
      .get(keyId, version) as { proposal_id: string; due_at: number } | undefined;
    return r && { proposalId: r.proposal_id, dueAt: new Date(r.due_at) };
  }

  /**
   * Closes a scheduled destruction as cancelled by `admin`; false when it is not scheduled, or
   * when it is due at `at` (then only the overwrite may close it).
   */
  cancel(c: { proposalId: string; keyId: string; version: number }, admin: string, at: Date): boolean {
    return (
      this.db
        .prepare(
          `UPDATE share_destroys SET state = 'cancelled', closed_at = ?, closed_by = ?
           WHERE proposal_id = ? AND key_id = ? AND version = ? AND state = 'scheduled' AND due_at > ?`,
        )
        .run(at.getTime(), admin, c.proposalId, c.keyId, c.version, at.getTime()).changes === 1
    );
  }

  /** Every destruction order seen here, oldest first: what an operator reads back. */
  all(): DestroyRow[] {
    const rows = this.db.prepare('SELECT * FROM share_destroys ORDER BY ordered_at').all() as Array<{
      proposal_id: string;
      key_id: string;
      version: number;
      state: DestroyState;
      approvals: string;
      due_at: number;
      closed_at: number | null;
      closed_by: string | null;
    }>;
    return rows.map((r) => ({
      proposalId: r.proposal_id,
      keyId: r.key_id,
      version: r.version,
      state: r.state,
      approvals: r.approvals,
      dueAt: new Date(r.due_at),
      closedAt: r.closed_at === null ? null : new Date(r.closed_at),
      closedBy: r.closed_by,
    }));
  }

  /**
   * Overwrites the shares of every scheduled destruction due by `now` and closes it as done, one
   * transaction each: the ciphertext is first replaced by zeros, then the row deleted
   * (secure_delete zeroes its cells), then the WAL is checkpointed and truncated so no copy of
   * it is left in the file or the log.
   */
  overwriteDue(now: Date): Array<{ proposalId: string; keyId: string; version: number; shares: number }> {
    const due = this.db
      .prepare("SELECT proposal_id, key_id, version FROM share_destroys WHERE state = 'scheduled' AND due_at <= ?")
      .all(now.getTime()) as Array<{ proposal_id: string; key_id: string; version: number }>;
    const done = due.map((d) =>
      this.db.transaction(() => {
        const where = 'key_id = ? AND version = ?';
        this.db.prepare(`UPDATE shares SET sealed = zeroblob(length(sealed)) WHERE ${where}`).run(d.key_id, d.version);
        const shares = this.db.prepare(`DELETE FROM shares WHERE ${where}`).run(d.key_id, d.version).changes;
        this.db
          .prepare(
            "UPDATE share_destroys SET state = 'done', closed_at = ?, closed_by = 'delay' WHERE proposal_id = ? AND state = 'scheduled'",
          )
          .run(now.getTime(), d.proposal_id);
        return { proposalId: d.proposal_id, keyId: d.key_id, version: d.version, shares };
      })(),
    );
    if (done.length) this.scrub();
    return done;
  }
}
