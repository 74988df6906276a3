/**
 * Offline verification of an `hsm-signer-audit/1` export (JSONL or CSV, told apart by the first
 * line): no HSM, no database, no network; only the export and the audit public keys in its
 * header, which the auditor MUST compare with the ones they were given out of band.
 *
 * What a passing export proves: its entries are a gapless, unaltered run of the service's chain
 * from `firstSeq` to `lastSeq`, ending at a checkpoint signed by an audit key. The first entry's
 * prevHash is taken as given (a period export starts mid-chain), so the verifier cannot see
 * entries cut from the START of the export: compare the reported range with the period asked
 * for, and `firstSeq`'s prevHash with the last hash of the previous export.
 *
 * Streaming, constant memory: only the previous entry's seq and hashes are kept, plus one record
 * of look-ahead after the first anomaly, to tell which way it goes. Rules, for the FIRST problem
 * (a checkpoint's signature is checked before its head hash, so an edited checkpoint is
 * `bad-checkpoint` and an entry rewritten under a genuine checkpoint is `changed`):
 *
 *   changed         - entry N does not hash to its own `hash` (a field, its prevHash or its hash
 *                     was edited);
 *                   - N hashes right but the valid checkpoint over N signs another hash (N was
 *                     rewritten and its hash recomputed);
 *                   - N+1 does not link to N: N is blamed if the next record vouches for N+1
 *                     (entry N+2 links to it, or a valid checkpoint over N+1 signs its hash), as
 *                     N+1 is then genuine and N's hash is the one that moved; otherwise N+1 is;
 *                   - seq 1 does not link to GENESIS, or another seq does.
 *   inserted        - a seq already present: adjacent twins (identical: the second; different:
 *                     the one the next record does not vouch for), or an earlier seq repeated;
 *                   - N+1 that does not link, followed by another N+1 that does (the first);
 *                   - a checkpoint over M after entry M+1 or later (reported at M+1: entries were
 *                     pushed in before it, or it was moved).
 *   missing         - N followed by N+k (k > 1) when the next entry is not a skipped seq
 *                     (reported at N+1);
 *                   - a checkpoint over a seq beyond the last entry, with more records after it.
 *   reordered       - N followed by N+k when the next entry is a skipped seq (a swap, reported at
 *                     that entry); an entry whose seq is below the export's first.
 *   truncated       - the export ends after an entry no checkpoint covers (reported at that
 *                     entry), or with a checkpoint over a seq beyond its last entry;
 *                   - it holds no entries at all: an empty export cannot be told apart from one
 *                     whose entries were all removed.
 *   bad-checkpoint  a checkpoint under an audit key the header does not list (keyId+version), or
 *                   whose Ed25519 signature (RFC 8032, strict) does not verify.
 *   malformed       an unparsable or invalid record, a missing or repeated header, an unknown
 *                   format, an audit public key that is not a curve point.
 */
import { ed25519 } from '@noble/curves/ed25519.js';
import { hexToBytes } from '@noble/hashes/utils.js';
import { checkpointMessage, entryHash, GENESIS } from './chain.js';
import { isCsvHeader, parseCsvLine } from './csv.js';
import {
  type CheckpointRecord,
  type EntryRecord,
  type ExportHeader,
  type ExportRecord,
  MalformedRecord,
  type NoteRecord,
  parseJsonLine,
} from './format.js';

export type ProblemKind =
  | 'changed'
  | 'missing'
  | 'inserted'
  | 'reordered'
  | 'truncated'
  | 'bad-checkpoint'
  | 'malformed';

export interface Problem {
  kind: ProblemKind;
  /** The entry the problem is about; null when no entry is (a malformed line, an empty export). */
  seq: number | null;
  /** 1-based line of the file where it shows. */
  line: number;
  message: string;
}

export type VerifyReport =
  | {
      ok: true;
      format: 'jsonl' | 'csv';
      entries: number;
      checkpoints: number;
      firstSeq: number;
      lastSeq: number;
      /** `at` of the first entry. */
      from: string;
      /** `at` of the last entry. */
      to: string;
      /** The tree checkpoint the export ends under, with its proofs (checked by tlog-verify.ts). */
      note?: NoteRecord;
    }
  | { ok: false; problem: Problem };

interface Item {
  line: number;
  record: ExportRecord;
}

/** What we keep of an entry once we move past it. */
interface Seen {
  seq: number;
  hash: string;
  line: number;
  at: string;
}

/** The record after an anomaly: undefined at the end of the export, record null if unreadable. */
type Next = { line: number; record: ExportRecord | null } | undefined;
/** An anomaly whose kind depends on the next record (the next entry, if `wantsEntry`). */
type Suspect = ((next: Next) => Problem) & { wantsEntry?: boolean };
type Finding = Problem | Suspect;

