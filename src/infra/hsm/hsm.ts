import pkcs11js from 'pkcs11js';
import { SignerError } from '../../core/errors.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';
import { CallDeadline } from './deadline.js';
import { ckrCode, ckrName, classify, HsmStartError } from './errors.js';
import { findSlot, loadModule, type Pkcs11, tryClose, tryFinalize } from './module.js';
import { ObjectCache } from './objects.js';
import { isPinFailure, PinRefusedError, pinAdvice, readPinFile } from './pin.js';
import { type Lane, SessionPool } from './pool.js';
import { type Pkcs11Uri, parsePkcs11Uri } from './uri.js';

type Handle = Buffer;

export type { Pkcs11 };
export { HsmStartError };

export interface HsmOptions {
  uri: string;
  sessions: number;
  recoveryIntervalMs: number;
  /** Longest wait for a free session in the hot lane (default 2 s) and in the batch lane (60 s). */
  sessionWaitMs?: number;
  batchSessionWaitMs?: number;
  /** Longest an HSM call may run before its request is refused and its session set aside (5 s). */
  callTimeoutMs?: number;
  metrics?: Metrics;
  log?: Logger;
  /** Tests wrap the loaded module to inject failures (a token cannot be pulled out of SoftHSM). */
  wrapModule?: (p11: Pkcs11) => Pkcs11;
}

/** `recovering`: down and probed every interval; `login-blocked`: down until an operator acts. */
export type HsmState = 'up' | 'recovering' | 'login-blocked' | 'closed';

const SIG_BUF = 128;
/** A saturated pool frees a session within milliseconds: a short back-off spreads the retries. */
const BUSY_RETRY_MS = 250;

/**
 * One PKCS#11 token: the loaded module, a pool of logged-in sessions, and recovery when the
 * token or its sessions fail. Signing never blocks the event loop (C_SignAsync); key management
 * is serialised because SoftHSM 2.6 fails on concurrent key generation. Waits for a session and
 * HSM calls have deadlines, and a refused PIN stops all logins until an operator acts.
 */
export class Hsm {
  private readonly pool: SessionPool<Handle>;
  private readonly objects: ObjectCache;
  /** HSM calls' deadline; holds the sessions of late calls out of the pool until they return. */
  private readonly calls: CallDeadline<Handle>;
  private slot: Handle | undefined;
  private healthy = false;
  /** The CKR_* name of the PIN failure that stopped recovery; cleared by `retryLogin`. */
  private blocked: string | undefined;
  private recovering: NodeJS.Timeout | undefined;
  private closed = false;
  private mgmt: Promise<unknown> = Promise.resolve();
  private listeners: Array<(up: boolean) => void> = [];
  private readonly waitMs: Record<Lane, number>;

  private constructor(
    readonly p11: Pkcs11,
    private readonly uri: Pkcs11Uri & { pinFile: string },
    private pin: string,
    private readonly opts: HsmOptions,
  ) {
    this.pool = new SessionPool(opts.metrics, (ms) => {
      this.opts.metrics?.hsmDeadlines.inc({ stage: 'session_wait' });
      const message = `no HSM session became free within ${ms} ms; retry later`;
      return new SignerError('HSM_UNAVAILABLE', message, { timeout: 'session_wait' }, BUSY_RETRY_MS);
    });
    this.objects = new ObjectCache(p11);
    this.waitMs = { hot: opts.sessionWaitMs ?? 2000, batch: opts.batchSessionWaitMs ?? 60_000 };
    this.calls = new CallDeadline<Handle>(
      opts.callTimeoutMs ?? 5000,
      opts.recoveryIntervalMs,
      { returned: (s) => this.pool.release(s), failed: (s, e) => void this.fail(s, e) },
      opts.metrics,
      opts.log,
    );
  }

