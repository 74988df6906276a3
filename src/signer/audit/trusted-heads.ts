import { openCheckpoint } from '../../core/audit/checkpoint.js';
import { type Frontier, frontierNodes, frontierRoot } from '../../core/audit/merkle.js';
import { verifyConsistency } from '../../core/audit/merkle-verify.js';
import type { NoteVerifier } from '../../core/audit/note.js';
import { checkRollback, type RollbackCheck } from '../../core/audit/rollback.js';
import type { Hsm } from '../../infra/hsm/hsm.js';
import { HsmMark } from '../../infra/hsm/mark.js';
import type { Logger } from '../../infra/log.js';
import type { AuditStore } from '../../infra/store/audit.js';
import type { AuditTreeStore } from '../../infra/store/audit-tree.js';
import type { WitnessPublisher } from './witnesses.js';

/** A tree head kept outside the database: source `hsm:<replica>` (rollback mark), `witness:<name>`, `store`. */
export interface TrustedHead {
  source: string;
  size: number;
  root: Uint8Array;
}

/** Why the database does not hold the trusted heads (the checkpointer's Inconsistency). */
export interface HeadMismatch {
  range: { from: number; to: number };
  signedSize: number;
  message: string;
  /** The database lost entries a trusted head holds: STORE_ROLLED_BACK. */
  rolledBack?: Extract<RollbackCheck, { ok: false }>;
}

/**
 * Proves the database holds the largest of `heads` (non-empty), and that every other is a prefix
 * of it: the stored nodes of its compact range must give its root (a node cannot be forged to
 * hash to a given root), each smaller head must verify against it with a consistency proof read
 * from the store (untrusted; the math is what counts). Returns the largest head and its frontier.
 */
export async function proveTrustedHead(
  store: AuditStore & AuditTreeStore,
  heads: readonly TrustedHead[],
): Promise<{ ok: true; top: TrustedHead; frontier: Frontier } | { ok: false; inconsistency: HeadMismatch }> {
  const top = heads.reduce((a, b) => (b.size > a.size ? b : a));
  const dbSize = (await store.auditHead())?.seq ?? 0;
  const fail = (inconsistency: HeadMismatch) => ({ ok: false as const, inconsistency });
  if (dbSize < top.size) {
    return fail({
      range: { from: dbSize + 1, to: top.size },
      signedSize: top.size,
      message: `the database holds ${dbSize} entries but ${top.source} holds a signed head of ${top.size}: entries ${dbSize + 1}..${top.size} are gone`,
      rolledBack: checkRollback(top, top.source, dbSize, undefined) as Extract<RollbackCheck, { ok: false }>,
    });
  }
  let frontier: Frontier = { size: top.size, hashes: [] };
  try {
    frontier = { size: top.size, hashes: [...(await store.readNodes(frontierNodes(top.size)))] };
  } catch {
    // Missing nodes: reported as the mismatch below.
  }
  if (top.size > 0 && (frontier.hashes.length === 0 || !equal(frontierRoot(frontier), top.root))) {
    return fail({
      range: { from: 1, to: top.size },
      signedSize: top.size,
      message: `the database's tree at size ${top.size} is not the head ${top.source} holds: entries 1..${top.size} or their tree nodes were rewritten`,
    });
  }
  for (const h of heads) {
    if (h === top || h.size === 0) continue;
    const ok =
      h.size === top.size
        ? equal(h.root, top.root)
        : verifyConsistency(h.size, top.size, await store.consistencyProof(h.size, top.size), h.root, top.root);
    if (!ok) {
      return fail({
        range: { from: 1, to: h.size },
        signedSize: top.size,
        message: `the head ${h.source} holds (size ${h.size}) is not a prefix of the one ${top.source} holds (size ${top.size}) in this database`,
      });
    }
  }
  return { ok: true, top, frontier };
}

function equal(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

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
