import { readFileSync } from 'node:fs';
import pkcs11js from 'pkcs11js';
import { SignerError } from '../../core/errors.js';
import type { Metrics } from '../metrics.js';
import type { Logger } from '../log.js';
import { ckrCode, ckrName, classify } from './errors.js';
import { type Lane, SessionPool } from './pool.js';
import { parsePkcs11Uri, type Pkcs11Uri } from './uri.js';

type Handle = Buffer;
export type Pkcs11 = pkcs11js.PKCS11;

export interface HsmOptions {
  uri: string;
  sessions: number;
  recoveryIntervalMs: number;
  metrics?: Metrics;
  log?: Logger;
  /** Tests wrap the loaded module to inject failures (a token cannot be pulled out of SoftHSM). */
  wrapModule?: (p11: Pkcs11) => Pkcs11;
}

/** Why the HSM could not be opened at start; the message names the cause, never the PIN. */
export class HsmStartError extends Error {
  override name = 'HsmStartError';
}

const SIG_BUF = 128;

/**
 * One PKCS#11 token: the loaded module, a pool of logged-in sessions, and recovery when the
 * token or its sessions fail. Signing never blocks the event loop (C_SignAsync); key management
 * is serialised because SoftHSM 2.6 fails on concurrent key generation.
 */
export class Hsm {
  private readonly pool: SessionPool<Handle>;
  private readonly handles = new Map<string, Handle>();
  private slot: Handle | undefined;
  private healthy = false;
  private recovering: NodeJS.Timeout | undefined;
  private closed = false;
  private mgmt: Promise<unknown> = Promise.resolve();
  private listeners: Array<(up: boolean) => void> = [];

  private constructor(
    readonly p11: Pkcs11,
    private readonly uri: Pkcs11Uri,
    private readonly pin: string,
    private readonly opts: HsmOptions,
  ) {
    this.pool = new SessionPool(opts.metrics);
  }

  /** Loads the module, finds the token by label or serial, logs in and opens the pool. */
  static async open(opts: HsmOptions): Promise<Hsm> {
    let uri: Pkcs11Uri;
    try {
      uri = parsePkcs11Uri(opts.uri);
    } catch (e) {
      throw new HsmStartError(`hsm.uri: ${(e as Error).message}`);
    }
    if (!uri.pinFile) throw new HsmStartError('hsm.uri: pin-source=file:... is required');
    let pin: string;
    try {
      pin = readFileSync(uri.pinFile, 'utf8').trim();
    } catch (e) {
      throw new HsmStartError(`cannot read PIN file ${uri.pinFile}: ${(e as NodeJS.ErrnoException).code ?? 'error'}`);
    }
    const loaded = loadModule(uri);
    const p11 = opts.wrapModule ? opts.wrapModule(loaded) : loaded;
    const threads = Number(process.env.UV_THREADPOOL_SIZE ?? 4);
    if (opts.sessions > threads) {
      opts.log?.warn({ sessions: opts.sessions, threads }, 'more HSM sessions than libuv threads: the extra sessions stay idle');
    }
    const hsm = new Hsm(p11, uri, pin, opts);
    try {
      hsm.connect();
    } catch (e) {
      hsm.finalize();
      throw e instanceof HsmStartError ? e : new HsmStartError(`cannot open token: ${ckrName(e)}`);
    }
    return hsm;
  }

  get up(): boolean {
    return this.healthy;
  }

  get sessions(): { size: number; inUse: number } {
    return { size: this.pool.size, inUse: this.pool.inUse };
  }

  /** Called with the new state whenever the token goes down or comes back. */
  onHealthChange(cb: (up: boolean) => void): void {
    this.listeners.push(cb);
  }

