import type * as grpc from '@grpc/grpc-js';
import { SignerError } from '../../core/errors.js';
import { ClientSlots } from '../../infra/grpc/client-slots.js';
import { toServiceError } from '../../infra/grpc/status.js';
import type { Logger } from '../../infra/log.js';
import type { KeyRegistry } from '../keys/registry.js';
import { keyToWire } from './convert.js';

type WatchCall = grpc.ServerWritableStream<unknown, unknown>;

/** How often open streams are checked for certificates that expired since the last check. */
export const REVALIDATE_MS = 1000;

interface Watcher {
  call: WatchCall;
  visible: (keyId: string) => boolean;
  /** Throws when the client may no longer hold the stream (its certificate revoked, unpinned, expired). */
  authorize: () => void;
  /** The certificate's notAfter: the periodic pass authorizes the stream again once it is past. */
  expiresAt: number;
  /** Keys that changed while the client was not reading: sent, as they are then, on drain. */
  pending: Set<string>;
  blocked: boolean;
}

/**
 * The open WatchKeys streams. Bounded three ways: streams per client (CLIENT_OVERLOADED past
 * the cap); memory per stream (a client that stops reading holds at most one write buffer plus
 * the set of key ids changed since, each sent once, as it is, when the client reads again);
 * and lifetime (`close` ends every stream with UNAVAILABLE, SHUTTING_DOWN, so a shutdown does
 * not wait on watchers and they reconnect elsewhere).
 *
 * A stream makes no calls after it opens, so the per-call certificate checks would never see a
 * revocation: `revalidate` runs each stream's authorization again (after every trust reload,
 * and every {@link REVALIDATE_MS} for expiries) and ends the streams it refuses with that
 * refusal (UNAUTHENTICATED, CERTIFICATE_REVOKED / CERTIFICATE_NOT_PINNED / CERTIFICATE_EXPIRED).
 */
export class KeyWatchers {
  private readonly open = new Set<Watcher>();
  private readonly slots: ClientSlots;
  private closing = false;

  private readonly sweep: NodeJS.Timeout;

  constructor(
    private readonly keys: KeyRegistry,
    maxPerClient: number,
    private readonly log?: Logger,
  ) {
    this.slots = new ClientSlots(maxPerClient, 'WatchKeys streams', 1000);
    // Certificates expire without a reload: a periodic pass ends their streams too (only
    // streams past their certificate's notAfter are checked, so the pass costs nothing else).
    this.sweep = setInterval(() => this.revalidate((w) => w.expiresAt < Date.now()), REVALIDATE_MS);
    this.sweep.unref();
    // One listener for all streams: a listener per stream would trip EventEmitter's leak warning.
    keys.on('change', (keyId) => {
      for (const w of this.open) this.send(w, keyId);
    });
  }

  /**
   * Serves one authorised stream: the versions of every key `visible` admits now, then each
   * change. Refuses (CLIENT_OVERLOADED, SHUTTING_DOWN) by ending the call with the error.
   */
  watch(
    call: WatchCall,
    client: string,
    visible: (keyId: string) => boolean,
    authorize: () => void,
    expiresAt = Infinity,
  ): void {
    let release: () => void;
    try {
      if (this.closing)
        throw new SignerError(
          'SHUTTING_DOWN',
          'the signer is stopping; watch another replica or retry later',
          {},
          1000,
        );
      release = this.slots.take(client);
    } catch (e) {
      call.emit('error', toServiceError(e, this.log));
      return;
    }
    const w: Watcher = { call, visible, authorize, expiresAt, pending: new Set(), blocked: false };
    const done = () => {
      this.open.delete(w);
      release();
    };
    for (const event of ['cancelled', 'close', 'finish', 'error']) call.once(event, done);
    this.open.add(w);
    for (const keyId of new Set(this.keys.list().map((k) => k.keyId))) this.send(w, keyId);
  }

  /** Streams open now (for tests and metrics). */
  get size(): number {
    return this.open.size;
  }

  /**
   * Authorizes every open stream again against the trust in force now; a stream refused is
   * ended with its refusal. Returns how many were ended.
   */
  revalidate(which: (w: Watcher) => boolean = () => true): number {
    let ended = 0;
    for (const w of [...this.open]) {
      if (!which(w)) continue;
      try {
        w.authorize();
      } catch (e) {
        this.open.delete(w);
        w.call.emit('error', toServiceError(e, this.log));
        ended++;
      }
    }
    if (ended) this.log?.warn({ ended }, 'WatchKeys streams ended: their clients may no longer use them');
    return ended;
  }

  /** Refuses new streams and ends the open ones with UNAVAILABLE, SHUTTING_DOWN. */
  close(): void {
    this.closing = true;
    clearInterval(this.sweep);
    const err = toServiceError(
      new SignerError('SHUTTING_DOWN', 'the signer is stopping; watch another replica or retry later', {}, 1000),
    );
    for (const w of [...this.open]) {
      this.open.delete(w);
      w.call.emit('error', err);
    }
  }

  private send(w: Watcher, keyId: string): void {
    if (!w.visible(keyId) || !this.keys.has(keyId)) return;
    if (w.blocked) {
      w.pending.add(keyId);
      return;
    }
    let room = true;
    for (const k of this.keys.history(keyId)) room = w.call.write(keyToWire(k)) && room;
    if (room) return;
    w.blocked = true;
    w.call.once('drain', () => {
      w.blocked = false;
      const ids = [...w.pending];
      w.pending.clear();
      for (const id of ids) if (this.open.has(w)) this.send(w, id);
    });
  }
}
