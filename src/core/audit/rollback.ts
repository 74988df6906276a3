/**
 * Store rollback detection (issue 10, point 5): the pure decision. The signer keeps, outside its
 * database (a token data object in the HSM, later also the witnesses), the latest tree head under
 * which it released signatures: the "mark". A database that does not contain the marked head
 * was restored from a backup or failed over to a standby that missed commits, and its nonce
 * claims may have lost signatures already released: signing on it could sign a second payload
 * for a nonce. The caller refuses to sign while this says `ok: false`.
 */
import { SignerError } from '../errors.js';

/** A log's size and its RFC 9162 tree head at that size. */
export interface TreeHead {
  size: number;
  root: Uint8Array;
  /**
   * Set on a mark written by the release before the tree heads: `root` is then the hash-chain
   * hash of entry `size` (which commits to every entry before it), checked against that.
   */
  chainHash?: true;
}

export type RollbackCheck =
  | { ok: true }
  | {
      ok: false;
      /** `shorter`: the database has fewer entries; `diverged`: its head at the marked size differs. */
      why: 'shorter' | 'diverged';
      marked: TreeHead;
      /** Where the mark came from: `hsm:<replica>`, `witness:<name>`. */
      source: string;
      dbSize: number;
      /** The database's head at the marked size, when it has that many entries. */
      dbRootAtMark?: Uint8Array;
    };

const equal = (a: Uint8Array, b: Uint8Array) => a.length === b.length && a.every((x, i) => x === b[i]);

/**
 * Does a database of `dbSize` entries, whose head at `mark.size` is `dbRootAtMark` (undefined
 * when it has fewer entries), contain the marked head? No mark (first start) always passes.
 */
export function checkRollback(
  mark: TreeHead | undefined,
  source: string,
  dbSize: number,
  dbRootAtMark: Uint8Array | undefined,
): RollbackCheck {
  if (!mark) return { ok: true };
  if (dbSize < mark.size || dbRootAtMark === undefined)
    return { ok: false, why: 'shorter', marked: mark, source, dbSize };
  if (!equal(dbRootAtMark, mark.root))
    return { ok: false, why: 'diverged', marked: mark, source, dbSize, dbRootAtMark };
  return { ok: true };
}

/**
 * The mark a release may write: the database's head when it is larger than the mark. Never
 * lower, and never the same size under another root (that is a rollback, caught by
 * {@link checkRollback} first): undefined means nothing to write.
 */
export function nextMark(mark: TreeHead | undefined, dbHead: TreeHead): TreeHead | undefined {
  return mark && dbHead.size <= mark.size ? undefined : dbHead;
}

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

/** What the lost range is, as audit and log fields (sizes and roots, nothing secret). */
export function lostRange(c: Extract<RollbackCheck, { ok: false }>): Record<string, string> {
  return {
    why: c.why,
    source: c.source,
    markedSize: String(c.marked.size),
    markedRoot: hex(c.marked.root),
    dbSize: String(c.dbSize),
    ...(c.dbRootAtMark ? { dbRootAtMark: hex(c.dbRootAtMark) } : {}),
  };
}

/** The refusal every Sign gets while the store is rolled back (FAILED_PRECONDITION). */
export function rolledBackError(c: Extract<RollbackCheck, { ok: false }>): SignerError {
  const what =
    c.why === 'shorter'
      ? `the database holds ${c.dbSize} audit entries but signatures were released under ${c.marked.size}`
      : `the database's audit log differs from the one signatures were released under (size ${c.marked.size})`;
  return new SignerError(
    'STORE_ROLLED_BACK',
    `${what}: the store was rolled back (restored backup or failed-over standby); signing is stopped until an ` +
      'operator runs scripts/reconcile-rollback.ts (README, "Store rollback")',
    lostRange(c),
  );
}
