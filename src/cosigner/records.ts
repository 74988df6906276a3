import type Database from 'better-sqlite3';
import { type AuditEntry, entryHash, GENESIS } from '../core/audit/chain.js';
import { type AuditDraft, draftToEntry } from '../core/audit/draft.js';
import type { Settled } from '../infra/store/batcher.js';
import type { WalSync } from '../infra/store/sqlite/wal-sync.js';

/** A policy version used for a key: stored with the grant, the floor for later requests. */
export interface PolicyUse {
  name: string;
  version: number;
  keyId: string;
  /** How specifically the policy's patterns match the key (schema.ts selectPolicy's rank). */
  rank: number;
}

/** One granted share: its replay claim, velocity record, policy use and audit entry, together. */
export interface Grant {
  keyId: string;
  version: number;
  client: string;
  requestId: string;
  /** "req:<client>\0<id>" and, with a replay scope, "nonce:<chain>:<n>" (store.ts claims). */
  scopes: string[];
  payloadHash: Uint8Array;
  at: Date;
  policy: PolicyUse;
  audit: AuditDraft;
}

/** An audit row as stored: the entry's fields other than seq, at and kind are `details` JSON. */
export interface AuditRow {
  seq: number;
  at: string;
  kind: string;
  details: string;
  prev_hash: string;
  hash: string;
}

/** Velocity windows are at most 7 days (core/policy/schema.ts); grants are kept a day longer. */
const GRANT_RETENTION_MS = 8 * 86400_000;

/**
 * The cosigner's own records of what it released, next to its shares (same SQLite file, same
 * connection, so one transaction covers them): the shares it granted (for velocity), the newest
 * policy version it used per policy and the policy it used per key (no downgrade), and its own
 * hash-chained audit log. Tables only ever gain rows here, except grants past every window.
 * The tables are made by migrations.ts.
 */
export class CosignerRecords {
  constructor(
    private readonly db: Database.Database,
    /** Syncs the WAL off the event loop after a group of grants (`together`). */
    private readonly wal: WalSync,
  ) {}

  /** Waits for the WAL syncs in flight and closes the file (before the database closes). */
  close(): Promise<void> {
    return this.wal.close();
  }

  /**
   * Claims the payload's scopes (as CosignerStore.claim), records the grant and the policy
   * version used, and appends the granted audit entry, in one transaction. Returns the first
   * scope another payload holds (nothing is written then), or undefined when granted.
   */
  grant(g: Grant): string | undefined {
    return this.db.transaction(() => {
      const held = this.db.prepare('SELECT payload_hash FROM claims WHERE key_id = ? AND version = ? AND scope = ?');
      for (const scope of g.scopes) {
        const row = held.get(g.keyId, g.version, scope) as { payload_hash: Buffer } | undefined;
        if (row && !row.payload_hash.equals(Buffer.from(g.payloadHash))) return scope;
      }
      const at = g.at.getTime();
      const put = this.db.prepare(
        'INSERT OR IGNORE INTO claims (key_id, version, scope, payload_hash, at) VALUES (?, ?, ?, ?, ?)',
      );
      for (const scope of g.scopes) put.run(g.keyId, g.version, scope, Buffer.from(g.payloadHash), at);
      this.db
        .prepare('INSERT OR IGNORE INTO share_grants (key_id, client, request_id, at) VALUES (?, ?, ?, ?)')
        .run(g.keyId, g.client, g.requestId, at);
      const p = g.policy;
      this.db
        .prepare(
          `INSERT INTO policy_floors (name, version, at) VALUES (?, ?, ?)
           ON CONFLICT (name) DO UPDATE SET version = excluded.version, at = excluded.at
           WHERE excluded.version > policy_floors.version`,
        )
        .run(p.name, p.version, at);
      this.db
        .prepare(
          `INSERT INTO key_policies (key_id, policy, rank, at) VALUES (?, ?, ?, ?)
           ON CONFLICT (key_id) DO UPDATE SET policy = excluded.policy, rank = excluded.rank, at = excluded.at`,
        )
        .run(p.keyId, p.name, p.rank, at);
      this.append(g.audit);
      return undefined;
    })();
  }

