import { SignerError } from '../../core/errors.js';
import type { GuardOutcome } from '../../core/replay/guard.js';
import type { ReservePlan, ReserveView } from '../../core/replay/records.js';

/**
 * What a reservation re-reads in its own transaction, because the registries in memory may be
 * `refreshMs` old: the key version's state (DisableKeyVersion on any replica stops signing at
 * once on all of them) and the policies' epoch (a policy set on another replica, a new one
 * included, is applied before signing, never after).
 */
export interface Expected {
  keyId: string;
  version: number;
  /** The state the key registry had when the request was prepared. */
  keyState: string;
  policy: string;
  /** The policy registry's epoch (src/signer/policy/registry.ts) the request was checked under. */
  policyEpoch: number;
}

/** The policy changed since this signer compiled it: refresh and decide again. */
export const STALE = Symbol('policy changed');
export type Stale = typeof STALE;

export const expectedCheck = (e: Expected) => ({ keyId: e.keyId, version: e.version, policies: true });

/**
 * A refusal plan when the key version no longer signs, STALE when the policy moved on (or the
 * refusal POLICY_UNAVAILABLE when it did so again right after a refresh), else undefined: the
 * guard decides.
 */
export function checkInTransaction(
  view: ReserveView,
  e: Expected,
  refreshed: boolean,
): ReservePlan<GuardOutcome> | Stale | undefined {
  if (view.keyState !== e.keyState) {
    const now = view.keyState ?? 'gone';
    const error = new SignerError(
      'KEY_VERSION_RETIRED',
      `key "${e.keyId}" version ${e.version} is ${now} (changed on another replica); sign with the active version`,
      { keyId: e.keyId, version: String(e.version), state: now },
    );
    return { outcome: { ok: false, error }, writes: [] };
  }
  if (view.policyEpoch !== e.policyEpoch) {
    if (!refreshed) return STALE;
    const error = new SignerError(
      'POLICY_UNAVAILABLE',
      `the policies are changing (${view.policyEpoch} versions stored, ${e.policyEpoch} loaded); retry shortly`,
      { policy: e.policy },
      250,
    );
    return { outcome: { ok: false, error }, writes: [] };
  }
  return undefined;
}
