import type { Approval } from '../../core/admin/approvals.js';
import type { ProposalKind } from '../../core/admin/proposal.js';
import type { AuditDraft } from '../../core/audit/draft.js';
import type { Algorithm } from '../config/schema.js';

export type KeyState = 'active' | 'verify-only' | 'disabled' | 'destroyed';

/** One version of a key: where it lives in the token and what it verifies with. */
export interface KeyRecord {
  keyId: string;
  version: number;
  algorithm: Algorithm;
  /** CKA_ID of the token objects. */
  ckaId: Uint8Array;
  publicKey: Uint8Array;
  state: KeyState;
  createdAt: Date;
  /** When the state last changed (creation, rotation, disable, destroy). */
  stateChangedAt: Date;
  /** For a verify-only version: when it is due to be disabled (end of the rotation overlap). */
  retireAt: Date | null;
  /** Threshold keys only: where the shares are and how to check them. */
  threshold?: ThresholdInfo | null;
}

/**
 * A threshold key version: the cosigners holding its shares, the signers needed, and the public
 * package (group key, commitments, verifying shares) the coordinator checks shares against.
 * `ckaId` of such a version is a random group id, bound into every cosigner's sealed share.
 */
export interface ThresholdInfo {
  minSigners: number;
  cosigners: number[];
  /** Incremented by every share refresh. */
  epoch: number;
  /** When the current shares were made (DKG or the last refresh), ISO 8601. */
  sharesSince: string;
  /** FrostPublic as JSON (src/core/frost/participant.ts encodePublic). */
  publicPackage: string;
}

/**
 * A threshold ceremony (DKG or share refresh) in progress, stored before any cosigner changes
 * state and removed in the transaction that activates its outcome or records its rollback.
 * At most one per key version.
 */
export interface CeremonyRecord {
  sessionId: string;
  keyId: string;
  version: number;
  kind: 'dkg' | 'refresh';
  participants: number[];
  /** started: rounds running, nothing agreed. prepared: every cosigner holds the pending share of `plan`'s package. */
  step: 'started' | 'prepared';
  /** JSON: what the key becomes once every cosigner committed (src/signer/threshold/plan.ts). */
  plan: string;
  startedAt: Date;
}

/** One version of a named policy; every version is kept, so changes are on record. */
export interface PolicyRecord {
  name: string;
  version: number;
  /** The policy as JSON, exactly as it was set. */
  document: string;
  updatedAt: Date;
  /** Client CN of the admin who set it, or "config". */
  updatedBy: string;
}

export type ProposalState = 'open' | 'cancelled' | 'activated' | 'failed';

/**
 * A change only the admin quorum makes (src/signer/policy/proposals.ts). Whether it is approved
 * is never stored: it is recomputed from the approvals' signatures over what is stored here.
 */
export interface ProposalRecord {
  id: string;
  kind: ProposalKind;
  target: string;
  baseVersion: number;
  document: string;
  proposedBy: string;
  proposedAt: Date;
  state: ProposalState;
  closedAt: Date | null;
  closedBy: string | null;
  /** Why it was cancelled or failed, or what its activation did. */
  note: string | null;
  approvals: Approval[];
}

/** An emergency stop by one admin: signing with the key, or under the policy, is refused until a quorum unfreezes it. */
export interface FreezeRecord {
  kind: 'key' | 'policy';
  target: string;
  frozenAt: Date;
  frozenBy: string;
}

/**
 * One version of the access document (clients, roles, pins, request keys, key access; see
 * core/admin/access.ts), kept like policy versions: trusted only as the config's seed text or a
 * quorum-approved proposal's document (signer/policy/access-registry.ts), never for being here.
 */
export interface AccessRecord {
  version: number;
  document: string;
  updatedAt: Date;
  /** "config" (the seed) or "quorum:<proposal id>". */
  updatedBy: string;
}

/** What closing a proposal does in the same transaction. */
export interface ProposalEffects {
  /** Appends this document as the policy's next version (its activation). */
  policy?: { name: string; document: string; updatedBy: string };
  /** Appends this document as the access document's next version (its activation). */
  access?: { document: string; updatedBy: string };
  /** Lifts a freeze. */
  unfreeze?: { kind: FreezeRecord['kind']; target: string };
}

/**
 * Durable state shared by all replicas. Implementations enforce uniqueness in the database
 * (constraints, transactions), never with in-process locks.
 *
 * Every change of state takes the audit drafts that describe it and commits them in the same
 * transaction (appended to the chain like AuditStore.appendAudit): the change and its entries
 * are durable together or not at all. A change that does not apply writes no entry.
 */