  /**
   * Loads the module, finds the token by label or serial, logs in once and opens the pool. A
   * refused PIN is not retried: it throws {@link PinRefusedError}, which says what to fix.
   */
  static async open(opts: HsmOptions): Promise<Hsm> {
    let uri: Pkcs11Uri;
    try {
      uri = parsePkcs11Uri(opts.uri);
    } catch (e) {
      throw new HsmStartError(`hsm.uri: ${(e as Error).message}`);
    }
    const pinFile = uri.pinFile;
    if (!pinFile) throw new HsmStartError('hsm.uri: pin-source=file:... is required');
    const pin = readPinFile(pinFile);
    const loaded = loadModule(uri);
    const p11 = opts.wrapModule ? opts.wrapModule(loaded) : loaded;
    const threads = Number(process.env.UV_THREADPOOL_SIZE ?? 4);
    if (opts.sessions > threads) {
      opts.log?.warn(
        { sessions: opts.sessions, threads },
        'more HSM sessions than libuv threads: the extra sessions stay idle',
      );
    }
    const hsm = new Hsm(p11, { ...uri, pinFile }, pin, opts);
    try {
      hsm.connect();
    } catch (e) {
      tryFinalize(p11);
      if (e instanceof PinRefusedError) opts.metrics?.hsmErrors.inc({ ckr: e.ckr, class: 'login' });
      throw e instanceof HsmStartError ? e : new HsmStartError(`cannot open token: ${ckrName(e)}`);
    }
    return hsm;
  }

  get up(): boolean {
    return this.healthy;
  }

  get state(): HsmState {
    if (this.closed) return 'closed';
    if (this.healthy) return 'up';
    return this.blocked ? 'login-blocked' : 'recovering';
  }

  get sessions(): { size: number; inUse: number; suspect: number } {
    return { size: this.pool.size, inUse: this.pool.inUse, suspect: this.calls.count };
  }

  /** Called with the new state whenever the token goes down or comes back. */
  onHealthChange(cb: (up: boolean) => void): void {
    this.listeners.push(cb);
  }

  /**
   * The operator's action after a refused PIN (main.ts calls it on SIGHUP): re-reads the PIN
   * file and, if recovery had stopped on a PIN failure, makes exactly one login attempt. While
   * the token is up or still recovering, the PIN read is kept for the next login. A PIN file
   * that cannot be read (or has a loose mode) leaves everything as it was.
   */
  retryLogin(): HsmState {
    if (this.closed) return 'closed';
    try {
      this.pin = readPinFile(this.uri.pinFile);
    } catch (e) {
      this.opts.log?.error((e as Error).message);
      return this.state;
    }
    if (!this.blocked) {
      this.opts.log?.info({ state: this.state }, 'PIN file re-read; it is used at the next login');
      return this.state;
    }
    this.opts.log?.info({ ckr: this.blocked }, 'PIN file re-read; one login attempt');
    this.blocked = undefined;
    this.opts.metrics?.hsmLoginBlocked.set(0);
    this.recover();
    return this.state;
  }

  /**
   * Signs `data` with the private key whose CKA_ID is `keyId`. The session is held from
   * SignInit to the end of Sign. Failures are reported as UNAVAILABLE (token or session gone,
   * a deadline passed) or rethrown for the caller to map. `deadline` (epoch ms, the gRPC
   * call's) caps the wait for a session.
   */
  async sign(
    keyId: Uint8Array,
    mechanism: pkcs11js.Mechanism,
    data: Uint8Array,
    lane: Lane = 'hot',
    deadline?: number,
  ): Promise<Buffer> {
    const session = await this.acquire(lane, deadline);
    const started = process.hrtime.bigint();
    try {
      this.p11.C_SignInit(session, mechanism, this.objects.get(session, keyId, pkcs11js.CKO_PRIVATE_KEY));
      const op = this.p11.C_SignAsync(session, Buffer.from(data), Buffer.alloc(SIG_BUF));
      const sig = await this.calls.run(session, op);
      this.pool.release(session);
      this.opts.metrics?.hsmSeconds.observe(Number(process.hrtime.bigint() - started) / 1e9);
      return sig;
    } catch (e) {
      throw this.fail(session, e);
    }
  }

  /**
   * Verifies a signature with the public key object whose CKA_ID is `keyId`, off the event loop.
   * Used where no native verifier is at hand in-process (P-256 over a raw digest).
   */
  async verify(
    keyId: Uint8Array,
    mechanism: pkcs11js.Mechanism,
    data: Uint8Array,
    signature: Uint8Array,
    lane: Lane = 'hot',
    deadline?: number,
  ): Promise<boolean> {
    const session = await this.acquire(lane, deadline);
    try {
      this.p11.C_VerifyInit(session, mechanism, this.objects.get(session, keyId, pkcs11js.CKO_PUBLIC_KEY));
      const op = this.p11.C_VerifyAsync(session, Buffer.from(data), Buffer.from(signature));
      const ok = await this.calls.run(session, op);
      this.pool.release(session);
      return ok;
    } catch (e) {
      if (ckrCode(e) === pkcs11js.CKR_SIGNATURE_INVALID || ckrCode(e) === pkcs11js.CKR_SIGNATURE_LEN_RANGE) {
        this.pool.release(session);
        return false;
      }
      throw this.fail(session, e);
    }
  }

