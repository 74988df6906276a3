/**
 * What an auditor checks offline against signed checkpoints (no database, no HSM): one entry's
 * inclusion, a run of entries (an export) under a checkpoint, and that a newer checkpoint
 * extends an older one. Pure; proofs come from the Audit RPCs or files, and are untrusted: only
 * the checkpoint signatures (opened with keys obtained out of band) and the entries' recomputed
 * leaf hashes are trusted.
 */
import type { AuditEntry } from './chain.js';
import { entryHash } from './chain.js';
import { type Checkpoint, type CheckpointTrust, type OpenedCheckpoint, openCheckpoint } from './checkpoint.js';
import { entryLeafHash } from './leaf.js';
import { appendLeaves, EMPTY_FRONTIER, type Frontier, frontierNodes, frontierRoot, inclusionRanges } from './merkle.js';
import { verifyConsistency, verifyInclusion } from './merkle-verify.js';
import { ed25519Verifier, parseNote } from './note.js';

/** The origin (first line) of a note's text, before it is verified: to pick the key to verify with. */
export function noteOrigin(note: string): string {
  return parseNote(note).text.split('\n', 1)[0]!;
}

/**
 * Opens a log checkpoint note with the first of `publicKeys` (raw Ed25519) that signed it, under
 * `origin` (default: the note's own origin line: pin it when you know it). Throws NoteError.
 */
export function openLogCheckpoint(
  note: string,
  publicKeys: readonly Uint8Array[],
  opts: { origin?: string; witnesses?: CheckpointTrust['witnesses']; required?: number } = {},
): OpenedCheckpoint {
  const origin = opts.origin ?? noteOrigin(note);
  let last: unknown = new Error('no audit public key given');
  for (const pk of publicKeys) {
    try {
      return openCheckpoint(note, {
        origin,
        log: ed25519Verifier(origin, pk),
        witnesses: opts.witnesses,
        required: opts.required,
      });
    } catch (e) {
      last = e;
    }
  }
  throw last;
}

export type Check = { ok: true; what: string } | { ok: false; what: string };

/** Checks that `entry` (as the server or an export shows it) is leaf seq-1 of the checkpoint's tree. */
export function checkEntryInclusion(entry: AuditEntry, proof: readonly Uint8Array[], cp: Checkpoint): Check[] {
  const checks: Check[] = [];
  const hashOk = entryHash(entry) === entry.hash;
  checks.push({ ok: hashOk, what: `entry ${entry.seq} hashes to its recorded chain hash` });
  const inTree = entry.seq >= 1 && entry.seq <= cp.size;
  checks.push({ ok: inTree, what: `seq ${entry.seq} is within the checkpoint's ${cp.size} entries` });
  const ok = inTree && verifyInclusion(entry.seq - 1, cp.size, entryLeafHash(entry), proof, cp.root);
  checks.push({
    ok,
    what: `its leaf hash, recomputed from its content, with the ${proof.length}-hash audit path gives the signed root`,
  });
  return checks;
}

/**
 * The frontier of the tree of `index` leaves: the left siblings on leaf `index`'s audit path
 * (in a tree of `size`) are exactly its compact range. Trust it only after the proof verified.
 */
export function frontierFromInclusionProof(index: number, size: number, proof: readonly Uint8Array[]): Frontier {
  const ranges = inclusionRanges(index, size);
  if (ranges.length !== proof.length) throw new RangeError('inclusion proof of the wrong length');
  const left = ranges.map((r, i) => ({ r, h: proof[i]! })).filter(({ r }) => r.end <= index);
  const hashes = left.reverse().map(({ h }) => h); // deepest first -> largest (leftmost) first
  if (hashes.length !== frontierNodes(index).length)
    throw new RangeError('inclusion proof does not hold the compact range');
  return index === 0 ? EMPTY_FRONTIER : { size: index, hashes };
}

/**
 * Accumulates the leaves of a run of entries, from the frontier before its first, so that the
 * head after its last can be compared with a checkpoint: constant memory (O(log n)).
 */
export class RunRoot {
  private frontier: Frontier;
  constructor(start: Frontier = EMPTY_FRONTIER) {
    this.frontier = start;
  }

  /** Adds the next entry (seq must be size + 1). */
  add(entry: AuditEntry): void {
    if (entry.seq !== this.frontier.size + 1)
      throw new RangeError(`entry ${entry.seq} does not follow ${this.frontier.size}`);
    this.frontier = appendLeaves(this.frontier, [entryLeafHash(entry)]).frontier;
  }

  get size(): number {
    return this.frontier.size;
  }

  root(): Uint8Array {
    return frontierRoot(this.frontier);
  }
}

/** Does the checkpoint `newer` extend `older`? (The proof goes from older.size to newer.size.) */
export function checkConsistent(older: Checkpoint, newer: Checkpoint, proof: readonly Uint8Array[]): Check {
  const what = `the checkpoint of size ${newer.size} extends the one of size ${older.size} (consistency proof of ${proof.length} hashes)`;
  if (older.size === 0) return { ok: true, what: 'every tree extends the empty one' };
  if (older.size > newer.size) return { ok: false, what: `${what}: the newer one is smaller` };
  return { ok: verifyConsistency(older.size, newer.size, proof, older.root, newer.root), what };
}
