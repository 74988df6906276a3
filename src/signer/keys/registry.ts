import { EventEmitter } from 'node:events';
import type { CancelSubject, DestroyOrder } from '../../core/admin/share-destroy.js';
import type { AuditDraft } from '../../core/audit/draft.js';
import { eventDraft } from '../../core/audit/draft.js';
import { SignerError } from '../../core/errors.js';
import { isThresholdAlgorithm, type ThresholdAlgorithm } from '../../core/frost/suites.js';
import type { Algorithm, HsmAlgorithm } from '../../infra/config/schema.js';
import type { Hsm } from '../../infra/hsm/hsm.js';
import { destroyPrivateKey, generateKeyPair, readPublicKey } from '../../infra/hsm/keypair.js';
import type { Logger } from '../../infra/log.js';
import { KeyExistsError, type KeyRecord, type KeyState, type Store } from '../../infra/store/store.js';
import type { Activate, Ceremonies } from '../threshold/ceremonies.js';
import type { CeremonyPlan } from '../threshold/plan.js';

const KEY_ID = /^[a-z0-9][a-z0-9._-]{0,63}$/;
/** Keys the service uses itself; clients can neither create nor sign with them. */
const SERVICE_KEY_ID = /^_[a-z0-9][a-z0-9._-]{0,62}$/;

const sameKey = (a: KeyRecord, b: KeyRecord) =>
  a.version === b.version && Buffer.compare(Buffer.from(a.ckaId), Buffer.from(b.ckaId)) === 0;

/**
 * Who asked for a key change, recorded in its audit entry: a client CN, a service role
 * ("scheduler", "rotation") or null for the service itself, and what the entry adds to say why
 * (the schedule that fired, the overlap that ended...).
 */
export interface Actor {
  client: string | null;
  context?: Record<string, string>;
}

/** The audit entry of a key change: who, which version, and the change's own facts. */
function keyEvent(
  kind: string,
  at: Date,
  by: Actor,
  k: { keyId: string; version: number },
  facts: Record<string, string> = {},
): AuditDraft {
  const intent = { ...facts, ...by.context };
  const fields = { keyId: k.keyId, keyVersion: k.version, ...(Object.keys(intent).length ? { intent } : {}) };
  return eventDraft(kind, at, by.client, fields);
}

/**
 * Key ids, their versions and states, and where each version lives in the token. The store is
 * the source of truth (shared by replicas); this holds a copy so the signing path never waits on
 * the database. Emits `change` with the key id whenever a key's versions or states change.
 * Every change is stored together with its audit entry (one store transaction): a change that
 * cannot be audited does not happen.
 *
 * Version states: active (signs; one per key), verify-only (public key served, signing refused
 * with KEY_VERSION_RETIRED except sweeps to the active address, ./sweep.ts), disabled (likewise,
 * after the overlap), destroyed (the private key object is gone from the token).
 */
