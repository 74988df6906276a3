import type { AuditDraft } from '../audit/draft.js';
import type { TokenMove, TokenUsage } from '../policy/token-limits.js';

/**
 * The replay guard's view of the store: what a reservation reads and writes. The decision
 * itself (src/core/replay/guard.ts) is a pure function of this view; the store only makes the read,
 * the decision and the writes one atomic, durable transaction.
 */

/** A claim on an account nonce: what makes two EVM payloads "the same transfer". */
export interface NonceClaim {
  /**
   * The account whose nonce this is: the key version that signs (each version is its own
   * address), written "<key id>@v<version>". Claims, next nonces and locks are per account.
   */
  account: string;
  chainId: bigint;
  nonce: bigint;
  /** Hash of (to, value, data): a fee bump must keep it. */
  intentHash: Uint8Array;
  maxFeePerGas: bigint;
  maxPriorityFeePerGas: bigint;
}

export interface ReserveItem {
  client: string;
  requestId: string;
  keyId: string;
  /** Hash of key id, payload kind and payload bytes: "the same request". */
  payloadHash: Uint8Array;
  nonce?: NonceClaim;
  /** Native value moved, counted by velocity limits. */
  value: bigint;
  /** The ERC-20 amount moved (transfer, transferFrom, approve), counted by per-token velocity. */
  token?: TokenMove;
}

export type RecordState = 'pending' | 'done';

export interface RequestRecord {
  payloadHash: Uint8Array;
  state: RecordState;
  /** The stored response, once done. */
  result?: Uint8Array;
  /** A pending record whose signer died or failed: a retry of the same payload may take over. */
  leaseExpired: boolean;
}

export interface NonceRecord {
  payloadHash: Uint8Array;
  intentHash: Uint8Array;
  maxFeePerGas: bigint;
  maxPriorityFeePerGas: bigint;
  state: RecordState;
  result?: Uint8Array;
  client: string;
  requestId: string;
  leaseExpired: boolean;
}

export interface VelocityQuery {
  scope: 'key' | 'client';
  subject: string;
  windowSeconds: number;
  /** Token contracts (lowercase) whose usage in the window is read too. */
  tokens?: readonly string[];
}

export interface VelocityUsage {
  count: number;
  value: bigint;
  /** Per token contract asked for (lowercase): ERC-20 count and amount in the window. */
  tokens?: ReadonlyMap<string, TokenUsage>;
}

export interface ItemView {
  /** The record of the same client and request id, if any. */
  request?: RequestRecord;
  /** The current holder of the item's (key, chain, nonce), if any. */
  nonce?: NonceRecord;
  /** Highest reserved nonce + 1 for the item's (key, chain); undefined when none. */
  nextNonce?: bigint;
}

export interface BatchRecord {
  itemsHash: Uint8Array;
}

export interface ReserveView {
  items: ItemView[];
  /** One per query, in query order, read under the reservation's locks. */
  velocity: VelocityUsage[];
  batch?: BatchRecord;
  /** The state of the key version in `check`, read in the transaction; null when it is gone. */
  keyState?: string | null;
  /**
   * With `check.policies`: how many policy versions are stored, all names together. Versions are
   * only ever appended, so any policy change on any replica (a new policy included) changes it.
   */
  policyEpoch?: number;
}

/**
 * What the decision asks the store to write. `insert` items get a pending request, their nonce
 * claim and a velocity event; `replaceNonce` items take over the nonce from its current holder
 * (a fee bump); `resume` items renew the lease of their own pending record.
 */
export interface ReservePlan<T> {
  outcome: T;
  /** Audit entries appended in the same transaction (refusals and replays decided here). */
  audit?: AuditDraft[];
  writes: Array<{ index: number; action: 'insert' | 'replaceNonce' | 'resume' }>;
  /** Records the request's batch (client, batch id) with this items hash, with the writes. */
  batch?: { itemsHash: Uint8Array };
}

export interface ReserveRequest {
  items: ReserveItem[];
  velocity: VelocityQuery[];
  batch?: { client: string; batchId: string };
  /** Pending records stay owned by their signer this long (ms); afterwards a retry takes over. */
  leaseMs: number;
  now: Date;
  /**
   * This reservation's attempt id: written on the records it inserts or takes over (resume), so
   * that only this attempt's completion can finish them (a late completion of an attempt whose
   * lease was taken over is dropped).
   */
  attempt?: string;
  /**
   * Read inside the transaction, for the decision: the key version's current state and the
   * policies' epoch. What the registries hold in memory may be refreshMs old; these are what
   * every replica committed.
   */
  check?: { keyId: string; version: number; policies?: boolean };
}

export interface Completion {
  client: string;
  requestId: string;
  result: Uint8Array;
  /** The attempt that reserved it; absent: any attempt (the record must still be pending). */
  attempt?: string;
}

/** The completions that did not apply: their record was done already or owned by another attempt. */
export interface CompleteResult {
  dropped: Array<{ client: string; requestId: string }>;
}

/** Durable replay records; every method commits before it resolves. */
export interface ReplayStore {
  /**
   * Reads the view, calls `decide` (pure, synchronous) and applies its writes in one
   * transaction. `decide` may run more than once when a concurrent writer forces a retry.
   */
  reserve<T>(req: ReserveRequest, decide: (view: ReserveView) => ReservePlan<T>): Promise<T>;
  /**
   * Stores the results of signed items, marks their requests and nonce claims done, and appends
   * their audit entries, in one transaction. A completion applies only to a record that is still
   * pending and owned by its attempt; the others are dropped (and returned), never overwrite.
   */
  complete(done: Completion[], audit: AuditDraft[]): Promise<CompleteResult>;
  /**
   * Ends the lease of pending items whose signing failed, so a retry can take over at once, and
   * appends the entries of those failures, in one transaction.
   */
  abandon(items: Array<{ client: string; requestId: string; attempt?: string }>, audit: AuditDraft[]): Promise<void>;
  /**
   * Deletes idempotency records and batches created before `requests`, and velocity usage older
   * than `velocity` (which MUST be older than the longest velocity window). Nonce claims are
   * kept forever.
   */
  prune(before: { requests: Date; velocity: Date }): Promise<number>;
}