  /**
   * Runs a key-management step (generation, lookup, attribute reads) with a session of its own,
   * one step at a time across the process. A step that outlives the call deadline fails for its
   * caller, but the next step still waits for it to end: generation is never run concurrently.
   */
  manage<T>(fn: (session: Handle) => T | Promise<T>): Promise<T> {
    let ended: Promise<unknown> = Promise.resolve();
    const run = () => this.run('hot', fn, undefined, (op) => (ended = op));
    const result = this.mgmt.then(run, run);
    this.mgmt = result
      .then(
        () => ended,
        () => ended,
      )
      .catch(() => undefined);
    return result;
  }

  /**
   * Runs a short operation on a pooled session of `lane` (an encrypt, a decrypt), with the same
   * failure handling and deadlines as `sign`: the session is released on success or on a request
   * error, and re-opened or the token marked down when the session or token failed. `fn` MUST
   * finish its PKCS#11 operation before its promise settles: the session goes back to the pool
   * straight after.
   */
  withSession<T>(lane: Lane, fn: (session: Handle) => Promise<T> | T, deadline?: number): Promise<T> {
    return this.run(lane, fn, deadline);
  }

  /**
   * The token object of class `cls` (CKO_*) whose CKA_ID is `keyId`, through the handle cache;
   * call with a session held by `withSession` or `manage`. Throws unless exactly one matches.
   */
  objectHandle(session: Handle, keyId: Uint8Array, cls: number): Handle {
    return this.objects.get(session, keyId, cls);
  }

