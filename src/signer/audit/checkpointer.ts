import type { AuditEntry } from '../../core/audit/chain.js';
import { checkpointMessage, entryHash } from '../../core/audit/chain.js';
import { type Checkpoint, openCheckpoint, parseCheckpoint, signCheckpoint } from '../../core/audit/checkpoint.js';
import { extendChecked } from '../../core/audit/extend.js';
import { entryLeafHash } from '../../core/audit/leaf.js';
import { EMPTY_FRONTIER, type Frontier, frontierNodes, frontierRoot } from '../../core/audit/merkle.js';
import { verifyInclusion } from '../../core/audit/merkle-verify.js';
import {
  addSignatures,
  ed25519Verifier,
  type NoteSignature,
  type NoteSigner,
  keyId as noteKeyId,
  parseNote,
  SIG_TYPE_ED25519,
} from '../../core/audit/note.js';
import { type RollbackCheck, rolledBackError } from '../../core/audit/rollback.js';
import { SignerError } from '../../core/errors.js';
import type { Logger } from '../../infra/log.js';
import type { AuditStore, StoredCheckpoint } from '../../infra/store/audit.js';
import type { AuditTreeStore, StoredNote } from '../../infra/store/audit-tree.js';
import { proveTrustedHead, type TrustedHead } from './trusted-heads.js';

export interface AuditKeyRef {
  keyId: string;
  version: number;
  /** Raw Ed25519 public key (32 bytes), published in every export. */
  publicKey: Uint8Array;
}

/** Signs a message with the audit key inside the HSM (and checks the result). */
export type CheckpointSigner = (message: Uint8Array) => Promise<Uint8Array>;

export interface CheckpointerOptions {
  /** Checkpoint after this many new entries... */
  everyEntries: number;
  /** ...or this long after the last checkpoint, whichever comes first. */
  everyMs: number;
  /** The checkpoint notes' origin line and log key name (config audit.origin). */
  origin: string;
  log?: Logger;
}

/** What the checkpointer found when the log does not extend the last signed tree. */
export interface Inconsistency {
  /** Entry seqs whose content or tree nodes differ from what was signed. */
  range: { from: number; to: number };
  signedSize: number;
  message: string;
  /** Set when the database lost entries a trusted head holds: refused as STORE_ROLLED_BACK. */
  rolledBack?: RolledBack;
}

type RolledBack = Extract<RollbackCheck, { ok: false }>;

/** A checkpoint note the checkpointer signed, with the tree it describes. */
export interface SignedCheckpoint extends StoredNote {
  checkpoint: Checkpoint;
}

type Store = AuditStore & AuditTreeStore;

/**
 * Signs checkpoints of the audit log with the HSM-held audit key, and NEVER one that does not
 * extend the last tree it signed. It keeps, in memory and so outside the database, the compact
 * range (frontier) of that tree; before each signature it reads the new entries, recomputes
 * their leaf hashes from the stored content, extends the frontier and compares the head with the
 * database's. A mismatch stops it for good (until restart): nothing more is signed, signing
 * requests are refused with AUDIT_LOG_INCONSISTENT (see {@link assertConsistent}), and the
 * listeners learn which range differs. At start the frontier is seeded from the newest stored
 * note that verifies under the audit key and matches the stored nodes (or the empty tree).
 *
 * Each checkpoint is a C2SP tlog-checkpoint signed note, plus the legacy chain checkpoint over
 * the same head (seq and entry hash) that export format hsm-signer-audit/1 carries. Replicas may
 * checkpoint the same size; the store keeps the first.
 */
export class Checkpointer {
  private timer: NodeJS.Timeout | undefined;
  private signed: { frontier: Frontier; root: Uint8Array; at: number; note?: StoredNote } = {
    frontier: EMPTY_FRONTIER,
    root: frontierRoot(EMPTY_FRONTIER),
    at: Date.now(),
  };
  private running: Promise<unknown> = Promise.resolve();
  private broken: Inconsistency | undefined;
  private readonly signedListeners: ((c: SignedCheckpoint) => void)[] = [];
  private readonly brokenListeners: ((i: Inconsistency) => void)[] = [];
  private readonly noteSigner: NoteSigner;

  constructor(
    private readonly store: Store,
    readonly key: AuditKeyRef,
    private readonly sign: CheckpointSigner,
    private readonly opts: CheckpointerOptions,
  ) {
    const id = noteKeyId(opts.origin, SIG_TYPE_ED25519, key.publicKey);
    this.noteSigner = { name: opts.origin, keyId: id, sign: (text) => this.sign(text) };
  }

