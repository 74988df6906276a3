import type { FrostPublic, Key } from '@noble/curves/abstract/frost.js';
import { SignerError } from '../core/errors.js';
import { decodePublic, decodeSecret, encodePublic, encodeSecret } from '../core/frost/participant.js';
import { SUITES } from '../core/frost/suites.js';
import type { CeremonyParams } from '../core/frost/wire.js';
import type { Hsm } from '../infra/hsm/hsm.js';
import { SealError, seal, shareAad, unseal } from '../infra/hsm/seal.js';
import type { Logger } from '../infra/log.js';
import type { CosignerStore, ShareRow } from './store.js';

type Bound = Pick<ShareRow, 'keyId' | 'version' | 'epoch' | 'groupId'>;

/** The AES-GCM additional data of a sealed share: a row's ciphertext opens only as that row. */
const aad = (s: Bound) => shareAad(`${s.keyId}@v${s.version}#${s.epoch}`, s.groupId);

/** How long an unsealed signing share stays in memory after its last use. */
const OPEN_IDLE_MS = 30_000;

/** A share unsealed for signing, kept for the next signatures (`use`). */
interface Open {
  /** The row's ciphertext it came from: another ciphertext (a refresh, a restore) is another share. */
  sealed: Uint8Array;
  epoch: number;
  keyRef: string;
  key: Key;
  timer: NodeJS.Timeout;
}

/**
 * This cosigner's shares at rest: store rows sealed under the node's HSM AES key; at rest a share
 * exists only sealed. Ceremonies unseal a share for one call (`unseal`: the caller MUST erase
 * `secret.signingShare` when done). Signing (`use`) keeps the share it unsealed in memory for
 * the next signatures, in this process only, like the pooled nonces (which with one signature
 * give the share away): erased after OPEN_IDLE_MS without use, and at once when the share stops
 * signing here (`close`: refresh committed, destroy ordered or swept). Unsealing through the HSM
 * for every share was ~0.3 ms of the cosigner per share, half of it on the event loop.
 */
export class ShareVault {
  /** Shares unsealed for signing, by ceremony session. */
  private readonly open = new Map<string, Open>();

  /**
   * Share rows (by ceremony session) whose public package and share were checked at their first
   * unseal in this process: GCM authenticates the same share bytes every time after that, and
   * re-validating costs ~8 ms per Ed25519 share.
   */
  private readonly checked = new Map<string, FrostPublic>();

  constructor(private readonly o: { id: number; hsm: Hsm; sealKey: Uint8Array; store: CosignerStore; log: Logger }) {}

  /**
   * The share row that signs for a key version (still sealed). A share the quorum ordered
   * destroyed signs nothing from the order on (nor is it refreshed), until it is overwritten or
   * an admin cancels: every use of a share comes through here.
   */
  active(keyId: string, version: number): ShareRow {
    const scheduled = this.o.store.orders.of(keyId, version);
    if (scheduled) {
      throw new SignerError(
        'SHARE_DESTROY_SCHEDULED',
        `the share of ${keyId} v${version} is ordered destroyed (proposal ${scheduled.proposalId}) and no longer signs`,
        {
          keyId,
          cosigner: String(this.o.id),
          proposal: scheduled.proposalId,
          dueAt: scheduled.dueAt.toISOString(),
        },
      );
    }
    const row = this.o.store.active(keyId, version);
    if (!row) {
      throw new SignerError('SHARE_NOT_FOUND', `this cosigner holds no share of ${keyId} v${version}`, {
        keyId,
        cosigner: String(this.o.id),
      });
    }
    return row;
  }

  /** A share row's share, unsealed; the caller MUST erase `secret.signingShare` when done. */
  async unseal(row: ShareRow): Promise<Key> {
    const { keyId, version } = row;
    const suite = SUITES[row.algorithm];
    const known = this.checked.get(row.sessionId);
    const pub = known ?? decodePublic(suite, JSON.parse(row.publicPackage));
    let plain: Buffer;
    try {
      plain = await unseal(this.o.hsm, this.o.sealKey, row.sealed, aad(row));
    } catch (e) {
      if (e instanceof SealError) this.o.log.error({ keyId, version }, 'sealed share failed authentication');
      throw e;
    }
    try {
      const secret = decodeSecret(suite, plain, pub, !known);
      this.checked.set(row.sessionId, pub);
      return { public: pub, secret };
    } finally {
      plain.fill(0);
    }
  }

  /**
   * Runs `fn` with the row's share, unsealed at most once per OPEN_IDLE_MS of use. `fn` runs
   * synchronously and must not keep the key: it is erased by this vault, never by the caller.
   */
  async use<T>(row: ShareRow, fn: (key: Key) => T extends Promise<unknown> ? never : T): Promise<T> {
    let o = this.open.get(row.sessionId);
    if (!o || o.epoch !== row.epoch || !Buffer.from(o.sealed).equals(Buffer.from(row.sealed))) {
      const key = await this.unseal(row);
      // A share that stopped signing meanwhile (refresh, destroy order) is used once, not kept.
      const now = this.o.store.active(row.keyId, row.version);
      if (now?.sessionId !== row.sessionId || this.o.store.orders.of(row.keyId, row.version)) {
        try {
          return fn(key);
        } finally {
          key.secret.signingShare.fill(0);
        }
      }
      // Another call may have opened it meanwhile: keep ours, erase theirs (no one holds a key
      // across an await: `fn` is synchronous).
      this.closeOne(row.sessionId);
      o = {
        sealed: Uint8Array.from(row.sealed),
        epoch: row.epoch,
        keyRef: `${row.keyId}@v${row.version}`,
        key,
        timer: setTimeout(() => this.closeOne(row.sessionId), OPEN_IDLE_MS).unref(),
      };
      this.open.set(row.sessionId, o);
    } else o.timer.refresh();
    return fn(o.key);
  }

  /** Erases every unsealed share of a key version: it no longer signs here (or signs anew). */
  close(keyId: string, version: number): void {
    const ref = `${keyId}@v${version}`;
    for (const [session, o] of this.open) if (o.keyRef === ref) this.closeOne(session);
  }

  /** Erases every unsealed share (shutdown). */
  closeAll(): void {
    for (const session of [...this.open.keys()]) this.closeOne(session);
  }

  private closeOne(session: string): void {
    const o = this.open.get(session);
    if (!o) return;
    clearTimeout(o.timer);
    o.key.secret.signingShare.fill(0);
    this.open.delete(session);
  }

  /**
   * Seals a ceremony's new key as the pending share of its session (it signs only after Finish
   * commits it) and returns its public package as JSON. The caller still owns `key` and MUST
   * erase it.
   */
  async putPending(p: CeremonyParams, epoch: number, key: Key): Promise<string> {
    const plain = encodeSecret(SUITES[p.algorithm], key.secret);
    try {
      const bound = { keyId: p.keyId, version: p.version, epoch, groupId: p.groupId };
      const sealed = await seal(this.o.hsm, this.o.sealKey, plain, aad(bound));
      const publicPackage = JSON.stringify(encodePublic(key.public));
      const row = { ...bound, sessionId: p.sessionId, algorithm: p.algorithm, publicPackage, sealed };
      this.o.store.putPending(row, new Date());
      return publicPackage;
    } finally {
      plain.fill(0);
    }
  }
}