/** Verifies an export given as its lines (without line ends); see the module comment for the rules. */
export async function verifyExport(lines: AsyncIterable<string>): Promise<VerifyReport> {
  const source = new Source(lines);
  const v = new Verifier();
  try {
    for (let item = await source.next(); item; item = await source.next()) {
      const found = v.accept(item);
      if (typeof found === 'function') return { ok: false, problem: found(await lookahead(source, found.wantsEntry)) };
      if (found) return { ok: false, problem: found };
    }
    return v.end(source.format, source.lines);
  } catch (e) {
    if (e instanceof MalformedRecord)
      return { ok: false, problem: { kind: 'malformed', seq: null, line: e.line, message: e.message } };
    throw e;
  } finally {
    await source.close(); // stopping at the first problem: release the file behind the lines
  }
}

/** The next record (or next entry) after an anomaly. */
async function lookahead(source: Source, wantsEntry = false): Promise<Next> {
  try {
    for (;;) {
      const item = await source.next();
      if (!item || !wantsEntry || item.record.type === 'entry') return item;
    }
  } catch (e) {
    if (e instanceof MalformedRecord) return { line: e.line, record: null };
    throw e;
  }
}

/** Records from lines: detects the format, merges CSV header rows, requires the header first. */
class Source {
  format: 'jsonl' | 'csv' = 'jsonl';
  lines = 0;
  private readonly it: AsyncIterator<string>;
  private held: Item | undefined;

  constructor(lines: AsyncIterable<string>) {
    this.it = lines[Symbol.asyncIterator]();
  }

  async close(): Promise<void> {
    await this.it.return?.();
  }

  async next(): Promise<Item | undefined> {
    if (this.held) {
      const item = this.held;
      this.held = undefined;
      return item;
    }
    const item = await this.read();
    if (item?.record.type !== 'header' || this.format !== 'csv') return item;
    // A CSV header is one row per audit key: gather the consecutive ones.
    const header = item.record;
    for (let more = await this.read(); more; more = await this.read()) {
      const h = more.record;
      if (h.type !== 'header') {
        this.held = more;
        break;
      }
      if (
        h.exportedAt !== header.exportedAt ||
        h.from !== header.from ||
        h.to !== header.to ||
        !h.auditKeys.length ||
        !header.auditKeys.length
      ) {
        throw new MalformedRecord(
          more.line,
          'header rows disagree (exportedAt, from, to) or mix empty and listed audit keys',
        );
      }
      header.auditKeys.push(...h.auditKeys);
    }
    return item;
  }

  private async read(): Promise<Item | undefined> {
    const r = await this.it.next();
    if (r.done) {
      if (this.lines === 0 || (this.format === 'csv' && this.lines === 1))
        throw new MalformedRecord(this.lines + 1, 'missing header: the export is empty');
      return undefined;
    }
    const line = ++this.lines;
    let text = r.value.endsWith('\r') ? r.value.slice(0, -1) : r.value;
    if (line === 1) {
      if (text.startsWith('\ufeff')) text = text.slice(1); // a BOM from a spreadsheet's "save as CSV"
      if (isCsvHeader(text)) {
        this.format = 'csv';
        return this.read();
      }
    }
    const record = this.format === 'csv' ? parseCsvLine(text, line) : parseJsonLine(text, line);
    const first = line === 1 || (this.format === 'csv' && line === 2);
    if (first && record.type !== 'header')
      throw new MalformedRecord(line, 'missing header: the first record must be the export header');
    return { line, record };
  }
}

class Verifier {
  private header: ExportHeader | undefined;
  private readonly keys = new Map<string, Uint8Array>();
  private first: Seen | undefined;
  private prev: Seen | undefined;
  private entries = 0;
  private checkpoints = 0;
  private lastCheckpoint: number | undefined;
  private covered = false;
  private note: NoteRecord | undefined;

  accept({ line, record }: Item): Finding | undefined {
    // The note closes the export: anything after it was appended to a finished export.
    if (this.note) return fail('malformed', null, line, 'a record after the closing checkpoint note');
    if (record.type === 'note') return this.onNote(record, line);
    if (record.type === 'header') return this.onHeader(record, line);
    if (record.type === 'entry') return this.onEntry(record, line);
    return this.onCheckpoint(record, line);
  }