  /** The origin line of this log's checkpoints. */
  get origin(): string {
    return this.opts.origin;
  }

  /** The C2SP verifier key of this log: `<origin>+<key id>+<base64(0x01 || public key)>`. */
  get verifier() {
    return ed25519Verifier(this.opts.origin, this.key.publicKey);
  }

  /** The inconsistency that stopped signing, if any. */
  get inconsistency(): Inconsistency | undefined {
    return this.broken;
  }

  /** Hook: a new checkpoint note was signed and stored (witnesses cosign it, a rollback mark records it). */
  onSigned(listener: (c: SignedCheckpoint) => void): void {
    this.signedListeners.push(listener);
  }

  /** Hook: the log was found not to extend the last signed checkpoint; signing has stopped. */
  onInconsistent(listener: (i: Inconsistency) => void): void {
    this.brokenListeners.push(listener);
  }

  /** Throws AUDIT_LOG_INCONSISTENT once the log was found rewritten; signing paths call this first. */
  assertConsistent(): void {
    const b = this.broken;
    if (!b) return;
    if (b.rolledBack) throw rolledBackError(b.rolledBack);
    throw new SignerError(
      'AUDIT_LOG_INCONSISTENT',
      `signing stopped: the audit log does not extend the last signed checkpoint (size ${b.signedSize}); entries ${b.range.from}..${b.range.to} differ`,
      {
        signedSize: String(b.signedSize),
        from: String(b.range.from),
        to: String(b.range.to),
      },
    );
  }

  /**
   * Seeds "the last signed tree" at start, from the largest head it can trust: the newest stored
   * note that verifies under the audit key, and the `external` heads kept OUTSIDE the database
   * (the HSM rollback marks, each reachable witness's latest checkpoint for this origin), so that
   * deleting the checkpoint rows between two runs cannot make a rewritten log look new. Then it
   * proves the database extends that head before anything is signed: the stored tree nodes must
   * give the trusted root at its size (a node cannot be forged to hash to a given root), every
   * other trusted head must be a prefix of it (consistency proofs, verified), and the entries
   * after it are recomputed from their content (see {@link verifyTail}). A database shorter
   * than a trusted head halts with STORE_ROLLED_BACK (released entries are gone: nonce claims
   * too), any other mismatch with AUDIT_LOG_INCONSISTENT. With no trusted head at all, the first
   * checkpoint recomputes every leaf. `frontier` (benchmarks only) is trusted as is.
   */
  async seed(external: readonly TrustedHead[] = [], opts: { frontier?: Frontier } = {}): Promise<void> {
    if (opts.frontier) {
      this.signed = { frontier: opts.frontier, root: frontierRoot(opts.frontier), at: Date.now() };
      return;
    }
    const heads = [...external];
    const stored = await this.verifiedStoredNote();
    if (stored) heads.push({ source: 'store', size: stored.checkpoint.size, root: stored.checkpoint.root });
    if (heads.length === 0) return;
    const checked = await proveTrustedHead(this.store, heads);
    if (!checked.ok) return this.halt(checked.inconsistency);
    const { top, frontier } = checked;
    const note = stored && stored.stored.size === top.size ? stored.stored : undefined;
    this.signed = { frontier, root: top.root, at: Date.now(), ...(note ? { note } : {}) };
    this.opts.log?.info(
      { size: top.size, source: top.source, heads: heads.map((h) => `${h.source}=${h.size}`) },
      'audit checkpointer seeded from the largest trusted head',
    );
    await this.verifyTail();
  }

  /**
   * Recomputes the leaves of the entries after the last signed tree from their stored content
   * and checks that the database's head is that tree extended with them, without signing: at
   * start, so a tail rewritten while the signer was stopped stops signing before any request.
   */
  private async verifyTail(): Promise<void> {
    const from = this.signed.frontier.size;
    const size = (await this.store.auditHead())?.seq ?? 0;
    if (size <= from) return;
    const entries = await this.readRange(from + 1, size);
    let storedRoot: Uint8Array;
    let storedFrontier: readonly Uint8Array[] | undefined;
    try {
      storedRoot = await this.store.treeHead(size);
      storedFrontier = from > 0 ? await this.store.readNodes(frontierNodes(from)) : undefined;
    } catch (e) {
      const message = `the database's tree cannot give its head at size ${size}: ${(e as Error).message}`;
      return this.halt({ range: { from: from + 1, to: size }, signedSize: from, message });
    }
    const ext = extendChecked(this.signed.frontier, size, entries, storedRoot, storedFrontier);
    if (!ext.ok) this.halt({ range: ext.range, signedSize: from, message: ext.message });
  }