  /**
   * Runs `calls` one after the other in one transaction, each in its own savepoint: a call that
   * throws undoes only its own writes and fails alone; every call sees the writes of the calls
   * before it. If the commit fails, every call fails. The commit skips SQLite's fsync
   * (synchronous=NORMAL for this transaction only): `durable` resolves once it is on stable
   * storage (WalSync: fdatasync of the WAL on the libuv pool, one for every group committed
   * before it starts), and nothing granted here may leave this process before it does. A failed
   * sync fails every later grant too (WalSync), until the cosigner restarts.
   */
  together<T>(calls: Array<() => T>): { outcomes: Array<Settled<T>>; durable: Promise<void> } {
    this.db.pragma('synchronous = NORMAL');
    let outcomes: Array<Settled<T>>;
    try {
      outcomes = this.db.transaction(() =>
        calls.map((call): Settled<T> => {
          try {
            return { value: this.db.transaction(call)() };
          } catch (error) {
            return { error };
          }
        }),
      )();
    } finally {
      this.db.pragma('synchronous = FULL');
    }
    this.wal.committed();
    const durable = this.wal.durable();
    // Observed here so that a group with no grant (every call refused) has no unhandled rejection.
    durable.catch(() => undefined);
    return { outcomes, durable };
  }

  /** Appends one entry (a refusal) in its own transaction. */
  audit(draft: AuditDraft): void {
    this.db.transaction(() => this.append(draft))();
  }

  /** The newest version of a policy this cosigner signed under, or 0. */
  policyFloor(name: string): number {
    const r = this.db.prepare('SELECT version FROM policy_floors WHERE name = ?').get(name) as
      | { version: number }
      | undefined;
    return r?.version ?? 0;
  }

  /** The policy this cosigner last signed a key under, and how specifically it matched. */
  keyPolicy(keyId: string): { policy: string; rank: number } | undefined {
    return this.db.prepare('SELECT policy, rank FROM key_policies WHERE key_id = ?').get(keyId) as
      | { policy: string; rank: number }
      | undefined;
  }

  /**
   * Shares granted since `since` for a key (scope key) or a client (scope client), other than
   * for `exceptRequest` (a retry of a granted request is not a second signature).
   */
  grantsSince(scope: 'key' | 'client', subject: string, since: Date, except: { client: string; requestId: string }) {
    const column = scope === 'key' ? 'key_id' : 'client';
    const r = this.db
      .prepare(
        `SELECT COUNT(*) AS n FROM share_grants WHERE ${column} = ? AND at >= ?
         AND NOT (client = ? AND request_id = ?)`,
      )
      .get(subject, since.getTime(), except.client, except.requestId) as { n: number };
    return r.n;
  }

  /** Forgets grants older than every velocity window. */
  pruneGrants(now: Date): number {
    return this.db.prepare('DELETE FROM share_grants WHERE at < ?').run(now.getTime() - GRANT_RETENTION_MS).changes;
  }

  /** The audit log in seq order (for the offline check and tests). */
  auditRows(): AuditRow[] {
    return this.db.prepare('SELECT * FROM cosigner_audit ORDER BY seq').all() as AuditRow[];
  }

  private append(draft: AuditDraft): void {
    const last = this.db.prepare('SELECT seq, hash FROM cosigner_audit ORDER BY seq DESC LIMIT 1').get() as
      | { seq: number; hash: string }
      | undefined;
    const entry = draftToEntry(draft, (last?.seq ?? 0) + 1, last?.hash ?? GENESIS);
    const hash = entryHash(entry);
    const { seq, at, kind, prevHash, ...details } = entry;
    this.db
      .prepare('INSERT INTO cosigner_audit (seq, at, kind, details, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?)')
      .run(seq, at, kind, JSON.stringify(details), prevHash, hash);
  }
}

/**
 * Checks a cosigner audit log offline: gapless seq from 1, each entry's prev hash the previous
 * entry's hash, and each hash recomputed from the entry (core/audit/chain.ts, the signer's
 * chain rules). Returns the entries, or the first problem.
 */
export function verifyCosignerAudit(
  rows: readonly AuditRow[],
): { ok: true; entries: AuditEntry[] } | { ok: false; seq: number; problem: string } {
  const entries: AuditEntry[] = [];
  let prev = GENESIS;
  for (const [i, r] of rows.entries()) {
    if (r.seq !== i + 1) return { ok: false, seq: r.seq, problem: `expected seq ${i + 1}` };
    if (r.prev_hash !== prev) return { ok: false, seq: r.seq, problem: 'prev hash is not the previous entry hash' };
    let entry: Omit<AuditEntry, 'hash'>;
    try {
      entry = { seq: r.seq, at: r.at, kind: r.kind, ...JSON.parse(r.details), prevHash: r.prev_hash };
      if (entryHash(entry) !== r.hash) return { ok: false, seq: r.seq, problem: 'hash does not match the entry' };
    } catch (e) {
      return { ok: false, seq: r.seq, problem: `entry does not parse: ${(e as Error).message}` };
    }
    entries.push({ ...entry, hash: r.hash });
    prev = r.hash;
  }
  return { ok: true, entries };
}
