import { createHash } from 'node:crypto';
import { eventDraft } from '../../core/audit/draft.js';
import { checkRollback, lostRange, type RollbackCheck } from '../../core/audit/rollback.js';
import type { ReplayStore } from '../../core/replay/records.js';
import type { Hsm } from '../../infra/hsm/hsm.js';
import { HsmMark } from '../../infra/hsm/mark.js';
import type { AuditStore } from '../../infra/store/audit.js';
import type { AuditTreeStore } from '../../infra/store/audit-tree.js';
import { treeHeads } from './log-heads.js';

/** Nonces of one account to close because a signature for them may have been lost. */
export interface Fence {
  keyId: string;
  version: number;
  chainId: bigint;
  nonces: bigint[];
}

/** `<key id>@v<version>:<chain id>:<nonce>[-<last nonce>]`, e.g. `hot-k1@v1:1:7-9`. */
export function parseFence(s: string): Fence {
  const m = /^(.+)@v(\d+):(\d+):(\d+)(?:-(\d+))?$/.exec(s);
  if (!m) throw new Error(`--fence ${s}: expected <key id>@v<version>:<chain id>:<nonce>[-<last nonce>]`);
  const first = BigInt(m[4]!);
  const last = BigInt(m[5] ?? m[4]!);
  if (last < first || last - first >= 10_000n)
    throw new Error(`--fence ${s}: a range of 1..10000 nonces, first <= last`);
  const nonces: bigint[] = [];
  for (let n = first; n <= last; n++) nonces.push(n);
  return { keyId: m[1]!, version: Number(m[2]), chainId: BigInt(m[3]!), nonces };
}

export interface ReconcileReport {
  rolledBack: Array<Extract<RollbackCheck, { ok: false }>>;
  /** Nonces closed by this run, and nonces the database already held a claim for. */
  fenced: string[];
  alreadyClaimed: string[];
  /** The head every mark was reset to. */
  resetTo?: { size: number; root: string };
}

const FENCE_CLIENT = 'reconcile-rollback';

/**
 * The operator's decision after a store rollback: closes the given nonces (a claim no payload
 * matches, so any request for them is refused NONCE_ALREADY_SIGNED), records the decision and
 * the lost range in the audit log, and resets every mark on the token to the database's head.
 * Runs with the signers stopped. Changes nothing when every mark is contained in the database
 * (rolledBack is empty) or with `dryRun`.
 */
export async function reconcileRollback(
  hsm: Hsm,
  store: AuditStore & AuditTreeStore & ReplayStore,
  decision: { operator: string; reason: string; fences: Fence[]; now: Date; dryRun?: boolean },
): Promise<ReconcileReport> {
  const heads = treeHeads(store);
  const db = await heads.head();
  const marks = await HsmMark.readAll(hsm);
  const rolledBack: ReconcileReport['rolledBack'] = [];
  for (const m of marks) {
    const atMark = m.head && m.head.size <= db.size ? await heads.rootAt(m.head.size, m.head) : undefined;
    const c = checkRollback(m.head, `hsm:${m.replica}`, db.size, atMark);
    if (!c.ok) rolledBack.push(c);
  }
  const report: ReconcileReport = { rolledBack, fenced: [], alreadyClaimed: [] };
  if (rolledBack.length === 0 || decision.dryRun) return report;
  for (const f of decision.fences) {
    for (const nonce of f.nonces) {
      const where = `${f.keyId}@v${f.version}:${f.chainId}:${nonce}`;
      (await fence(store, f, nonce, decision.now)) ? report.fenced.push(where) : report.alreadyClaimed.push(where);
    }
  }
  await store.appendAudit([
    eventDraft('store.rollback_reconciled', decision.now, decision.operator, {
      intent: {
        ...lostRange(rolledBack.reduce((a, b) => (b.marked.size > a.marked.size ? b : a))),
        marks: rolledBack.map((c) => `${c.source}=${c.marked.size}`).join(','),
        operatorReason: decision.reason,
        fenced: report.fenced.join(','),
        alreadyClaimed: report.alreadyClaimed.join(','),
      },
    }),
  ]);
  const head = await heads.head();
  for (const m of marks) await (await HsmMark.open(hsm, m.replica)).reset(head);
  report.resetTo = { size: head.size, root: Buffer.from(head.root).toString('hex') };
  return report;
}

/** Claims one nonce for a payload nobody can send; false when the database already has a claim. */
async function fence(
  store: AuditStore & AuditTreeStore & ReplayStore,
  f: Fence,
  nonce: bigint,
  now: Date,
): Promise<boolean> {
  const account = `${f.keyId}@v${f.version}`;
  const requestId = `rollback-fence:${account}:${f.chainId}:${nonce}`;
  // Not the hash of any payload: a payload hash is over key id, kind and bytes, never this text.
  const tombstone = createHash('sha256').update(`hsm-signer rollback fence\0${requestId}`).digest();
  const item = {
    client: FENCE_CLIENT,
    requestId,
    keyId: f.keyId,
    payloadHash: tombstone,
    value: 0n,
    nonce: { account, chainId: f.chainId, nonce, intentHash: tombstone, maxFeePerGas: 0n, maxPriorityFeePerGas: 0n },
  };
  const fresh = await store.reserve({ items: [item], velocity: [], leaseMs: 1000, now }, (view) =>
    view.items[0]!.nonce || view.items[0]!.request
      ? { outcome: false, writes: [] }
      : { outcome: true, writes: [{ index: 0, action: 'insert' as const }] },
  );
  if (!fresh) return false;
  const draft = eventDraft('nonce.fence', now, FENCE_CLIENT, {
    keyId: f.keyId,
    keyVersion: f.version,
    payloadHash: tombstone,
    intent: { chainId: f.chainId.toString(), nonce: nonce.toString(), why: 'store rollback' },
  });
  await store.complete([{ client: FENCE_CLIENT, requestId, result: Buffer.from('{"fence":true}') }], [draft]);
  return true;
}