export class KeyRegistry extends EventEmitter<{ change: [keyId: string] }> {
  private versions = new Map<string, KeyRecord[]>();
  private timer: NodeJS.Timeout | undefined;
  /** Loads and changes run one at a time, so a refresh never drops a change made meanwhile. */
  private serial: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly hsm: Hsm,
    private readonly store: Store,
    private readonly log?: Logger,
    /** DKG, refresh and share destruction on the cosigners, when threshold keys are configured. */
    private readonly ceremonies?: Ceremonies,
  ) {
    super();
  }

  /**
   * Loads keys from the store and checks each new version against the token: a version whose
   * public key in the token differs from the stored one is not served (a swapped token).
   */
  load(): Promise<void> {
    return this.exclusive(() => this.reload());
  }

  /** Reloads periodically, so changes made on another replica are served here too. */
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
    const k = this.clientVersions(keyId).find((v) => v.state === 'active');
    if (!k) throw new SignerError('KEY_NOT_FOUND', `no key "${keyId}" with an active version`, { keyId });
    return k;
  }

  /** A version to sign with: `0` means the active one; retired versions are refused. */
  forSigning(keyId: string, version: number): KeyRecord {
    if (version === 0) return this.get(keyId);
    const k = this.clientVersions(keyId).find((v) => v.version === version);
    if (!k || k.state === 'destroyed')
      throw new SignerError('KEY_VERSION_NOT_FOUND', `key "${keyId}" has no version ${version}`, { keyId });
    if (k.state !== 'active') {
      throw new SignerError(
        'KEY_VERSION_RETIRED',
        `key "${keyId}" version ${version} is ${k.state}; sign with the active version`,
        {
          keyId,
          version: String(version),
          state: k.state,
        },
      );
    }
    return k;
  }

  has(keyId: string): boolean {
    return this.clientVersions(keyId).length > 0;
  }

  /** Every version of every client key. */
  list(): KeyRecord[] {
    return [...this.versions.values()].flat().filter((k) => !k.keyId.startsWith('_'));
  }

  /** All versions of one client key, oldest first; KEY_NOT_FOUND when there are none. */
  history(keyId: string): KeyRecord[] {
    const list = this.clientVersions(keyId);
    if (!list.length) throw new SignerError('KEY_NOT_FOUND', `no key "${keyId}"`, { keyId });
    return list;
  }

  /** Generates a new key inside the HSM and records it as version 1, active. */
  create(keyId: string, algorithm: Algorithm, by: Actor): Promise<KeyRecord> {
    if (!KEY_ID.test(keyId)) {
      const message = 'key_id must be 1..64 of [a-z0-9._-], starting with a letter or digit';
      return Promise.reject(new SignerError('REQUEST_INVALID', message));
    }
    return this.exclusive(() => this.generate(keyId, algorithm, by));
  }

  /**
   * A key the service itself uses (the audit checkpoint key), created in the HSM on first use.
   * With replicas, the first to create it wins; the others load the winner's.
   */
  serviceKey(keyId: `_${string}`, algorithm: Algorithm): Promise<KeyRecord> {
    if (!SERVICE_KEY_ID.test(keyId)) return Promise.reject(new Error(`bad service key id ${keyId}`));
    return this.exclusive(async () => {
      const have = this.versions.get(keyId)?.find((v) => v.state === 'active');
      if (have) return have;
      try {
        return await this.generate(keyId, algorithm, { client: null });
      } catch (e) {
        if ((e as SignerError).reason !== 'KEY_EXISTS') throw e;
        await this.reload();
        const k = this.versions.get(keyId)?.find((v) => v.state === 'active');
        if (!k) throw e;
        return k;
      }
    });
  }

  /**
   * Rotates a key: generates the next version inside the HSM, then in one store transaction
   * makes it active and the previous one verify-only until `overlapMs` from now. Requests signed
   * before the switch keep their (old) version in their response; requests after it get the new.
   */
  rotate(
    keyId: string,
    overlapMs: number,
    by: Actor,
    now = new Date(),
  ): Promise<{ next: KeyRecord; previous: KeyRecord }> {
    return this.exclusive(async () => {
      await this.reload();
      const previous = this.get(keyId);
      const latest = Math.max(...this.history(keyId).map((v) => v.version));
      if (isThresholdAlgorithm(previous.algorithm)) {
        const r = { keyId, version: latest + 1, algorithm: previous.algorithm };
        const next = await this.thresholdVersion(r, { op: 'rotate', previousVersion: previous.version, overlapMs, by });
        this.log?.info({ keyId, from: previous.version, to: next.version }, 'key rotated');
        return { next, previous };
      }
      const next = await this.newVersion(keyId, latest + 1, previous.algorithm, now);
      const facts = { previousVersion: String(previous.version), overlapSeconds: String(Math.round(overlapMs / 1000)) };
      const audit = [keyEvent('key.rotate', now, by, next, facts)];
      try {
        await this.store.rotateKey(next, previous.version, new Date(now.getTime() + overlapMs), audit);
      } catch (e) {
        await this.discard(next);
        if (e instanceof KeyExistsError)
          throw new SignerError('KEY_ROTATION_CONFLICT', `key "${keyId}" was rotated concurrently; retry`, { keyId });
        throw e;
      }
      await this.reload();
      this.log?.info({ keyId, from: previous.version, to: next.version }, 'key rotated');
      return { next, previous };
    });
  }

  /** Disables a version: it stays listed with its public key, and nothing signs with it. */
  disable(keyId: string, version: number, by: Actor, now = new Date()): Promise<KeyRecord> {
    return this.transition(keyId, version, ['active', 'verify-only'], 'disabled', by, now);
  }

  /**
   * Destroys a disabled version's private key in the token (C_DestroyObject). Irreversible, so
   * the caller MUST confirm by naming the key id again; for an EVM key (secp256k1: its address
   * may hold funds) the caller MUST also confirm that the version was swept (`confirmSwept`),
   * and that confirmation is recorded in the destroy's audit entry. The signer cannot see
   * balances: the confirmation is the operator's word (README, "Sweeping a retired key").
   */
  destroy(
    keyId: string,
    version: number,
    confirmKeyId: string,
    by: Actor,
    now = new Date(),
    confirmSwept = false,
    /** The approved proposal, forwarded to the cosigners of a threshold key (they check it). */
    order?: DestroyOrder,
  ): Promise<KeyRecord> {
    if (confirmKeyId !== keyId) {
      return Promise.reject(
        new SignerError('CONFIRMATION_REQUIRED', `destroying a key version needs confirm_key_id = "${keyId}"`, {
          keyId,
        }),
      );
    }
    return this.exclusive(async () => {
      const k = this.history(keyId).find((v) => v.version === version);
      if (!k) throw new SignerError('KEY_VERSION_NOT_FOUND', `key "${keyId}" has no version ${version}`, { keyId });
      if (k.state !== 'disabled') {
        throw new SignerError(
          'KEY_STATE_INVALID',
          `only a disabled version can be destroyed; v${version} is ${k.state}`,
          { keyId },
        );
      }
      const evm = k.algorithm === 'ecdsa-secp256k1';
      if (evm && !confirmSwept) {
        throw new SignerError(
          'CONFIRMATION_REQUIRED',
          `v${version} of EVM key "${keyId}" may still hold funds: sweep it to the active address, then destroy with confirm_swept`,
          { keyId, version: String(version), confirm: 'confirm_swept' },
        );
      }
      const facts: Record<string, string> = evm ? { confirmedSwept: 'true' } : {};
      if (k.threshold) {
        // The cosigners destroy a share only on the admin quorum's order, which they check themselves.
        if (!order)
          throw new SignerError(
            'QUORUM_REQUIRED',
            `destroying threshold key "${keyId}" v${version} needs the admin quorum's order (config admins, ProposeDestroyKeyVersion)`,
            { keyId },
          );
        facts.sharesDueAt = await this.requireCeremonies().destroys.destroy(k, order);
      } else await destroyPrivateKey(this.hsm, k.ckaId);
      return this.markState(k, ['disabled'], 'destroyed', by, now, facts);
    });
  }

  /**
   * Forwards an admin's signed cancel of a threshold version's scheduled share destruction. When
   * every cosigner restored its share, a version this signer marked `destroyed` goes back to the
   * state it was destroyed from (`disabled`), committed with the cancel's result entry. Serial
   * with `destroy`, so a cancel never lands between the cosigners' acceptance and the marking.
   */
  cancelShareDestroy(c: CancelSubject & { admin: string; signature: Uint8Array }, by: string): Promise<string[]> {
    return this.exclusive(async () => {
      await this.reload();
      const k = this.history(c.keyId).find((v) => v.version === c.version);
      if (!k?.threshold)
        throw new SignerError('KEY_VERSION_NOT_FOUND', `no threshold key "${c.keyId}" v${c.version}`, {
          keyId: c.keyId,
        });
      // `destroy` moves only a disabled version, so that is the state a cancel gives back.
      const restore =
        k.state === 'destroyed'
          ? (audit: AuditDraft[], at: Date) =>
              this.store.setKeyState(k.keyId, k.version, ['destroyed'], 'disabled', at, audit)
          : undefined;
      try {
        return await this.requireCeremonies().destroys.cancel(k, c, by, restore);
      } finally {
        await this.reload();
      }
    });
  }

  /**
   * Re-randomises the cosigners' shares of a threshold key's active version; the public key and
   * address stay. The new public package is stored before any cosigner drops its old share.
   */
  refreshShares(keyId: string, by: Actor): Promise<KeyRecord> {
    return this.exclusive(async () => {
      // An interrupted ceremony of this key is finished or undone first (the caller holds its job lock).
      await this.requireCeremonies().recover(this.activate, keyId);
      await this.reload();
      const k = this.get(keyId);
      if (!k.threshold)
        throw new SignerError('KEY_STATE_INVALID', `key "${keyId}" is not a threshold key; rotate it instead`, {
          keyId,
        });
      await this.requireCeremonies().refresh(k, by, this.activate);
      await this.reload();
      return this.get(keyId);
    });
  }

  /**
   * At start (and when asked): finishes or undoes the threshold ceremonies a crash interrupted,
   * each under its key's job lock, so a replica never settles a ceremony another is running.
   * Never throws: a ceremony that cannot be settled now is logged and tried again next time.
   */
  async recoverCeremonies(jobs: Pick<Store, 'withJobLock'> = this.store): Promise<void> {
    if (!this.ceremonies) return;
    let keyIds: Set<string>;
    try {
      keyIds = new Set((await this.store.listCeremonies()).map((c) => c.keyId));
    } catch (e) {
      this.log?.error({ err: (e as Error).message }, 'stored threshold ceremonies could not be read');
      return;
    }
    for (const keyId of keyIds) {
      try {
        const run = () =>
          this.exclusive(async () => {
            await this.requireCeremonies().recover(this.activate, keyId);
            await this.reload();
          });
        // Another replica holding the lock is running (or settling) this key's ceremony itself.
        await jobs.withJobLock(`rotate:${keyId}`, run);
      } catch (e) {
        this.log?.error({ keyId, err: (e as Error).message }, 'an interrupted threshold ceremony could not be settled');
      }
    }
  }

  /**
   * A new threshold key version by DKG, activated (with its audit entry) only once every
   * cosigner committed its share. An interrupted ceremony of the key is settled first.
   */
  private async thresholdVersion(
    r: { keyId: string; version: number; algorithm: ThresholdAlgorithm },
    intent: Pick<CeremonyPlan, 'op' | 'previousVersion' | 'overlapMs' | 'by'>,
  ): Promise<KeyRecord> {
    const ceremonies = this.requireCeremonies();
    await ceremonies.recover(this.activate, r.keyId);
    await this.reload();
    if (this.versions.get(r.keyId)?.some((v) => v.version >= r.version)) {
      // The ceremony just finished made this version: the caller's view is stale.
      const why = `key "${r.keyId}" changed while an interrupted ceremony was finished; retry`;
      throw new SignerError('KEY_ROTATION_CONFLICT', why, { keyId: r.keyId });
    }
    await ceremonies.generate(r, intent, this.activate);
    await this.reload();
    const k = this.versions.get(r.keyId)?.find((v) => v.version === r.version);
    if (!k) throw new Error(`key ${r.keyId} v${r.version} was activated but is not served`);
    this.log?.info({ keyId: r.keyId, algorithm: r.algorithm, version: r.version }, 'threshold key version created');
    return k;
  }

  /** A ceremony's outcome, its audit entry and the ceremony's removal: one store transaction. */
  private readonly activate: Activate = async (change, sessionId, by, resumed) => {
    const now = new Date();
    const facts = { sessionId, ...(resumed ? { resumed: 'true' } : {}) };
    if (change.op === 'refresh') {
      const k = { keyId: change.keyId, version: change.version };
      const audit = [keyEvent('key.refresh', now, by, k, { ...facts, epoch: String(change.info.epoch) })];
      return this.store.updateThreshold(change.keyId, change.version, change.info, audit, sessionId);
    }
    const k = change.record;
    if (change.op === 'create') {
      const audit = [keyEvent('key.create', now, by, k, { ...facts, algorithm: k.algorithm })];
      return this.store.insertKey(k, audit, sessionId);
    }
    const overlapSeconds = String(Math.round((change.retireAt.getTime() - now.getTime()) / 1000));
    const rotated = { ...facts, previousVersion: String(change.previousVersion), overlapSeconds };
    const audit = [keyEvent('key.rotate', now, by, k, rotated)];
    return this.store.rotateKey(k, change.previousVersion, change.retireAt, audit, sessionId);
  };

  /**
   * Disables verify-only versions whose overlap has ended; idempotent across replicas (the
   * entries say "rotation": the overlap a rotation set has ended).
   */
  retireDue(now = new Date()): Promise<KeyRecord[]> {
    const due = this.list().filter((k) => k.state === 'verify-only' && k.retireAt !== null && k.retireAt <= now);
    const by: Actor = { client: 'rotation', context: { why: 'overlap ended' } };
    // Another replica may retire the same version first; only this replica's changes count.
    const retire = (k: KeyRecord) =>
      this.transition(k.keyId, k.version, ['verify-only'], 'disabled', by, now).catch((e) => {
        const lost = (e as SignerError).reason === 'KEY_STATE_INVALID';
        if (!lost) this.log?.warn({ err: e, keyId: k.keyId }, 'retiring a version failed');
        return undefined;
      });
    return Promise.all(due.map(retire)).then((done) => done.filter((k): k is KeyRecord => k !== undefined));
  }

  private transition(
    keyId: string,
    version: number,
    from: KeyState[],
    to: KeyState,
    by: Actor,
    now: Date,
  ): Promise<KeyRecord> {
    return this.exclusive(async () => {
      const k = this.history(keyId).find((v) => v.version === version);
      if (!k) throw new SignerError('KEY_VERSION_NOT_FOUND', `key "${keyId}" has no version ${version}`, { keyId });
      return this.markState(k, from, to, by, now);
    });
  }

  private async markState(
    k: KeyRecord,
    from: KeyState[],
    to: KeyState,
    by: Actor,
    now: Date,
    facts: Record<string, string> = {},
  ): Promise<KeyRecord> {
    const kind = to === 'destroyed' ? 'key.destroy' : 'key.disable';
    const audit = [keyEvent(kind, now, by, k, facts)];
    if (!(await this.store.setKeyState(k.keyId, k.version, from, to, now, audit))) {
      await this.reload();
      throw new SignerError('KEY_STATE_INVALID', `key "${k.keyId}" v${k.version} cannot go from ${k.state} to ${to}`, {
        keyId: k.keyId,
      });
    }
    await this.reload();
    this.log?.info({ keyId: k.keyId, version: k.version, from: k.state, to }, 'key version state changed');
    return { ...k, state: to, stateChangedAt: now, retireAt: null };
  }

  private clientVersions(keyId: string): KeyRecord[] {
    return keyId.startsWith('_') ? [] : (this.versions.get(keyId) ?? []);
  }

  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.serial.then(fn, fn);
    this.serial = run.catch(() => undefined);
    return run;
  }

  private async reload(): Promise<void> {
    const known = new Map([...this.versions.values()].flat().map((k) => [`${k.keyId}/${k.version}`, k]));
    const next = new Map<string, KeyRecord[]>();
    for (const k of await this.store.listKeys()) {
      const before = known.get(`${k.keyId}/${k.version}`);
      if (!before || !sameKey(before, k)) {
        if (k.state !== 'destroyed' && !(await this.matchesToken(k))) continue;
      }
      next.set(k.keyId, [...(next.get(k.keyId) ?? []), k]);
    }
    const changed = new Set<string>();
    for (const id of new Set([...next.keys(), ...this.versions.keys()])) {
      const a = JSON.stringify((this.versions.get(id) ?? []).map((k) => [k.version, k.state]));
      const b = JSON.stringify((next.get(id) ?? []).map((k) => [k.version, k.state]));
      if (a !== b) changed.add(id);
    }
    this.versions = next;
    for (const id of changed) if (!id.startsWith('_')) this.emit('change', id);
  }

  private async matchesToken(k: KeyRecord): Promise<boolean> {
    // A threshold version lives on the cosigners; each checks its share against the public package.
    if (k.threshold) return true;
    let inToken: Uint8Array;
    try {
      inToken = await readPublicKey(this.hsm, k.algorithm as HsmAlgorithm, k.ckaId);
    } catch {
      this.log?.error({ keyId: k.keyId, version: k.version }, 'key missing from token; not served');
      return false;
    }
    if (Buffer.compare(Buffer.from(inToken), Buffer.from(k.publicKey)) !== 0) {
      this.log?.error({ keyId: k.keyId, version: k.version }, 'token public key differs from store; not served');
      return false;
    }
    return true;
  }

  private async generate(keyId: string, algorithm: Algorithm, by: Actor): Promise<KeyRecord> {
    if (this.versions.has(keyId)) throw new SignerError('KEY_EXISTS', `key "${keyId}" exists`, { keyId });
    if (isThresholdAlgorithm(algorithm))
      return this.thresholdVersion({ keyId, version: 1, algorithm }, { op: 'create', by });
    const now = new Date();
    const record = await this.newVersion(keyId, 1, algorithm, now);
    try {
      await this.store.insertKey(record, [keyEvent('key.create', now, by, record, { algorithm })]);
    } catch (e) {
      await this.discard(record);
      if (e instanceof KeyExistsError) throw new SignerError('KEY_EXISTS', `key "${keyId}" exists`, { keyId });
      throw e;
    }
    await this.reload();
    this.log?.info({ keyId, algorithm, version: 1 }, 'key created');
    return record;
  }

  /** Generates a version's key pair inside the HSM; the record is not stored yet. */
  private async newVersion(keyId: string, version: number, algorithm: HsmAlgorithm, now: Date): Promise<KeyRecord> {
    const base = {
      keyId,
      version,
      algorithm,
      state: 'active' as const,
      createdAt: now,
      stateChangedAt: now,
      retireAt: null,
    };
    const { ckaId, publicKey } = await generateKeyPair(this.hsm, algorithm, `${keyId}/v${version}`);
    return { ...base, ckaId, publicKey };
  }

  /**
   * Removes a generated key pair that lost a race to another replica. (A threshold version's
   * ceremony removes only the shares it made itself: Ceremonies.complete.)
   */
  private async discard(k: KeyRecord): Promise<void> {
    await destroyPrivateKey(this.hsm, k.ckaId, true).catch((e) =>
      this.log?.warn({ err: (e as Error).message }, 'could not remove an unused key'),
    );
  }

  private requireCeremonies(): Ceremonies {
    if (!this.ceremonies) {
      throw new SignerError(
        'THRESHOLD_NOT_CONFIGURED',
        'threshold keys need cosigners: set the threshold section of the config',
      );
    }
    return this.ceremonies;
  }
}
