import { openCheckpoint } from '../../core/audit/checkpoint.js';
import type { NoteVerifier } from '../../core/audit/note.js';
import type { Hsm } from '../../infra/hsm/hsm.js';
import { HsmMark } from '../../infra/hsm/mark.js';
import type { Logger } from '../../infra/log.js';
import type { TrustedHead } from './checkpointer.js';
import type { WitnessPublisher } from './witnesses.js';

/**
 * The tree heads kept outside the database that the checkpointer starts from
 * (Checkpointer.seed): every replica's rollback mark on the token (when the mark is on), and
 * each reachable witness's latest checkpoint for this origin, opened with the audit key (a
 * witness cannot vouch for a head our key did not sign). A mark of the previous release (a
 * chain hash, not a tree head) is left to the rollback guard, which checks it the old way. An
 * unreachable witness is logged and skipped: the heads of the others, and the mark, still hold.
 */
export async function trustedHeads(o: {
  hsm?: Hsm;
  witnesses?: WitnessPublisher;
  origin: string;
  log: NoteVerifier;
  logger?: Logger;
}): Promise<TrustedHead[]> {
  const heads: TrustedHead[] = [];
  if (o.hsm) {
    for (const m of await HsmMark.readAll(o.hsm)) {
      if (m.head && !m.head.chainHash) heads.push({ source: `hsm:${m.replica}`, size: m.head.size, root: m.head.root });
    }
  }
  for (const w of o.witnesses ? await o.witnesses.latest(o.origin) : []) {
    if (!('checkpoint' in w)) {
      o.logger?.warn({ witness: w.name, why: w.why }, 'witness unreachable at start: its latest head is not checked');
      continue;
    }
    if (w.checkpoint === '') continue;
    try {
      const { checkpoint } = openCheckpoint(w.checkpoint, { origin: o.origin, log: o.log });
      heads.push({ source: `witness:${w.name}`, size: checkpoint.size, root: checkpoint.root });
    } catch (e) {
      o.logger?.error(
        { witness: w.name, why: (e as Error).message },
        "a witness's latest checkpoint does not verify under the audit key; ignored",
      );
    }
  }
  return heads;
}
