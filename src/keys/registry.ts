import { status } from '@grpc/grpc-js';
import type { Algorithm } from '../config/schema.js';
import { SignerError, invalid, notFound } from '../errors.js';
import type { Hsm } from '../hsm/hsm.js';
import { generateKeyPair, readPublicKey } from '../hsm/keypair.js';
import type { Logger } from '../log.js';
import { KeyExistsError, type KeyRecord, type Store } from '../store/store.js';

const KEY_ID = /^[a-z0-9][a-z0-9._-]{0,63}$/;
/** Keys the service uses itself; clients can neither create nor sign with them. */
const SERVICE_KEY_ID = /^_[a-z0-9][a-z0-9._-]{0,62}$/;

/**
 * Key ids, versions and where each lives in the token. The store is the source of truth; this
 * holds a copy so the signing path never waits on the database to find a key.
 */
export class KeyRegistry {
  private keys = new Map<string, KeyRecord>();
  private timer: NodeJS.Timeout | undefined;
  /** load and create run one at a time, so a refresh never drops a key created meanwhile. */
  private serial: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly hsm: Hsm,
    private readonly store: Store,
    private readonly log?: Logger,
  ) {}

  /**
   * Loads keys from the store and checks each new one against the token: a key whose public key
   * in the token differs from the stored one is not served (a swapped or restored token).
   */
  load(): Promise<void> {
    return this.exclusive(() => this.reload());
  }

  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.serial.then(fn, fn);
    this.serial = run.catch(() => undefined);
    return run;
  }

  private async reload(): Promise<void> {
    const next = new Map<string, KeyRecord>();
    for (const k of await this.store.listKeys()) {
      if (k.state === 'destroyed') continue;
      const known = this.keys.get(k.keyId);
      if (known && known.version === k.version && Buffer.compare(Buffer.from(known.ckaId), Buffer.from(k.ckaId)) === 0) {
        next.set(k.keyId, k);
        continue;
      }
      let inToken: Uint8Array;
      try {
        inToken = await readPublicKey(this.hsm, k.algorithm, k.ckaId);
      } catch {
        this.log?.error({ keyId: k.keyId, version: k.version }, 'key missing from token; not served');
        continue;
      }
      if (Buffer.compare(Buffer.from(inToken), Buffer.from(k.publicKey)) !== 0) {
        this.log?.error({ keyId: k.keyId, version: k.version }, 'token public key differs from store; not served');
        continue;
      }
      next.set(k.keyId, k);
    }
    this.keys = next;
  }

  /** Reloads periodically, so keys created on another replica are served here too. */
  startRefresh(ms: number): void {
    this.timer = setInterval(() => this.load().catch((e) => this.log?.error({ err: e }, 'key refresh failed')), ms);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /**
   * The active version of a key; KEY_NOT_FOUND otherwise. Service keys (ids starting with "_",
   * which clients cannot create) are never returned here, so no client can sign with them.
   */
  get(keyId: string): KeyRecord {
    const k = keyId.startsWith('_') ? undefined : this.keys.get(keyId);
    if (!k) throw notFound('KEY_NOT_FOUND', `no key "${keyId}"`, { keyId });
    return k;
  }

  has(keyId: string): boolean {
    return !keyId.startsWith('_') && this.keys.has(keyId);
  }

  list(): KeyRecord[] {
    return [...this.keys.values()].filter((k) => !k.keyId.startsWith('_'));
  }

  /**
   * A key the service itself uses (the audit checkpoint key), created in the HSM on first use.
   * With replicas, the first to create it wins; the others load the winner's.
   */
  serviceKey(keyId: `_${string}`, algorithm: Algorithm): Promise<KeyRecord> {
    return this.exclusive(async () => {
      const have = this.keys.get(keyId);
      if (have) return have;
      try {
        return await this.generate(keyId, algorithm);
      } catch (e) {
        if ((e as SignerError).reason !== 'KEY_EXISTS') throw e;
        await this.reload();
        const k = this.keys.get(keyId);
        if (!k) throw e;
        return k;
      }
    });
  }

  /** Generates a new key inside the HSM and records it as version 1, active. */
  create(keyId: string, algorithm: Algorithm): Promise<KeyRecord> {
    if (!KEY_ID.test(keyId)) {
      return Promise.reject(invalid('REQUEST_INVALID', 'key_id must be 1..64 of [a-z0-9._-], starting with a letter or digit'));
    }
    return this.exclusive(() => this.generate(keyId, algorithm));
  }

  private async generate(keyId: string, algorithm: Algorithm): Promise<KeyRecord> {
    if (!KEY_ID.test(keyId) && !SERVICE_KEY_ID.test(keyId)) {
      throw invalid('REQUEST_INVALID', 'key_id must be 1..64 of [a-z0-9._-], starting with a letter or digit');
    }
    if (this.keys.has(keyId)) throw new SignerError(status.ALREADY_EXISTS, 'KEY_EXISTS', `key "${keyId}" exists`, { keyId });
    const generated = await generateKeyPair(this.hsm, algorithm, `${keyId}/v1`);
    const record: KeyRecord = {
      keyId,
      version: 1,
      algorithm,
      ckaId: generated.ckaId,
      publicKey: generated.publicKey,
      state: 'active',
      createdAt: new Date(),
    };
    try {
      await this.store.insertKey(record);
    } catch (e) {
      // Another replica won the race; the orphan token object is harmless but logged.
      if (e instanceof KeyExistsError) {
        this.log?.warn({ keyId }, 'key created concurrently; new token object left unused');
        throw new SignerError(status.ALREADY_EXISTS, 'KEY_EXISTS', `key "${keyId}" exists`, { keyId });
      }
      throw e;
    }
    this.keys.set(keyId, record);
    this.log?.info({ keyId, algorithm, version: 1 }, 'key created');
    return record;
  }
}