  /**
   * Signs `data` with the private key whose CKA_ID is `keyId`. The session is held from
   * SignInit to the end of Sign. Failures are reported as UNAVAILABLE (token or session gone)
   * or rethrown for the caller to map.
   */
  async sign(keyId: Uint8Array, mechanism: pkcs11js.Mechanism, data: Uint8Array, lane: Lane = 'hot'): Promise<Buffer> {
    const session = await this.acquire(lane);
    const started = process.hrtime.bigint();
    try {
      this.p11.C_SignInit(session, mechanism, this.object(session, keyId, pkcs11js.CKO_PRIVATE_KEY));
      const sig = await this.p11.C_SignAsync(session, Buffer.from(data), Buffer.alloc(SIG_BUF));
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
  async verify(keyId: Uint8Array, mechanism: pkcs11js.Mechanism, data: Uint8Array, signature: Uint8Array, lane: Lane = 'hot'): Promise<boolean> {
    const session = await this.acquire(lane);
    try {
      this.p11.C_VerifyInit(session, mechanism, this.object(session, keyId, pkcs11js.CKO_PUBLIC_KEY));
      const ok = await this.p11.C_VerifyAsync(session, Buffer.from(data), Buffer.from(signature));
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
   * one step at a time across the process.
   */
  manage<T>(fn: (session: Handle) => T | Promise<T>): Promise<T> {
    const run = () => this.withSession('hot', fn);
    const result = this.mgmt.then(run, run);
    this.mgmt = result.catch(() => undefined);
    return result;
  }

  /**
   * Runs a short operation on a pooled session of `lane` (an encrypt, a decrypt), with the same
   * failure handling as `sign`: the session is released on success or on a request error, and
   * re-opened or the token marked down when the session or token failed. `fn` MUST finish its
   * PKCS#11 operation before it returns: the session goes back to the pool straight after.
   */
  async withSession<T>(lane: Lane, fn: (session: Handle) => Promise<T> | T): Promise<T> {
    const session = await this.acquire(lane);
    try {
      const out = await fn(session);
      this.pool.release(session);
      return out;
    } catch (e) {
      throw this.fail(session, e);
    }
  }

  /**
   * The token object of class `cls` (CKO_*) whose CKA_ID is `keyId`, through the handle cache;
   * call with a session held by `withSession` or `manage`. Throws unless exactly one matches.
   */
  objectHandle(session: Handle, keyId: Uint8Array, cls: number): Handle {
    return this.object(session, keyId, cls);
  }

  /** Drains in-flight operations, closes sessions and finalises the module. */
  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.recovering);
    this.pool.rejectWaiters(new SignerError('HSM_UNAVAILABLE', 'the signer is shutting down'));
    await this.mgmt.catch(() => undefined);
    while (this.pool.inUse > 0) await new Promise((r) => setTimeout(r, 5));
    for (const s of this.pool.takeIdle()) this.tryClose(s);
    this.finalize();
  }

  private async acquire(lane: Lane): Promise<Handle> {
    if (!this.healthy) throw new SignerError('HSM_UNAVAILABLE', 'the HSM token is unavailable; retry later');
    return this.pool.acquire(lane);
  }

  /** The token object of a class with this CKA_ID; handles are cached until the token resets. */
  private object(session: Handle, keyId: Uint8Array, cls: number): Handle {
    const k = `${cls}:${Buffer.from(keyId).toString('hex')}`;
    let h = this.handles.get(k);
    if (!h) {
      const found = this.find(session, [
        { type: pkcs11js.CKA_CLASS, value: cls },
        { type: pkcs11js.CKA_ID, value: Buffer.from(keyId) },
      ]);
      if (found.length !== 1) throw new Error(`expected one key object with that CKA_ID, found ${found.length}`);
      h = found[0]!;
      this.handles.set(k, h);
    }
    return h;
  }

  /** Drops cached handles of a key whose objects were destroyed. */
  forget(keyId: Uint8Array): void {
    const hex = Buffer.from(keyId).toString('hex');
    for (const k of [...this.handles.keys()]) if (k.endsWith(`:${hex}`)) this.handles.delete(k);
  }

  /** Finds objects matching a template (call inside `manage` or with a held session). */
  find(session: Handle, template: pkcs11js.Template): Handle[] {
    this.p11.C_FindObjectsInit(session, template);
    try {
      return this.p11.C_FindObjects(session, 64);
    } finally {
      this.p11.C_FindObjectsFinal(session);
    }
  }

  /** Maps a failure to the caller's error and repairs the pool according to its class. */
  private fail(session: Handle, e: unknown): unknown {
    const cls = classify(e);
    this.opts.metrics?.hsmErrors.inc({ ckr: ckrName(e), class: cls });
    if (cls === 'request') {
      this.pool.release(session);
      if (ckrCode(e) === undefined) return e;
      return new SignerError('HSM_ERROR', `the HSM refused the operation (${ckrName(e)})`, { ckr: ckrName(e) });
    }
    this.pool.discard();
    this.tryClose(session);
    this.opts.log?.warn({ ckr: ckrName(e), class: cls }, 'HSM failure');
    if (cls === 'session') {
      try {
        this.pool.add(this.openSession());
      } catch {
        this.markDown(ckrName(e));
      }
    } else this.markDown(ckrName(e));
    return new SignerError('HSM_UNAVAILABLE', `the HSM failed (${ckrName(e)}); retry later`, { ckr: ckrName(e) });
  }

  private markDown(why: string): void {
    if (!this.healthy || this.closed) return;
    this.healthy = false;
    this.opts.metrics?.hsmUp.set(0);
    this.opts.log?.error({ ckr: why }, 'HSM token unavailable; recovering');
    this.pool.rejectWaiters(new SignerError('HSM_UNAVAILABLE', `the HSM is unavailable (${why}); retry later`, { ckr: why }));
    for (const s of this.pool.takeIdle()) this.tryClose(s);
    this.listeners.forEach((l) => l(false));
    this.scheduleRecovery();
  }

  private scheduleRecovery(): void {
    this.recovering = setTimeout(() => {
      // Sessions still running an operation must finish before the slot is reset.
      if (this.pool.inUse > 0) return this.scheduleRecovery();
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
        this.opts.log?.warn({ ckr: ckrName(e) }, 'HSM still unavailable');
        this.scheduleRecovery();
      }
    }, this.opts.recoveryIntervalMs);
    this.recovering.unref();
  }

  private connect(): void {
    this.handles.clear();
    this.slot = this.findSlot();
    const first = this.openSession();
    try {
      this.p11.C_Login(first, pkcs11js.CKU_USER, this.pin);
    } catch (e) {
      this.tryClose(first);
      if (classify(e) === 'token' || ckrName(e).startsWith('CKR_PIN')) {
        throw new HsmStartError(`login to token failed: ${ckrName(e)}`);
      }
      if (ckrName(e) !== 'CKR_USER_ALREADY_LOGGED_IN') throw e;
    }
    this.pool.add(first);
    for (let i = 1; i < this.opts.sessions; i++) this.pool.add(this.openSession());
    this.healthy = true;
    this.opts.metrics?.hsmUp.set(1);
  }

  private findSlot(): Handle {
    const want = this.uri.token ? `label "${this.uri.token}"` : `serial "${this.uri.serial}"`;
    for (const slot of this.p11.C_GetSlotList(true)) {
      const info = this.p11.C_GetTokenInfo(slot);
      if (this.uri.token !== undefined && info.label.trim() !== this.uri.token) continue;
      if (this.uri.serial !== undefined && info.serialNumber.trim() !== this.uri.serial) continue;
      return slot;
    }
    throw new HsmStartError(`no initialised token with ${want}`);
  }

  private openSession(): Handle {
    return this.p11.C_OpenSession(this.slot!, pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION);
  }

  private tryClose(s: Handle): void {
    try {
      this.p11.C_CloseSession(s);
    } catch {
      // Already closed by the token.
    }
  }

  private finalize(): void {
    try {
      this.p11.C_Finalize();
    } catch {
      // Not initialised, or the module is already gone.
    }
  }
}

function loadModule(uri: Pkcs11Uri): Pkcs11 {
  if (!uri.modulePath) throw new HsmStartError('hsm.uri: module-path is required');
  const p11 = new pkcs11js.PKCS11();
  try {
    p11.load(uri.modulePath);
  } catch (e) {
    throw new HsmStartError(`cannot load PKCS#11 module ${uri.modulePath}: ${(e as Error).message}`);
  }
  try {
    // OS locking: without it SoftHSM2 corrupts memory under concurrent C_SignAsync.
    p11.C_Initialize({ flags: pkcs11js.CKF_OS_LOCKING_OK });
  } catch (e) {
    throw new HsmStartError(`C_Initialize failed: ${ckrName(e)}`);
  }
  return p11;
}