  /** The newest stored note, if it verifies under the audit key for this origin. */
  private async verifiedStoredNote(): Promise<{ stored: StoredNote; checkpoint: Checkpoint } | undefined> {
    const stored = await this.store.latestCheckpointNote();
    if (!stored) return undefined;
    try {
      const { checkpoint } = openCheckpoint(stored.note, { origin: this.opts.origin, log: this.verifier });
      return { stored, checkpoint };
    } catch (e) {
      this.opts.log?.warn(
        { size: stored.size, why: (e as Error).message },
        'the newest stored checkpoint does not verify; not trusted',
      );
      return undefined;
    }
  }

  start(): void {
    this.timer = setInterval(() => void this.tick(), Math.min(1000, this.opts.everyMs));
    this.timer.unref();
  }

  stop(): Promise<unknown> {
    clearInterval(this.timer);
    return this.running;
  }

  /** Checkpoints the current head now (if it moved); returns the latest signed note. */
  checkpointHead(): Promise<SignedCheckpoint | undefined> {
    return this.serial(() => this.checkpointNow());
  }

  /** The latest note this process signed or seeded from, without signing. */
  latest(): StoredNote | undefined {
    return this.signed.note;
  }

  /**
   * A legacy chain checkpoint over entry `seq` (export format 1), signed only after the entry is
   * shown to be in the checked tree: a checkpoint over the current head is made first if `seq`
   * is beyond the last signed size, then the entry's leaf is proved in it.
   */
  checkpointAt(seq: number): Promise<StoredCheckpoint> {
    return this.serial(async () => {
      this.assertConsistent();
      if (seq > this.signed.frontier.size) await this.checkpointNow();
      const size = this.signed.frontier.size;
      const entry = await this.readOne(seq);
      const proof = await this.store.inclusionProof(seq, size);
      if (
        !entry ||
        entryHash(entry) !== entry.hash ||
        !verifyInclusion(seq - 1, size, entryLeafHash(entry), proof, this.signed.root)
      ) {
        this.halt({
          range: { from: seq, to: seq },
          signedSize: size,
          message: `entry ${seq} as stored is not the one in the signed tree of size ${size}`,
        });
        this.assertConsistent();
      }
      return this.legacy(seq, entry!.hash);
    });
  }

  /** Adds witness cosignatures to the stored note of `size` (its signed text must not change). */
  async addCosignatures(size: number, sigs: readonly NoteSignature[]): Promise<StoredNote> {
    const stored = await this.store.checkpointNote(size);
    if (!stored) throw new SignerError('REQUEST_INVALID', `no checkpoint note of size ${size}`, { size: String(size) });
    const note = addSignatures(stored.note, sigs);
    if (parseNote(note).text !== parseNote(stored.note).text)
      throw new Error('checkpointer: cosignatures changed the note text');
    await this.store.replaceCheckpointNote(size, note);
    const updated = { ...stored, note };
    if (this.signed.note?.size === size) this.signed.note = updated;
    return updated;
  }

