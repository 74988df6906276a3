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

/** The key or the policies changed since this signer loaded them: reload and check again. */
export const STALE = Symbol('registries stale');
export type Stale = typeof STALE;

export const expectedCheck = (e: Expected) => ({ keyId: e.keyId, version: e.version, policies: true });

/**
 * STALE when the key version's state or the policies moved on since they were loaded; right
 * after a reload, a refusal instead (KEY_VERSION_RETIRED, or POLICY_UNAVAILABLE with a retry:
 * they changed again meanwhile). Undefined: the guard decides.
 */
export function checkInTransaction(
  view: ReserveView,
  e: Expected,
  refreshed: boolean,
): ReservePlan<GuardOutcome> | Stale | undefined {
  if (view.keyState !== e.keyState) {
    if (!refreshed) return STALE;
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
