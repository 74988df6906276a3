/**
 * Builds `hsm-signer-audit/1` exports the way the server does (chain.ts), with a real Ed25519
 * audit key from @noble/curves standing in for the HSM-held one.
 */
import { ed25519 } from '@noble/curves/ed25519.js';
import { bytesToHex } from '@noble/hashes/utils.js';
import {
  type AuditCheckpoint,
  type AuditEntry,
  checkpointMessage,
  entryHash,
  GENESIS,
} from '../src/core/audit/chain.js';
import { CSV_HEADER, toCsvRow } from '../src/core/audit/csv.js';
import {
  type CheckpointRecord,
  type EntryRecord,
  EXPORT_FORMAT,
  type ExportHeader,
  type ExportRecord,
  toJsonLine,
} from '../src/core/audit/format.js';

export interface TestAuditKey {
  keyId: string;
  version: number;
  secretKey: Uint8Array;
  publicKey: string;
}

export function auditKey(keyId = '_audit', version = 1): TestAuditKey {
  const secretKey = ed25519.utils.randomSecretKey();
  return { keyId, version, secretKey, publicKey: bytesToHex(ed25519.getPublicKey(secretKey)) };
}

export function header(keys: TestAuditKey[]): ExportHeader {
  return {
    type: 'header',
    format: EXPORT_FORMAT,
    exportedAt: '2026-02-01T00:00:00.000Z',
    from: '2026-01-01T00:00:00.000Z',
    to: '2026-02-01T00:00:00.000Z',
    auditKeys: keys.map((k) => ({ keyId: k.keyId, version: k.version, algorithm: 'ed25519', publicKey: k.publicKey })),
  };
}

/** Entry `seq` chained after `prevHash`, a mix of signs, refusals and key events; `edit` changes fields before hashing. */
export function entry(seq: number, prevHash: string, edit: Partial<AuditEntry> = {}): EntryRecord {
  const at = new Date(Date.UTC(2026, 0, 1) + seq * 1000).toISOString();
  const base: Omit<AuditEntry, 'hash'> =
    seq % 7 === 0
      ? {
          seq,
          at,
          kind: 'key.rotate',
          client: 'security-admin',
          keyId: 'hot-a',
          keyVersion: 2,
          requestId: null,
          payloadHash: null,
          intent: null,
          decision: 'done',
          reason: null,
          signatureHash: null,
          prevHash,
        }
      : seq % 4 === 0
        ? {
            seq,
            at,
            kind: 'sign',
            client: 'payment-engine',
            keyId: 'hot-a',
            keyVersion: 1,
            requestId: `r-${seq}`,
            payloadHash: hex32(seq, 1),
            intent: {
              kind: 'evm',
              chainId: '1',
              nonce: String(seq),
              to: '0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed',
              value: '1',
            },
            decision: 'refused',
            reason: 'NONCE_ALREADY_SIGNED',
            signatureHash: null,
            prevHash,
          }
        : {
            seq,
            at,
            kind: 'sign',
            client: 'payment-engine',
            keyId: 'hot-a',
            keyVersion: 1,
            requestId: `r-${seq},"q"`,
            payloadHash: hex32(seq, 1),
            intent: {
              kind: 'evm',
              chainId: '1',
              nonce: String(seq),
              to: '0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed',
              value: String(seq * 1000),
            },
            decision: 'allowed',
            reason: null,
            signatureHash: hex32(seq, 2),
            prevHash,
          };
  const e = { ...base, ...edit };
  return { type: 'entry', ...e, hash: edit.hash ?? entryHash(e) };
}

export function checkpoint(seq: number, headHash: string, key: TestAuditKey): CheckpointRecord {
  const cp: AuditCheckpoint = {
    seq,
    headHash,
    at: new Date(Date.UTC(2026, 0, 1) + seq * 1000 + 500).toISOString(),
    auditKey: { keyId: key.keyId, version: key.version },
    signature: bytesToHex(ed25519.sign(checkpointMessage(seq, headHash), key.secretKey)),
  };
  return { type: 'checkpoint', ...cp };
}

/**
 * The records of an export: header, entries first..first+count-1, a checkpoint after every
 * `every`-th entry and after the last; `keyFor(seq)` picks the signing key (audit key rotation).
 */
export function* exportRecords(opts: {
  first?: number;
  count: number;
  every: number;
  keys: TestAuditKey[];
  keyFor?: (seq: number) => TestAuditKey;
}): Generator<ExportRecord> {
  const first = opts.first ?? 1;
  const keyFor = opts.keyFor ?? (() => opts.keys[0]!);
  yield header(opts.keys);
  // A period export starting mid-chain links to an entry the auditor does not see.
  let prev = first === 1 ? GENESIS : hex32(first - 1, 3);
  for (let seq = first; seq < first + opts.count; seq++) {
    const e = entry(seq, prev);
    yield e;
    prev = e.hash;
    if (seq % opts.every === 0 || seq === first + opts.count - 1) yield checkpoint(seq, e.hash, keyFor(seq));
  }
}

/** A record, or a raw line written as is. */
export type Line = ExportRecord | string;

export function toLines(items: Line[], format: 'jsonl' | 'csv'): string[] {
  const out = items.map((r) => (typeof r === 'string' ? r : format === 'csv' ? toCsvRow(r) : toJsonLine(r)));
  return format === 'csv' ? [CSV_HEADER, ...out.flatMap((l) => l.split('\r\n'))] : out;
}

export async function* iterate(lines: Iterable<string>): AsyncGenerator<string> {
  yield* lines;
}

/** A deterministic 32-byte hex value, distinct per (n, salt). */
export function hex32(n: number, salt: number): string {
  return (salt.toString(16).padStart(8, '0') + n.toString(16).padStart(56, '0')).slice(0, 64);
}
