/**
 * The store-level race used by test/store.suite.ts, in-process (two store instances) and across
 * processes (harness/store-race-worker.ts). Every participant runs the same attempts at
 * once, each with payloads of its own:
 *
 * - nonce race: 100 reservations of nonces 0..49 of one key (two per nonce), each under a
 *   request id of its own: exactly one winner per nonce over all participants;
 * - request race: 100 reservations of request ids r0..r49 (two per id) without a nonce:
 *   exactly one winner per request id;
 * - velocity race: 50 reservations on another key, allowed while the key's count is < 30:
 *   exactly 30 winners over all participants.
 *
 * `decide` refuses whenever the view shows a holder; a store whose reservation is not atomic
 * across connections and processes lets two participants both see "free" and both win.
 */
import { createHash } from 'node:crypto';
import type { AuditDraft } from '../src/core/audit/draft.js';
import type { ReplayStore, ReserveItem, ReservePlan, ReserveView } from '../src/core/replay/records.js';
import type { AuditStore } from '../src/infra/store/audit.js';

export const RACE_NOW = new Date(Date.UTC(2030, 0, 1));
export const RACE = {
  client: 'race-client',
  key: 'race-key',
  velocityKey: 'race-velocity-key',
  chainId: 1n,
  velocityLimit: 30,
} as const;

export interface RaceResult {
  tag: string;
  /** Reservations won: request id, and the nonce for the nonce race. */
  wins: Array<{ requestId: string; nonce?: string; payloadHash: string }>;
  velocityWins: number;
  /** How often `decide` ran (more than attempts: the store retried). */
  decideCalls: number;
  attempts: number;
}

const hash = (s: string) => createHash('sha256').update(s).digest();

export async function runRace(store: ReplayStore, tag: string): Promise<RaceResult> {
  const result: RaceResult = { tag, wins: [], velocityWins: 0, decideCalls: 0, attempts: 0 };
  const attempt = async (item: ReserveItem, velocity: boolean) => {
    result.attempts++;
    const won = await store.reserve(
      {
        items: [item],
        velocity: velocity ? [{ scope: 'key', subject: item.keyId, windowSeconds: 3600 }] : [],
        leaseMs: 60_000,
        now: RACE_NOW,
      },
      (view: ReserveView): ReservePlan<boolean> => {
        result.decideCalls++;
        const v = view.items[0]!;
        const free = !v.request && !v.nonce && (!velocity || view.velocity[0]!.count < RACE.velocityLimit);
        return free ? { outcome: true, writes: [{ index: 0, action: 'insert' }] } : { outcome: false, writes: [] };
      },
    );
    if (!won) return;
    if (velocity) result.velocityWins++;
    else
      result.wins.push({
        requestId: item.requestId,
        ...(item.nonce ? { nonce: item.nonce.nonce.toString() } : {}),
        payloadHash: Buffer.from(item.payloadHash).toString('hex'),
      });
  };
  const base = { client: RACE.client, keyId: RACE.key, value: 1n };
  const jobs: Array<Promise<void>> = [];
  for (let j = 0; j < 100; j++) {
    const nonce = BigInt(j % 50);
    jobs.push(
      attempt(
        {
          ...base,
          requestId: `n${j}-${tag}`,
          payloadHash: hash(`nonce ${j} ${tag}`),
          nonce: {
            account: `${RACE.key}@v1`,
            chainId: RACE.chainId,
            nonce,
            intentHash: hash(`intent ${j} ${tag}`),
            maxFeePerGas: 10n,
            maxPriorityFeePerGas: 1n,
          },
        },
        false,
      ),
    );
    jobs.push(attempt({ ...base, requestId: `r${j % 50}`, payloadHash: hash(`request ${j} ${tag}`) }, false));
    if (j < 50) {
      jobs.push(
        attempt(
          { ...base, keyId: RACE.velocityKey, requestId: `v${j}-${tag}`, payloadHash: hash(`velocity ${j} ${tag}`) },
          true,
        ),
      );
    }
  }
  await Promise.all(jobs);
  return result;
}

/**
 * The audit race: every participant makes `operations` calls (a burst, then `lanes` at a time),
 * each appending audit drafts in the transaction of its replay records (or of its own), all on
 * one chain:
 *
 * - reservations of shared request ids, half of them with a shared nonce (the same for every
 *   participant, so that they collide, retry and lose: without a nonce no advisory lock orders
 *   them, the primary key refuses the second insert and its group is retried): one draft each,
 *   "won" or "lost", and for a win a completion with one draft of its own;
 * - refusals: reservations reading a shared velocity sum (an advisory lock) that write nothing
 *   but two drafts;
 * - appendAudit calls of three drafts.
 *
 * Each draft's request id is a label unique over all participants ("tag/op/what"). The result
 * lists the labels of every call that succeeded, in call order: the chain must hold exactly
 * these, each call's drafts consecutive and in order.
 */
export interface AuditRaceResult {
  tag: string;
  /** Draft labels of each successful call, in the order of the call's drafts. */
  calls: string[][];
  /** Labels of the shared reservations this participant won. */
  won: string[];
  failures: string[];
  /** Reservations made, and how often their `decide` ran (more: retried transactions). */
  reservations: number;
  decideCalls: number;
}

