import { SignerError } from '../../core/errors.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';

interface Call {
  since: number;
  op: Promise<unknown>;
  reject(e: unknown): void;
}

/**
 * The deadline of HSM calls. A call that has not returned after `ms` fails its caller with
 * UNAVAILABLE, and its session turns suspect: a PKCS#11 session runs one operation at a time, so
 * it MUST stay out of the pool until the call returns. The owner decides what happens then
 * (`returned`: back to the pool; `failed`: the usual failure handling).
 */
export class CallDeadline<S> {
  private readonly suspects = new Set<S>();
  /** Calls in flight: when each started, and how to fail its caller. */
  private readonly running = new Map<S, Call>();
  /**
   * One sweep timer for all calls instead of a timer per call, which would cost the signing
   * path a few microseconds each; a deadline is therefore met within a tenth of `ms` after it.
   */
  private sweeper: NodeJS.Timeout | undefined;

  constructor(
    readonly ms: number,
    private readonly retryDelayMs: number,
    private readonly owner: { returned(session: S): void; failed(session: S, e: unknown): void },
    private readonly metrics?: Metrics,
    private readonly log?: Logger,
  ) {}

  /** Sessions held aside because their call missed its deadline. */
  get count(): number {
    return this.suspects.size;
  }

  /** True while `session`'s late call is pending: its owner MUST NOT release or close it. */
  holds(session: S): boolean {
    return this.suspects.has(session);
  }

  /** `op`, the call running on `session`, or a refusal once it has run `ms`. */
  run<T>(session: S, op: Promise<T>): Promise<T> {
    // No named closures here: tsx (esbuild keepNames) wraps each in a defineProperty call.
    return new Promise<T>((resolve, reject) => {
      const call: Call = { since: Date.now(), op, reject };
      this.running.set(session, call);
      this.sweeper ??= setInterval(() => this.sweep(), Math.max(10, Math.ceil(this.ms / 10))).unref();
      op.then(
        (v) => {
          if (this.running.get(session) === call) this.running.delete(session);
          resolve(v);
        },
        (e) => {
          if (this.running.get(session) === call) this.running.delete(session);
          reject(e);
        },
      );
    });
  }

  private sweep(): void {
    const now = Date.now();
    for (const [session, call] of this.running) {
      if (now - call.since < this.ms) continue;
      this.running.delete(session);
      this.suspect(session, call.op);
      const message = `the HSM did not answer within ${this.ms} ms; retry later`;
      call.reject(new SignerError('HSM_UNAVAILABLE', message, { timeout: 'call' }, this.retryDelayMs));
    }
    if (this.running.size === 0) {
      clearInterval(this.sweeper);
      this.sweeper = undefined;
    }
  }

  private suspect(session: S, op: Promise<unknown>): void {
    this.suspects.add(session);
    this.metrics?.hsmDeadlines.inc({ stage: 'call' });
    this.metrics?.sessionsSuspect.set(this.suspects.size);
    const suspect = this.suspects.size;
    this.log?.warn({ timeoutMs: this.ms, suspect }, 'an HSM call missed its deadline; its session waits for it');
    const settle = () => {
      this.suspects.delete(session);
      this.metrics?.sessionsSuspect.set(this.suspects.size);
    };
    op.then(
      (late) => {
        settle();
        // Nobody reads a late result, and it may be a secret (a decrypted share): wipe it.
        if (late instanceof Uint8Array) late.fill(0);
        this.log?.info('a late HSM call returned; its session is back in the pool');
        this.owner.returned(session);
      },
      (e) => {
        settle();
        this.owner.failed(session, e);
      },
    );
  }
}
