import { type Checkpoint, openCheckpoint, parseCheckpoint } from '../../core/audit/checkpoint.js';
import { cosignatureSigner } from '../../core/audit/cosignature.js';
import { addSignatures, ed25519Verifier, formatNote, NoteError, parseNote, signText } from '../../core/audit/note.js';
import { checkAddCheckpoint } from '../../core/audit/witness-check.js';
import { SignerError } from '../../core/errors.js';
import type { Logger } from '../log.js';
import type { WitnessKey } from './key.js';
import type { WitnessStore } from './store.js';

export interface AddCheckpointRequest {
  /** uint64 as proto-loader decodes it (a decimal string), or a number from in-process callers. */
  oldSize: string | number;
  consistencyProof: Uint8Array[];
  checkpoint: string;
}

export interface WitnessOptions {
  /** This witness's key name in notes (e.g. `witness-1.example.com`). */
  name: string;
  /** Pinned log keys: origin -> the log's Ed25519 audit public key. */
  logs: ReadonlyMap<string, Uint8Array>;
  key: WitnessKey;
  store: WitnessStore;
  log: Logger;
  now?: () => number;
}

/**
 * signer.v1.Witness as a domain object. It cosigns a checkpoint only after verifying the log's
 * signature and that the tree extends the last one it cosigned for that origin, and only after
 * the new head is on disk; it refuses a fork or a rollback, logs it and keeps its last size.
 * Requests for one origin run one at a time, so the check and the write see the same head.
 */
export class WitnessService {
  private readonly queues = new Map<string, Promise<unknown>>();
  private readonly signer;

  constructor(private readonly o: WitnessOptions) {
    const now = o.now ?? (() => Math.floor(Date.now() / 1000));
    this.signer = cosignatureSigner(o.name, o.key.publicKey, (m) => o.key.sign(m), now);
  }

  get publicKey(): Uint8Array {
    return this.o.key.publicKey;
  }

  async addCheckpoint(req: AddCheckpointRequest): Promise<{ cosignature: string; size: number }> {
    const { cp, text } = this.open(req.checkpoint);
    const oldSize = Number(req.oldSize);
    return this.serial(cp.origin, async () => {
      const recorded = this.o.store.latest(cp.origin);
      const decision = checkAddCheckpoint(recorded, oldSize, req.consistencyProof ?? [], cp);
      if (!decision.ok) {
        const meta = { origin: cp.origin, latest_size: String(decision.latestSize), checkpoint_size: String(cp.size) };
        if (decision.kind === 'fork' || decision.kind === 'rollback') {
          // A signed checkpoint that does not extend what we cosigned: the log (or its database) lies.
          this.o.log.error({ ...meta, problem: decision.kind }, `witness refused: ${decision.message}`);
        }
        const reason = {
          'bad-request': 'REQUEST_INVALID',
          conflict: 'WITNESS_CONFLICT',
          rollback: 'WITNESS_ROLLBACK',
          fork: 'WITNESS_FORK',
        } as const;
        throw new SignerError(reason[decision.kind], decision.message, meta);
      }
      const sig = await signText(text, this.signer);
      const cosignature = formatNote({ text, sigs: [sig] }).slice(text.length + 1);
      const note = addSignatures(withoutOurLine(req.checkpoint, this.o.name), [sig]);
      // Durable before the cosignature leaves: a witness that cosigns and then forgets on a crash
      // could be made to cosign a fork of what it already vouched for.
      if (!this.o.store.advance(cp.origin, recorded?.size ?? 0, { size: cp.size, root: cp.root, note })) {
        throw new SignerError('WITNESS_CONFLICT', 'the recorded checkpoint changed during the request', {
          origin: cp.origin,
          latest_size: String(this.o.store.latest(cp.origin)?.size ?? 0),
        });
      }
      this.o.log.info({ origin: cp.origin, size: cp.size, from: recorded?.size ?? 0 }, 'checkpoint cosigned');
      return { cosignature, size: cp.size };
    });
  }

  getLatest(req: { origin: string }): { checkpoint: string; size: number } {
    if (!this.o.logs.has(req.origin)) throw unknownOrigin(req.origin);
    const row = this.o.store.latest(req.origin);
    return { checkpoint: row?.note ?? '', size: row?.size ?? 0 };
  }

  /** Verifies the log's signature on a checkpoint of a configured origin. */
  private open(note: string): { cp: Checkpoint; text: string } {
    let origin: string;
    try {
      origin = parseCheckpoint(parseNote(note).text).origin;
    } catch (e) {
      throw invalid(e);
    }
    const key = this.o.logs.get(origin);
    if (!key) throw unknownOrigin(origin);
    try {
      const opened = openCheckpoint(note, { origin, log: ed25519Verifier(origin, key) });
      return { cp: opened.checkpoint, text: opened.text };
    } catch (e) {
      throw invalid(e);
    }
  }

  private serial<T>(origin: string, fn: () => Promise<T>): Promise<T> {
    const run = (this.queues.get(origin) ?? Promise.resolve()).then(fn, fn);
    const settled = run.catch(() => undefined);
    this.queues.set(origin, settled);
    void settled.then(() => this.queues.get(origin) === settled && this.queues.delete(origin));
    return run;
  }
}

/** The note minus an older line of ours (a resent note), so the stored note has one per key. */
function withoutOurLine(note: string, name: string): string {
  const parsed = parseNote(note);
  return formatNote({ text: parsed.text, sigs: parsed.sigs.filter((s) => s.name !== name) });
}

function unknownOrigin(origin: string): SignerError {
  return new SignerError('WITNESS_UNKNOWN_ORIGIN', `no log with origin ${JSON.stringify(origin)} is configured here`, {
    origin,
  });
}

function invalid(e: unknown): SignerError {
  if (!(e instanceof NoteError)) throw e;
  return new SignerError('CHECKPOINT_SIGNATURE_INVALID', `checkpoint refused (${e.kind}): ${e.message}`, {
    problem: e.kind,
  });
}