export const AUDIT_RACE = { client: 'audit-race', key: 'audit-race-key', chainId: 7n } as const;

export function raceDraft(label: string, decision: AuditDraft['decision'] = 'allowed'): AuditDraft {
  return {
    kind: 'sign',
    at: RACE_NOW,
    client: AUDIT_RACE.client,
    keyId: AUDIT_RACE.key,
    keyVersion: 1,
    requestId: label,
    payloadHash: hash(`payload ${label}`),
    intent: { chainId: AUDIT_RACE.chainId.toString(), label },
    decision,
    reason: decision === 'refused' ? 'RACE' : null,
    signatureHash: decision === 'allowed' ? hash(`signature ${label}`) : null,
  };
}

export async function runAuditRace(
  store: ReplayStore & AuditStore,
  tag: string,
  operations = 300,
  lanes = 16,
): Promise<AuditRaceResult> {
  const result: AuditRaceResult = { tag, calls: [], won: [], failures: [], reservations: 0, decideCalls: 0 };
  const call = async (f: () => Promise<string[]>) => {
    try {
      result.calls.push(await f());
    } catch (e) {
      result.failures.push(String(e));
    }
  };
  const base = { client: AUDIT_RACE.client, keyId: AUDIT_RACE.key, value: 1n };
  const operation = async (j: number) => {
    const label = `${tag}/${j}`;
    if (j % 3 === 0) {
      const requestId = `audit-${j}`;
      const item: ReserveItem = {
        ...base,
        requestId,
        payloadHash: hash(`audit payload ${label}`),
        ...(j % 6 === 0
          ? {
              nonce: {
                account: `${AUDIT_RACE.key}@v1`,
                chainId: AUDIT_RACE.chainId,
                nonce: BigInt(j),
                intentHash: hash(`audit intent ${label}`),
                maxFeePerGas: 10n,
                maxPriorityFeePerGas: 1n,
              },
            }
          : {}),
      };
      let won = false;
      await call(async () => {
        result.reservations++;
        const labels = await store.reserve(
          { items: [item], velocity: [], leaseMs: 60_000, now: RACE_NOW },
          (view): ReservePlan<string[]> => {
            result.decideCalls++;
            const free = !view.items[0]!.request && !view.items[0]!.nonce;
            const l = `${label}/${free ? 'won' : 'lost'}`;
            return {
              outcome: [l],
              writes: free ? [{ index: 0, action: 'insert' }] : [],
              audit: [raceDraft(l, free ? 'allowed' : 'refused')],
            };
          },
        );
        won = labels[0]!.endsWith('/won');
        return labels;
      });
      if (won) {
        // Signed: the result and its entry, as the signing flow commits them.
        result.won.push(requestId);
        const signed = `${label}/signed`;
        await call(async () => {
          await store.complete([{ client: item.client, requestId, result: hash(signed) }], [raceDraft(signed)]);
          return [signed];
        });
      }
    } else if (j % 3 === 1) {
      await call(() => {
        result.reservations++;
        return store.reserve(
          {
            items: [],
            velocity: [{ scope: 'key', subject: AUDIT_RACE.key, windowSeconds: 3600 }],
            leaseMs: 60_000,
            now: RACE_NOW,
          },
          (): ReservePlan<string[]> => {
            result.decideCalls++;
            const labels = [`${label}/refused-1`, `${label}/refused-2`];
            return { outcome: labels, writes: [], audit: labels.map((l) => raceDraft(l, 'refused')) };
          },
        );
      });
    } else {
      const labels = [1, 2, 3].map((k) => `${label}/event-${k}`);
      await call(async () => {
        await store.appendAudit(labels.map((l) => raceDraft(l, 'done')));
        return labels;
      });
    }
  };
  // First a burst, in one turn: refusals of request ids of this participant's own (entries, no
  // writes, no locks), then the shared reservations that take no advisory lock (no nonce). A
  // store that groups a turn's reservations puts them in one transaction; the participants'
  // transactions collide on the first shared id (later ones queue behind the first one's
  // velocity rows), and the one that loses is rolled back after its refusals were decided,
  // and tried again with their entries.
  const own = Array.from({ length: 10 }, (_, k) => async () => {
    const label = `${tag}/own-${k}`;
    const it: ReserveItem = { ...base, requestId: `own-${tag}-${k}`, payloadHash: hash(`own ${label}`) };
    await call(() => {
      result.reservations++;
      return store.reserve({ items: [it], velocity: [], leaseMs: 60_000, now: RACE_NOW }, (): ReservePlan<string[]> => {
        result.decideCalls++;
        return { outcome: [label], writes: [], audit: [raceDraft(label, 'refused')] };
      });
    });
  });
  const all = Array.from({ length: operations }, (_, j) => j);
  const lockFree = (j: number) => j % 6 === 3;
  await Promise.all([...own.map((f) => f()), ...all.filter(lockFree).map(operation)]);
  // Then `lanes` callers, each making its next call when the previous one returned (like
  // requests in flight): many small transactions from every participant, interleaving.
  const rest = all.filter((j) => !lockFree(j));
  let next = 0;
  await Promise.all(
    Array.from({ length: lanes }, async () => {
      while (next < rest.length) await operation(rest[next++]!);
    }),
  );
  return result;
}
