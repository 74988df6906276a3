/**
 * The witness's decision (C2SP tlog-witness, add-checkpoint): whether a checkpoint the log's key
 * signed may be cosigned, given the last checkpoint this witness cosigned for the same origin.
 *
 * Contract: {@link checkAddCheckpoint} returns `ok` only when the new tree extends the recorded one
 * (same size and same root, or a consistency proof from the recorded size that verifies against
 * both roots), or when nothing is recorded and the request claims nothing (old size 0, no proof).
 * Every other outcome names why, so the caller can tell a stale requester (`conflict`: resend with
 * a proof from `latestSize`) from a log that went back (`rollback`) or split (`fork`). The caller
 * MUST have verified the checkpoint's signature, and MUST record the new head durably, atomically
 * with the check (compare-and-swap on the recorded size), before it returns a cosignature.
 */
import type { Checkpoint } from './checkpoint.js';
import { verifyConsistency } from './merkle-verify.js';

/** What a witness keeps per origin: the size and root of the last checkpoint it cosigned. */
export interface RecordedHead {
  readonly size: number;
  readonly root: Uint8Array;
}

export type WitnessDecision =
  | { readonly ok: true }
  | {
      readonly ok: false;
      readonly kind: 'bad-request' | 'conflict' | 'rollback' | 'fork';
      readonly message: string;
      /** The recorded size (0 when none), for the requester's next proof. */
      readonly latestSize: number;
    };

export function checkAddCheckpoint(
  recorded: RecordedHead | undefined,
  oldSize: number,
  proof: readonly Uint8Array[],
  cp: Checkpoint,
): WitnessDecision {
  const latestSize = recorded?.size ?? 0;
  const refuse = (kind: 'bad-request' | 'conflict' | 'rollback' | 'fork', message: string): WitnessDecision => ({
    ok: false,
    kind,
    message,
    latestSize,
  });
  if (!Number.isSafeInteger(oldSize) || oldSize < 0) return refuse('bad-request', 'old size is not a tree size');
  // A smaller tree than one already cosigned is refused as such whatever the requester claims as
  // old size: that is what the log's operator must hear, not that the request was malformed.
  if (cp.size < latestSize) {
    return refuse('rollback', `checkpoint of size ${cp.size} is older than the cosigned size ${latestSize}`);
  }
  if (oldSize > cp.size) return refuse('bad-request', `old size ${oldSize} is larger than the checkpoint's ${cp.size}`);
  if (oldSize !== latestSize) {
    return refuse('conflict', `old size ${oldSize} is not this witness's latest size ${latestSize}`);
  }
  if (!recorded || recorded.size === 0) {
    return proof.length === 0 ? { ok: true } : refuse('bad-request', 'a proof from the empty tree must be empty');
  }
  if (cp.size === recorded.size) {
    if (proof.length !== 0) return refuse('bad-request', 'a proof between equal sizes must be empty');
    return equal(cp.root, recorded.root)
      ? { ok: true }
      : refuse('fork', `checkpoint of size ${cp.size} has another root than the one cosigned at that size`);
  }
  if (!verifyConsistency(recorded.size, cp.size, proof, recorded.root, cp.root)) {
    const message =
      `the consistency proof from size ${recorded.size} to ${cp.size} does not verify: ` +
      'the log does not extend the tree this witness cosigned (or the proof is wrong)';
    return refuse('fork', message);
  }
  return { ok: true };
}

function equal(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}
