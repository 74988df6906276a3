import { decodePublic } from '../../core/frost/participant.js';
import { SUITES, type ThresholdAlgorithm } from '../../core/frost/suites.js';
import type { CeremonyRecord, KeyRecord, ThresholdInfo } from '../../infra/store/store.js';

/** Who asked for a ceremony, for the audit entries of its outcome (the registry's Actor). */
export interface PlanActor {
  client: string | null;
  context?: Record<string, string>;
}

/**
 * What a ceremony is for, stored with it (CeremonyRecord.plan) before any cosigner changes
 * state: enough for a restarted signer to finish it (activate its outcome) or undo it.
 */
export interface CeremonyPlan {
  op: 'create' | 'rotate' | 'refresh';
  algorithm: ThresholdAlgorithm;
  /** The key's group id (its CKA_ID), hex. */
  groupId: string;
  minSigners: number;
  /** Refresh: the epoch being refreshed; 0 for a DKG. */
  fromEpoch: number;
  /** Rotate: the active version this one replaces, and how long that stays verify-only. */
  previousVersion?: number;
  overlapMs?: number;
  by: PlanActor;
  /** Once prepared: the public package every cosigner returned, and the epoch of its shares. */
  publicPackage?: string;
  epoch?: number;
}

/** The key change that makes a prepared ceremony's outcome the one that signs. */
export type KeyChange =
  | { op: 'create'; record: KeyRecord }
  | { op: 'rotate'; record: KeyRecord; previousVersion: number; retireAt: Date }
  | { op: 'refresh'; keyId: string; version: number; info: ThresholdInfo };

/** A stored ceremony's plan. */
export const planOf = (c: CeremonyRecord): CeremonyPlan => JSON.parse(c.plan) as CeremonyPlan;

/** The key change of a prepared ceremony (its plan has the agreed public package). */
export function keyChangeOf(c: CeremonyRecord, plan: CeremonyPlan, now: Date): KeyChange {
  if (plan.publicPackage === undefined || plan.epoch === undefined) {
    throw new Error(`ceremony ${c.sessionId} has no agreed public package`);
  }
  const info: ThresholdInfo = {
    minSigners: plan.minSigners,
    cosigners: c.participants,
    epoch: plan.epoch,
    publicPackage: plan.publicPackage,
    sharesSince: now.toISOString(),
  };
  if (plan.op === 'refresh') return { op: 'refresh', keyId: c.keyId, version: c.version, info };
  const suite = SUITES[plan.algorithm];
  const record: KeyRecord = {
    keyId: c.keyId,
    version: c.version,
    algorithm: plan.algorithm,
    ckaId: Buffer.from(plan.groupId, 'hex'),
    publicKey: suite.chainPublicKey(decodePublic(suite, JSON.parse(plan.publicPackage))),
    state: 'active',
    createdAt: now,
    stateChangedAt: now,
    retireAt: null,
    threshold: info,
  };
  if (plan.op === 'create') return { op: 'create', record };
  const retireAt = new Date(now.getTime() + (plan.overlapMs ?? 0));
  return { op: 'rotate', record, previousVersion: plan.previousVersion!, retireAt };
}
