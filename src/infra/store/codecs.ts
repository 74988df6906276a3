/**
 * Row <-> record mapping shared by both dialects. Column names and meanings are the same in
 * SQLite and PostgreSQL; only integer transport differs (SQLite returns numbers, or bigints from
 * safeIntegers statements; node-pg returns BIGINT as decimal strings), hence `Int`.
 */
import type { AuditEntry, AuditRequest } from '../../core/audit/chain.js';
import type { NonceRecord, RecordState, RequestRecord } from '../../core/replay/records.js';
import type { Algorithm } from '../config/schema.js';
import type { StoredCheckpoint } from './audit.js';
import type { CeremonyRecord, KeyRecord, KeyState, PolicyRecord, ThresholdInfo } from './store.js';

type Int = number | string | bigint;
const int = (v: Int) => Number(v);

/** The keys table's columns, in the order of keyValues. */
export const KEY_COLUMNS = [
  'key_id',
  'version',
  'algorithm',
  'cka_id',
  'public_key',
  'state',
  'created_at',
  'state_changed_at',
  'retire_at',
  'threshold',
] as const;

export interface KeyRow {
  key_id: string;
  version: number;
  algorithm: string;
  cka_id: Buffer;
  public_key: Buffer;
  state: string;
  created_at: Int;
  /** NULL in rows written before the column existed: the creation time then. */
  state_changed_at: Int | null;
  retire_at: Int | null;
  threshold: string | null;
}

export function keyValues(k: KeyRecord): unknown[] {
  return [
    k.keyId,
    k.version,
    k.algorithm,
    Buffer.from(k.ckaId),
    Buffer.from(k.publicKey),
    k.state,
    k.createdAt.getTime(),
    k.stateChangedAt.getTime(),
    k.retireAt?.getTime() ?? null,
    k.threshold ? JSON.stringify(k.threshold) : null,
  ];
}

export function keyRecord(r: KeyRow): KeyRecord {
  return {
    keyId: r.key_id,
    version: r.version,
    algorithm: r.algorithm as Algorithm,
    ckaId: r.cka_id,
    publicKey: r.public_key,
    state: r.state as KeyState,
    createdAt: new Date(int(r.created_at)),
    stateChangedAt: new Date(int(r.state_changed_at ?? r.created_at)),
    retireAt: r.retire_at === null ? null : new Date(int(r.retire_at)),
    threshold: r.threshold === null ? null : (JSON.parse(r.threshold) as ThresholdInfo),
  };
}

export interface PolicyRow {
  name: string;
  version: number;
  document: string;
  updated_at: Int;
  updated_by: string;
}

export function policyRecord(r: PolicyRow): PolicyRecord {
  return {
    name: r.name,
    version: r.version,
    document: r.document,
    updatedAt: new Date(int(r.updated_at)),
    updatedBy: r.updated_by,
  };
}

export interface RequestRow {
  payload_hash: Buffer;
  state: RecordState;
  result: Buffer | null;
  lease_until: Int;
}

/** A request record as the replay guard sees it at `now` (ms): a lapsed lease is up for takeover. */
export function requestRecord(r: RequestRow, now: number): RequestRecord {
  return {
    payloadHash: r.payload_hash,
    state: r.state,
    ...(r.result ? { result: r.result } : {}),
    leaseExpired: r.state === 'pending' && int(r.lease_until) <= now,
  };
}

export interface NonceRow {
  payload_hash: Buffer;
  intent_hash: Buffer;
  /** Decimal text in both dialects (SQLite TEXT, PostgreSQL NUMERIC read as ::text). */
  max_fee: string;
  max_priority_fee: string;
  state: RecordState;
  result: Buffer | null;
  client: string;
  request_id: string;
  lease_until: Int;
}

export function nonceRecord(n: NonceRow, now: number): NonceRecord {
  return {
    payloadHash: n.payload_hash,
    intentHash: n.intent_hash,
    maxFeePerGas: BigInt(n.max_fee),
    maxPriorityFeePerGas: BigInt(n.max_priority_fee),
    state: n.state,
    ...(n.result ? { result: n.result } : {}),
    client: n.client,
    requestId: n.request_id,
    leaseExpired: n.state === 'pending' && int(n.lease_until) <= now,
  };
}

/** The columns readAudit selects (at_ms is for time ranges only). */
export interface AuditRow {
  seq: Int;
  at: string;
  kind: string;
  client: string | null;
  key_id: string | null;
  key_version: number | null;
  request_id: string | null;
  payload_hash: string | null;
  /** The intent as JSON text. */
  intent: string | null;
  decision: AuditEntry['decision'];
  reason: string | null;
  signature_hash: string | null;
  prev_hash: string;
  hash: string;
  /** The signed request as JSON; NULL (or no column, before its migration) when none. */
  request?: string | null;
}

export function auditEntry(r: AuditRow): AuditEntry {
  return {
    seq: int(r.seq),
    at: r.at,
    kind: r.kind,
    client: r.client,
    keyId: r.key_id,
    keyVersion: r.key_version,
    requestId: r.request_id,
    payloadHash: r.payload_hash,
    intent: r.intent === null ? null : (JSON.parse(r.intent) as Record<string, string>),
    decision: r.decision,
    reason: r.reason,
    signatureHash: r.signature_hash,
    ...(r.request ? { request: JSON.parse(r.request) as AuditRequest } : {}),
    prevHash: r.prev_hash,
    hash: r.hash,
  };
}

export interface CheckpointRow {
  seq: Int;
  head_hash: string;
  at: string;
  key_id: string;
  key_version: number;
  signature: string;
}

/** A checkpoint's values in column order: seq, head_hash, at, key_id, key_version, signature. */
export function checkpointValues(c: StoredCheckpoint): unknown[] {
  return [c.seq, c.headHash, c.at, c.auditKey.keyId, c.auditKey.version, c.signature];
}

export function checkpointRecord(r: CheckpointRow): StoredCheckpoint {
  return {
    seq: int(r.seq),
    headHash: r.head_hash,
    at: r.at,
    auditKey: { keyId: r.key_id, version: r.key_version },
    signature: r.signature,
  };
}

export interface CeremonyRow {
  session_id: string;
  key_id: string;
  version: number;
  kind: string;
  participants: string;
  step: string;
  plan: string;
  started_at: Int;
}

export const ceremonyRecord = (r: CeremonyRow): CeremonyRecord => ({
  sessionId: r.session_id,
  keyId: r.key_id,
  version: int(r.version),
  kind: r.kind as CeremonyRecord['kind'],
  participants: JSON.parse(r.participants) as number[],
  step: r.step as CeremonyRecord['step'],
  plan: r.plan,
  startedAt: new Date(int(r.started_at)),
});

/** (session_id, key_id, version, kind, participants, step, plan, started_at) */
export const ceremonyValues = (c: CeremonyRecord) =>
  [
    c.sessionId,
    c.keyId,
    c.version,
    c.kind,
    JSON.stringify(c.participants),
    c.step,
    c.plan,
    c.startedAt.getTime(),
  ] as const;