  private async checkpointNow(): Promise<SignedCheckpoint | undefined> {
    this.assertConsistent();
    const head = await this.store.auditHead();
    const size = head?.seq ?? 0;
    const from = this.signed.frontier.size;
    if (size === from && this.signed.note) {
      // Nothing new, but a rewrite under an unchanged size must still stop us.
      if (size > 0 && !equal(await this.store.treeHead(size), this.signed.root)) {
        this.halt({
          range: { from: 1, to: size },
          signedSize: from,
          message: `the database's tree head at the signed size ${size} changed`,
        });
      }
      this.assertConsistent();
      return undefined;
    }
    const entries = size > from ? await this.readRange(from + 1, size) : [];
    const storedRoot = size > 0 && size >= from ? await this.store.treeHead(size) : frontierRoot(EMPTY_FRONTIER);
    let ext = extendChecked(this.signed.frontier, size, entries, storedRoot);
    if (!ext.ok && size >= from && from > 0) {
      // Only to say which range moved: the stored nodes of the signed frontier, read on failure.
      const storedFrontier = await this.store.readNodes(frontierNodes(from));
      ext = extendChecked(this.signed.frontier, size, entries, storedRoot, storedFrontier);
    }
    if (!ext.ok) {
      this.halt({ range: ext.range, signedSize: from, message: ext.message });
      this.assertConsistent();
    }
    const ok = ext as Extract<typeof ext, { ok: true }>;
    // Leaves commit each entry's content and prevHash, so the chain up to the last entry is in
    // the tree; only the last entry's own hash (signed by the legacy checkpoint) needs checking.
    const chainBroken = entries.slice(-1).find((e) => entryHash(e) !== e.hash);
    if (chainBroken) {
      this.halt({
        range: { from: chainBroken.seq, to: chainBroken.seq },
        signedSize: from,
        message: `entry ${chainBroken.seq} does not hash to its recorded hash`,
      });
      this.assertConsistent();
    }
    if (size === 0) return undefined;
    const checkpoint: Checkpoint = { origin: this.opts.origin, size, root: ok.root };
    const last = entries.at(-1);
    // Both signatures at once (the HSM has sessions for both), then both rows in one group
    // commit (the SQLite store batches concurrent writes into one transaction): one fsync.
    const [note, legacySig] = await Promise.all([
      signCheckpoint(checkpoint, this.noteSigner),
      last ? this.sign(checkpointMessage(last.seq, last.hash)) : undefined,
    ]);
    const stored: StoredNote = { size, note, at: new Date().toISOString() };
    await Promise.all([
      this.store.putCheckpointNote(stored),
      last && legacySig ? this.store.putCheckpoint(this.legacyRow(last.seq, last.hash, legacySig)) : undefined,
    ]);
    this.signed = { frontier: ok.frontier, root: ok.root, at: Date.now(), note: stored };
    const signed = { ...stored, checkpoint: parseCheckpoint(parseNote(note).text) };
    for (const l of this.signedListeners) {
      try {
        l(signed);
      } catch (e) {
        this.opts.log?.error({ err: e }, 'a checkpoint listener failed');
      }
    }
    return signed;
  }

  private async legacy(seq: number, hash: string): Promise<StoredCheckpoint> {
    const cp = this.legacyRow(seq, hash, await this.sign(checkpointMessage(seq, hash)));
    await this.store.putCheckpoint(cp);
    return cp;
  }

  private legacyRow(seq: number, hash: string, signature: Uint8Array): StoredCheckpoint {
    return {
      seq,
      headHash: hash,
      at: new Date().toISOString(),
      auditKey: { keyId: this.key.keyId, version: this.key.version },
      signature: Buffer.from(signature).toString('hex'),
    };
  }

  private async readRange(from: number, to: number): Promise<AuditEntry[]> {
    const entries: AuditEntry[] = [];
    for await (const e of this.store.readAudit(from, to)) entries.push(e);
    return entries;
  }

  private async readOne(seq: number): Promise<AuditEntry | undefined> {
    for await (const e of this.store.readAudit(seq, seq)) return e;
    return undefined;
  }

  private halt(i: Inconsistency): void {
    if (this.broken) return;
    this.broken = i;
    this.opts.log?.error(
      { signedSize: i.signedSize, from: i.range.from, to: i.range.to },
      `${i.rolledBack ? 'STORE ROLLED BACK' : 'AUDIT LOG INCONSISTENT'}: ${i.message}; no checkpoint signed, signing stopped until an operator investigates and restarts`,
    );
    for (const l of this.brokenListeners) l(i);
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.running.then(fn);
    this.running = p.catch(() => undefined);
    return p;
  }

  private tick(): Promise<unknown> {
    return this.serial(async () => {
      try {
        if (this.broken) return;
        const head = await this.store.auditHead();
        const moved = (head?.seq ?? 0) - this.signed.frontier.size;
        if (moved === 0 && this.signed.note) return;
        if (moved >= this.opts.everyEntries || Date.now() - this.signed.at >= this.opts.everyMs || moved < 0) {
          await this.checkpointNow();
        }
      } catch (e) {
        if (!(e instanceof SignerError && e.reason === 'AUDIT_LOG_INCONSISTENT')) {
          this.opts.log?.error({ err: e }, 'audit checkpoint failed');
        }
      }
    }).catch(() => undefined);
  }
}

function equal(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}