  end(format: 'jsonl' | 'csv', lines: number): VerifyReport {
    const { first, prev } = this;
    if (!first || !prev) {
      return {
        ok: false,
        problem: fail(
          'truncated',
          null,
          lines,
          'the export holds no entries: nothing is authenticated, and an empty export cannot be told apart from one whose entries were removed',
        ),
      };
    }
    if (!this.covered) {
      const last =
        this.lastCheckpoint === undefined
          ? 'no checkpoint at all'
          : `the last checkpoint covers seq ${this.lastCheckpoint}`;
      return {
        ok: false,
        problem: fail(
          'truncated',
          prev.seq,
          prev.line,
          `the export ends after entry ${prev.seq}, which no checkpoint covers (${last}): its end was cut or its final checkpoint removed`,
        ),
      };
    }
    return {
      ok: true,
      format,
      entries: this.entries,
      checkpoints: this.checkpoints,
      firstSeq: first.seq,
      lastSeq: prev.seq,
      from: first.at,
      to: prev.at,
      ...(this.note ? { note: this.note } : {}),
    };
  }

  private onNote(n: NoteRecord, line: number): Problem | undefined {
    const p = this.prev;
    if (!p || !this.covered)
      return fail('malformed', p?.seq ?? null, line, 'the checkpoint note comes before the final chain checkpoint');
    if (n.size < p.seq)
      return fail('truncated', p.seq, line, `the closing note covers ${n.size} entries, not the last entry ${p.seq}`);
    this.note = n;
    return undefined;
  }

  private onHeader(h: ExportHeader, line: number): Problem | undefined {
    if (this.header) return fail('malformed', null, line, 'a second header');
    for (const k of h.auditKeys) {
      const id = keyName(k.keyId, k.version);
      if (this.keys.has(id))
        return fail('malformed', null, line, `header lists audit key ${k.keyId} v${k.version} twice`);
      const publicKey = hexToBytes(k.publicKey);
      if (!ed25519.utils.isValidPublicKey(publicKey, false))
        return fail('malformed', null, line, `audit key ${k.keyId} v${k.version} is not an Ed25519 public key`);
      this.keys.set(id, publicKey);
    }
    this.header = h;
    return undefined;
  }

  private onEntry(e: EntryRecord, line: number): Finding | undefined {
    const { type: _type, hash, ...body } = e;
    const n = e.seq;
    if (entryHash(body) !== hash)
      return fail(
        'changed',
        n,
        line,
        `entry ${n} does not hash to its recorded hash: a field or the hash itself was edited`,
      );
    if ((n === 1) !== (e.prevHash === GENESIS))
      return fail('changed', n, line, `entry ${n}: seq 1, and only seq 1, links to GENESIS`);
    const p = this.prev;
    const seen: Seen = { seq: n, hash, line, at: e.at };
    if (!p || (n === p.seq + 1 && e.prevHash === p.hash)) {
      this.first ??= seen;
      this.prev = seen;
      this.entries++;
      this.covered = false;
      return undefined;
    }
    if (n === p.seq + 1) return this.brokenLink(p, seen);
    if (n > p.seq + 1) return this.gap(p, seen);
    if (n === p.seq) return this.twin(p, seen);
    if (n >= this.first!.seq)
      return fail(
        'inserted',
        n,
        line,
        `entry ${n} repeats a seq already present (the chain had reached ${p.seq} at line ${p.line})`,
      );
    return fail(
      'reordered',
      n,
      line,
      `entry ${n} comes after entry ${p.seq} (line ${p.line}), before the export's first entry ${this.first!.seq}`,
    );
  }

  /** N+1 does not link to N: blame the side the next record does not vouch for. */
  private brokenLink(p: Seen, e: Seen): Suspect {
    return (next) => {
      const r = next?.record;
      if (r?.type === 'entry' && r.seq === e.seq && r.prevHash === p.hash) {
        return fail(
          'inserted',
          e.seq,
          e.line,
          `entry ${e.seq} does not link to entry ${p.seq}, and another entry ${e.seq} that does follows it`,
        );
      }
      if (this.vouches(next, e)) {
        return fail(
          'changed',
          p.seq,
          p.line,
          `entry ${p.seq}'s hash is not the prevHash entry ${e.seq} records, and entry ${e.seq} is vouched for by the next record: entry ${p.seq} was rewritten with a recomputed hash`,
        );
      }
      return fail(
        'changed',
        e.seq,
        e.line,
        `entry ${e.seq} does not link to entry ${p.seq} (line ${p.line}): entry ${e.seq} was rewritten with a recomputed hash`,
      );
    };
  }

