/**
 * The check the signer makes before it signs a checkpoint: does the tree the database now holds
 * extend the last tree it signed? Pure: the caller supplies the frontier (compact range) it kept
 * OUTSIDE the database since its last signature, the new entries as stored, and the root the
 * database's tree nodes give at the new size.
 *
 * The frontier is extended with leaf hashes recomputed from each entry's CONTENT (never a stored
 * hash or node), so the result is the head of "the tree we signed, plus these entries". If the
 * database's root differs, the stored nodes do not describe the entries (nodes written without
 * entries, an entry edited after its nodes were written, or history before the frontier rewritten
 * and its nodes recomputed); if the entries do not follow on (seq gap, a cut tail), it says so.
 */
import type { AuditEntry } from './chain.js';
import { entryLeafHash } from './leaf.js';
import { appendLeaves, type Frontier, frontierNodes, frontierRoot } from './merkle.js';

export type Extension =
  | { ok: true; frontier: Frontier; root: Uint8Array }
  | {
      ok: false;
      /** The first and last entry seq of the range that does not check out. */
      range: { from: number; to: number };
      why: 'shrunk' | 'gap' | 'root-mismatch';
      message: string;
    };

/**
 * Extends `signed` (the frontier of the last signed tree) with `entries` (seq signed.size+1 ..
 * newSize, in order) and compares the head with `storedRoot`, the database's head at newSize.
 */
export function extendChecked(
  signed: Frontier,
  newSize: number,
  entries: readonly AuditEntry[],
  storedRoot: Uint8Array,
  /** The database's hashes of frontierNodes(signed.size), to narrow a mismatch down; optional. */
  storedFrontier?: readonly Uint8Array[],
): Extension {
  const from = signed.size + 1;
  if (newSize < signed.size) {
    const message = `the log holds ${newSize} entries but a checkpoint over ${signed.size} was signed: entries ${newSize + 1}..${signed.size} are gone`;
    return { ok: false, range: { from: newSize + 1, to: signed.size }, why: 'shrunk', message };
  }
  const leaves: Uint8Array[] = [];
  for (let i = 0; i < entries.length; i++) {
    const want = from + i;
    if (entries[i]!.seq !== want) {
      const message = `entry ${want} is not where the log should hold it (found seq ${entries[i]!.seq})`;
      return { ok: false, range: { from: want, to: newSize }, why: 'gap', message };
    }
    leaves.push(entryLeafHash(entries[i]!));
  }
  if (from + entries.length - 1 !== newSize) {
    const message = `the log reports ${newSize} entries but only ${from + entries.length - 1} could be read`;
    return { ok: false, range: { from: from + entries.length, to: newSize }, why: 'gap', message };
  }
  const { frontier } = appendLeaves(signed, leaves);
  const root = frontierRoot(frontier);
  if (!equal(root, storedRoot)) {
    // Which part moved: a perfect subtree of the signed tree whose stored hash is not the one we
    // signed was rewritten (history); if all match, the new entries and their nodes disagree.
    const ids = frontierNodes(signed.size);
    const bad = storedFrontier ? ids.findIndex((_, i) => !equal(storedFrontier[i]!, signed.hashes[i]!)) : -1;
    const range =
      bad >= 0
        ? { from: ids[bad]!.index * 2 ** ids[bad]!.level + 1, to: (ids[bad]!.index + 1) * 2 ** ids[bad]!.level }
        : storedFrontier
          ? { from, to: newSize }
          : { from: 1, to: newSize };
    const message =
      `the database's tree head at size ${newSize} is not the last signed tree (size ${signed.size}) extended with ` +
      `entries ${from}..${newSize} as stored: entries ${range.from}..${range.to} or their tree nodes were rewritten`;
    return { ok: false, range, why: 'root-mismatch', message };
  }
  return { ok: true, frontier, root };
}

function equal(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}