export interface Store {
  /**
   * Inserts a key version; fails with `KeyExistsError` if (keyId, version) or its CKA_ID exists.
   * `ceremony`: the session whose outcome this is, removed in the same transaction (which fails
   * when that ceremony is no longer stored: another replica finished or rolled it back).
   */
  insertKey(k: KeyRecord, audit: AuditDraft[], ceremony?: string): Promise<void>;
  /** Every version of every key, by key id then version. */
  listKeys(): Promise<KeyRecord[]>;
  /**
   * Makes `next` the active version and the current active one verify-only until `retireAt`, in
   * one transaction. Fails with KeyExistsError when another replica rotated first (the
   * version exists or `previousVersion` is no longer active).
   */
  rotateKey(
    next: KeyRecord,
    previousVersion: number,
    retireAt: Date,
    audit: AuditDraft[],
    ceremony?: string,
  ): Promise<void>;
  /** Records a threshold version's refreshed shares (new epoch, public package); throws if the version is gone. */
  updateThreshold(
    keyId: string,
    version: number,
    info: ThresholdInfo,
    audit: AuditDraft[],
    ceremony?: string,
  ): Promise<void>;
  /**
   * Stores a ceremony or moves it to its next step (same session id); a second ceremony of the
   * same key version is refused with `KeyExistsError`.
   */
  putCeremony(c: CeremonyRecord, audit: AuditDraft[]): Promise<void>;
  /** Every stored ceremony, oldest first. */
  listCeremonies(): Promise<CeremonyRecord[]>;
  /** Removes a rolled-back ceremony with its entries; false (and no entry) when it was not stored. */
  dropCeremony(sessionId: string, audit: AuditDraft[]): Promise<boolean>;
  /** Moves a version to `to` if its state is one of `from`; false (and no entry) when it was not. */
  setKeyState(
    keyId: string,
    version: number,
    from: KeyState[],
    to: KeyState,
    at: Date,
    audit: AuditDraft[],
  ): Promise<boolean>;
  /**
   * Appends the next version of a policy (version = latest + 1, decided in the database), with
   * the entries `audit` makes for that version.
   */
  putPolicy(
    name: string,
    document: string,
    updatedBy: string,
    at: Date,
    audit: (version: number) => AuditDraft[],
  ): Promise<PolicyRecord>;
  /** The latest version of every policy. */
  listPolicies(): Promise<PolicyRecord[]>;
  /** Every version of one policy, oldest first. */
  policyHistory(name: string): Promise<PolicyRecord[]>;
  insertProposal(
    p: Omit<ProposalRecord, 'approvals' | 'state' | 'closedAt' | 'closedBy' | 'note'>,
    audit: AuditDraft[],
  ): Promise<void>;
  /**
   * Records an approval of an open proposal; false (no entry) when it is no longer open. Throws
   * ApprovalExistsError when this admin already approved it.
   */
  addApproval(proposalId: string, approval: Approval, audit: AuditDraft[]): Promise<boolean>;
  /**
   * Closes an open proposal (cancelled, activated or failed) with its effects, in one
   * transaction; `audit` gets the policy (or access) version the effects appended (or null).
   * Null, and nothing written, when the proposal was no longer open (another replica closed it).
   */
  closeProposal(
    id: string,
    close: { state: Exclude<ProposalState, 'open'>; at: Date; by: string; note: string },
    effects: ProposalEffects,
    audit: (policyVersion: number | null) => AuditDraft[],
  ): Promise<{ policy: PolicyRecord | null } | null>;
  /** Appends the next access version (latest + 1, decided in the database) with its entries. */
  putAccess(
    document: string,
    updatedBy: string,
    at: Date,
    audit: (version: number) => AuditDraft[],
  ): Promise<AccessRecord>;
  /** Every access version, oldest first. */
  accessHistory(): Promise<AccessRecord[]>;
  /** Every proposal with its approvals, oldest first. */
  listProposals(): Promise<ProposalRecord[]>;
  /** Records a freeze; false (and no entry) when that key or policy is frozen already. */
  freeze(f: FreezeRecord, audit: AuditDraft[]): Promise<boolean>;
  listFreezes(): Promise<FreezeRecord[]>;
  /**
   * Runs `fn` only if no other replica is running the job `name` right now; undefined (and `fn`
   * not run) when another holds it. Not a queue: a caller that loses simply skips this turn.
   */
  withJobLock<T>(name: string, fn: () => Promise<T>): Promise<T | undefined>;
  close(): Promise<void>;
}

export class KeyExistsError extends Error {
  override name = 'KeyExistsError';
}

export class ApprovalExistsError extends Error {
  override name = 'ApprovalExistsError';
}