  /** Drains in-flight operations (a suspect call included), closes sessions, finalises the module. */
  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.recovering);
    this.pool.rejectWaiters(new SignerError('HSM_UNAVAILABLE', 'the signer is shutting down'));
    await this.mgmt.catch(() => undefined);
    while (this.pool.inUse > 0) await new Promise((r) => setTimeout(r, 5));
    for (const s of this.pool.takeIdle()) this.tryClose(s);
    tryFinalize(this.p11);
  }

  private async run<T>(
    lane: Lane,
    fn: (session: Handle) => Promise<T> | T,
    deadline?: number,
    started?: (op: Promise<T>) => void,
  ): Promise<T> {
    const session = await this.acquire(lane, deadline);
    try {
      const op = Promise.resolve(fn(session));
      started?.(op);
      const out = await this.calls.run(session, op);
      this.pool.release(session);
      return out;
    } catch (e) {
      throw this.fail(session, e);
    }
  }

  /**
   * A session of `lane` within the lane's wait limit, or sooner when the caller's `deadline`
   * (epoch ms) comes first; after that the caller gets UNAVAILABLE with a retry delay.
   */
  private acquire(lane: Lane, deadline?: number): Promise<Handle> {
    if (!this.healthy) return Promise.reject(this.downError());
    const left = deadline === undefined ? Infinity : Math.floor(deadline - Date.now());
    return this.pool.acquire(lane, Math.min(this.waitMs[lane], left));
  }

  private downError(): SignerError {
    if (this.blocked) {
      const message = `the HSM refused the signer's PIN (${this.blocked}); an operator must act`;
      return new SignerError('HSM_UNAVAILABLE', message, { ckr: this.blocked });
    }
    const message = 'the HSM token is unavailable; retry later';
    return new SignerError('HSM_UNAVAILABLE', message, {}, this.opts.recoveryIntervalMs);
  }

  /** Drops cached handles of a key whose objects were destroyed. */
  forget(keyId: Uint8Array): void {
    this.objects.forget(keyId);
  }

  /** Finds objects matching a template (call inside `manage` or with a held session). */
  find(session: Handle, template: pkcs11js.Template): Handle[] {
    return this.objects.find(session, template);
  }

  /**
   * Maps a failure to the caller's error and repairs the pool according to its class. A session
   * that went suspect belongs to its pending call, which repairs it when it returns.
   */
  private fail(session: Handle, e: unknown): unknown {
    if (this.calls.holds(session)) return e;
    const cls = classify(e);
    this.opts.metrics?.hsmErrors.inc({ ckr: ckrName(e), class: cls });
    if (cls === 'request') {
      this.pool.release(session);
      if (ckrCode(e) === undefined) return e;
      return new SignerError('HSM_ERROR', `the HSM refused the operation (${ckrName(e)})`, { ckr: ckrName(e) });
    }
    this.pool.discard();
    this.tryClose(session);
    if (isPinFailure(e)) {
      // The token dropped our login over the PIN itself: logging in again could only lock it.
      this.markDown(ckrName(e), true);
      return this.downError();
    }
    this.opts.log?.warn({ ckr: ckrName(e), class: cls }, 'HSM failure');
    if (cls === 'session') {
      try {
        this.pool.add(this.openSession());
      } catch {
        this.markDown(ckrName(e));
      }
    } else this.markDown(ckrName(e));
    const message = `the HSM failed (${ckrName(e)}); retry later`;
    return new SignerError('HSM_UNAVAILABLE', message, { ckr: ckrName(e) }, this.opts.recoveryIntervalMs);
  }

  private markDown(why: string, pinRefused = false): void {
    if (!this.healthy || this.closed) return;
    this.healthy = false;
    this.opts.metrics?.hsmUp.set(0);
    if (!pinRefused) this.opts.log?.error({ ckr: why }, 'HSM token unavailable; recovering');
    const message = `the HSM is unavailable (${why}); retry later`;
    this.pool.rejectWaiters(new SignerError('HSM_UNAVAILABLE', message, { ckr: why }, this.opts.recoveryIntervalMs));
    for (const s of this.pool.takeIdle()) this.tryClose(s);
    this.listeners.forEach((l) => l(false));
    if (pinRefused) this.block(why);
    else this.scheduleRecovery();
  }

  /** Stops recovery after a PIN failure: one log line, a metric, and no login until `retryLogin`. */
  private block(ckr: string): void {
    this.blocked = ckr;
    clearTimeout(this.recovering);
    this.opts.metrics?.hsmLoginBlocked.set(1);
    this.opts.log?.error({ ckr, pinFile: this.uri.pinFile, pid: process.pid }, pinAdvice(ckr, this.uri.pinFile));
  }

  private scheduleRecovery(): void {
    clearTimeout(this.recovering);
    this.recovering = setTimeout(() => this.recover(), this.opts.recoveryIntervalMs);
    this.recovering.unref();
  }

  /** One attempt to reconnect the token and log in; reschedules itself unless a PIN failure stops it. */
  private recover(): void {
    this.recovering = undefined;
    if (this.closed || this.healthy || this.blocked) return;
    // Sessions still running an operation (a suspect call too) must finish before the slot is reset.
    if (this.pool.inUse > 0) {
      this.scheduleRecovery();
      return;
    }
    for (const s of this.pool.takeIdle()) this.tryClose(s);
    try {
      if (this.slot) this.p11.C_CloseAllSessions(this.slot);
    } catch {
      // The slot may be gone; connect() finds it again.
    }
    try {
      this.connect();
      this.opts.log?.info('HSM token recovered');
      this.listeners.forEach((l) => l(true));
    } catch (e) {
      for (const s of this.pool.takeIdle()) this.tryClose(s);
      if (e instanceof PinRefusedError) {
        this.opts.metrics?.hsmErrors.inc({ ckr: e.ckr, class: 'login' });
        this.block(e.ckr);
        return;
      }
      this.opts.log?.warn({ ckr: ckrName(e) }, 'HSM still unavailable');
      this.scheduleRecovery();
    }
  }

  private connect(): void {
    this.objects.clear();
    this.slot = findSlot(this.p11, this.uri);
    const first = this.openSession();
    try {
      this.p11.C_Login(first, pkcs11js.CKU_USER, this.pin);
    } catch (e) {
      this.tryClose(first);
      if (isPinFailure(e)) throw new PinRefusedError(ckrName(e), this.uri.pinFile);
      if (classify(e) === 'token') throw new HsmStartError(`login to token failed: ${ckrName(e)}`);
      if (ckrName(e) !== 'CKR_USER_ALREADY_LOGGED_IN') throw e;
    }
    this.pool.add(first);
    for (let i = 1; i < this.opts.sessions; i++) this.pool.add(this.openSession());
    this.healthy = true;
    this.opts.metrics?.hsmUp.set(1);
  }

  private openSession(): Handle {
    return this.p11.C_OpenSession(this.slot!, pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION);
  }

  private tryClose(s: Handle): void {
    tryClose(this.p11, s);
  }
}