  /** N followed by N+k: a swap if a skipped seq comes next, otherwise entries are missing. */
  private gap(p: Seen, e: Seen): Suspect {
    const suspect: Suspect = (next) => {
      const r = next?.record;
      if (r?.type === 'entry' && r.seq > p.seq && r.seq < e.seq) {
        return fail('reordered', r.seq, next!.line, `entry ${r.seq} comes after entry ${e.seq} (line ${e.line})`);
      }
      const range = e.seq === p.seq + 2 ? `entry ${p.seq + 1} is` : `entries ${p.seq + 1}..${e.seq - 1} are`;
      return fail(
        'missing',
        p.seq + 1,
        e.line,
        `${range} missing: entry ${e.seq} follows entry ${p.seq} (line ${p.line})`,
      );
    };
    suspect.wantsEntry = true;
    return suspect;
  }

  /** Two adjacent entries with one seq: the one the next record does not vouch for is extra. */
  private twin(p: Seen, e: Seen): Finding {
    if (e.hash === p.hash)
      return fail('inserted', e.seq, e.line, `entry ${e.seq} appears twice (lines ${p.line} and ${e.line})`);
    return (next) => {
      const extra = this.vouches(next, e) ? p : e;
      return fail(
        'inserted',
        e.seq,
        extra.line,
        `two entries with seq ${e.seq} (lines ${p.line} and ${e.line}); the one at line ${extra.line} is not part of the chain`,
      );
    };
  }

  private onCheckpoint(c: CheckpointRecord, line: number): Finding | undefined {
    const key = `${c.auditKey.keyId} v${c.auditKey.version}`;
    if (!this.keys.has(keyName(c.auditKey.keyId, c.auditKey.version))) {
      return fail(
        'bad-checkpoint',
        c.seq,
        line,
        `checkpoint over seq ${c.seq} is signed by audit key ${key}, which the header does not list`,
      );
    }
    if (!this.signatureValid(c))
      return fail(
        'bad-checkpoint',
        c.seq,
        line,
        `checkpoint over seq ${c.seq}: the signature does not verify under audit key ${key}`,
      );
    const p = this.prev;
    if (!p || c.seq > p.seq) {
      const absent = p ? p.seq + 1 : c.seq;
      const after = p ? `the last entry before it is ${p.seq}` : 'no entry precedes it';
      return (next) =>
        next === undefined
          ? fail(
              'truncated',
              absent,
              line,
              `the export ends with a checkpoint over seq ${c.seq} but ${after}: the entries it covers were cut`,
            )
          : fail(
              'missing',
              absent,
              line,
              `a checkpoint over seq ${c.seq} follows, but ${after}: the entries up to ${c.seq} are missing`,
            );
    }
    if (c.seq < p.seq) {
      return fail(
        'inserted',
        c.seq + 1,
        line,
        `the checkpoint over seq ${c.seq} comes after entry ${p.seq} (line ${p.line}): entries after ${c.seq} were inserted before it, or it was moved`,
      );
    }
    if (c.headHash !== p.hash) {
      return fail(
        'changed',
        p.seq,
        p.line,
        `the signed checkpoint over seq ${p.seq} (line ${line}) records another hash for entry ${p.seq}: the entry was rewritten with a recomputed hash`,
      );
    }
    this.checkpoints++;
    this.lastCheckpoint = c.seq;
    this.covered = true;
    return undefined;
  }

  /** The next record confirms `e`'s hash: it links to it, or a valid checkpoint signs it. */
  private vouches(next: Next, e: Seen): boolean {
    const r = next?.record;
    if (r?.type === 'entry') return r.seq === e.seq + 1 && r.prevHash === e.hash;
    if (r?.type === 'checkpoint') return r.seq === e.seq && r.headHash === e.hash && this.signatureValid(r);
    return false;
  }

  private signatureValid(c: CheckpointRecord): boolean {
    const publicKey = this.keys.get(keyName(c.auditKey.keyId, c.auditKey.version));
    if (!publicKey) return false;
    try {
      // zip215: false is RFC 8032's strict decoding: one valid encoding per signature and key.
      return ed25519.verify(hexToBytes(c.signature), checkpointMessage(c.seq, c.headHash), publicKey, {
        zip215: false,
      });
    } catch {
      return false;
    }
  }
}

function keyName(keyId: string, version: number): string {
  return JSON.stringify([keyId, version]);
}

function fail(kind: ProblemKind, seq: number | null, line: number, message: string): Problem {
  return { kind, seq, line, message };
}

/** One line for people: `OK: ...`, or `FAILED at seq N (line L): kind: message` (`FAILED (line L): ...` when no entry is concerned). */
export function formatReport(report: VerifyReport): string {
  if (report.ok) {
    return `OK: ${report.entries} entries (seq ${report.firstSeq}..${report.lastSeq}), ${report.checkpoints} checkpoints, covering ${report.from} .. ${report.to}`;
  }
  const { kind, seq, line, message } = report.problem;
  return `FAILED ${seq === null ? '' : `at seq ${seq} `}(line ${line}): ${kind}: ${message}`;
}
