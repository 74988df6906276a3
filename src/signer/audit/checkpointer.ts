import type { Logger } from '../../infra/log.js';
import type { AuditStore, StoredCheckpoint } from '../../infra/store/audit.js';
import { checkpointMessage } from '../../core/audit/chain.js';

export interface AuditKeyRef {
  keyId: string;
  version: number;
  /** Raw Ed25519 public key (32 bytes), published in every export. */
  publicKey: Uint8Array;
}

/** Signs a checkpoint message with the audit key inside the HSM (and checks the result). */
export type CheckpointSigner = (message: Uint8Array) => Promise<Uint8Array>;

export interface CheckpointerOptions {
  /** Checkpoint after this many new entries... */
  everyEntries: number;
  /** ...or this long after the last checkpoint, whichever comes first. */
  everyMs: number;
  log?: Logger;
}

/**
 * Signs the chain head with the HSM-held audit key from time to time. An auditor who trusts
 * only the audit public key can then tell that no entry up to a checkpoint was removed, added
 * or changed. Replicas may checkpoint the same seq; the store keeps the first.
 */
export class Checkpointer {
  private timer: NodeJS.Timeout | undefined;
  private last: { seq: number; at: number } = { seq: 0, at: Date.now() };
  private running: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly store: AuditStore,
    readonly key: AuditKeyRef,
    private readonly sign: CheckpointSigner,
    private readonly opts: CheckpointerOptions,
  ) {}

  start(): void {
    this.timer = setInterval(() => void this.tick(), Math.min(1000, this.opts.everyMs));
    this.timer.unref();
  }

  stop(): Promise<unknown> {
    clearInterval(this.timer);
    return this.running;
  }

  /** Checkpoints the current head now if it moved since the last checkpoint. */
  async checkpointHead(): Promise<StoredCheckpoint | undefined> {
    const head = await this.store.auditHead();
    if (!head || head.seq <= this.last.seq) return undefined;
    return this.checkpointAt(head.seq, head.hash);
  }

  /** Signs and stores a checkpoint over the entry `seq`, whose hash is `hash`. */
  async checkpointAt(seq: number, hash: string): Promise<StoredCheckpoint> {
    const signature = await this.sign(checkpointMessage(seq, hash));
    const cp: StoredCheckpoint = {
      seq,
      headHash: hash,
      at: new Date().toISOString(),
      auditKey: { keyId: this.key.keyId, version: this.key.version },
      signature: Buffer.from(signature).toString('hex'),
    };
    await this.store.putCheckpoint(cp);
    if (seq > this.last.seq) this.last = { seq, at: Date.now() };
    return cp;
  }

  private tick(): Promise<unknown> {
    this.running = this.running.then(async () => {
      try {
        const head = await this.store.auditHead();
        if (!head || head.seq <= this.last.seq) return;
        const due = head.seq - this.last.seq >= this.opts.everyEntries || Date.now() - this.last.at >= this.opts.everyMs;
        if (due) await this.checkpointAt(head.seq, head.hash);
      } catch (e) {
        this.opts.log?.error({ err: e }, 'audit checkpoint failed');
      }
    });
    return this.running;
  }
}
