/**
 * The store-level race used by test/store.suite.ts, in-process (two store instances) and across
 * processes (test/helpers/store-race-worker.ts). Every participant runs the same attempts at
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
import type { ReplayStore, ReserveItem, ReservePlan, ReserveView } from '../../src/store/replay.js';

export const RACE_NOW = new Date(Date.UTC(2030, 0, 1));
export const RACE = { client: 'race-client', key: 'race-key', velocityKey: 'race-velocity-key', chainId: 1n, velocityLimit: 30 } as const;

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
    else result.wins.push({ requestId: item.requestId, ...(item.nonce ? { nonce: item.nonce.nonce.toString() } : {}), payloadHash: Buffer.from(item.payloadHash).toString('hex') });
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
          nonce: { chainId: RACE.chainId, nonce, intentHash: hash(`intent ${j} ${tag}`), maxFeePerGas: 10n, maxPriorityFeePerGas: 1n },
        },
        false,
      ),
    );
    jobs.push(attempt({ ...base, requestId: `r${j % 50}`, payloadHash: hash(`request ${j} ${tag}`) }, false));
    if (j < 50) {
      jobs.push(attempt({ ...base, keyId: RACE.velocityKey, requestId: `v${j}-${tag}`, payloadHash: hash(`velocity ${j} ${tag}`) }, true));
    }
  }
  await Promise.all(jobs);
  return result;
}
