import type { DKG_Round1, DKG_Secret, Identifier, Key } from '@noble/curves/abstract/frost.js';
import { bytesToHex } from '@noble/curves/utils.js';
import { dkgRound1, dkgRound2, dkgRound3 } from '../core/frost/dkg.js';
import { ParticipantFault } from '../core/frost/participant.js';
import {
  type RefreshRound1,
  type RefreshSecret,
  refreshFinish,
  refreshRound1,
  refreshRound2,
} from '../core/frost/refresh.js';
import type { Suite } from '../core/frost/suites.js';
import { openFrom, sealFor, TransportError, type TransportKey, transportKey } from '../core/frost/transport.js';
import {
  type CeremonyParams,
  decodeDkgRound1,
  decodeRefreshRound1,
  encodeDkgRound1,
  encodeRefreshRound1,
  type Round1Entry,
  type Round1Output,
  type SealedShare,
} from '../core/frost/wire.js';
import type { CosignerIdentity } from './identity.js';

/** Test-only misbehaviour of a cosigner; production code never sets it. */
export interface CeremonyFaults {
  badProof?: boolean;
  badShare?: boolean;
}

/**
 * One cosigner's side of a three-round ceremony: DKG (noble's rounds) or proactive refresh
 * (src/core/frost/refresh.ts). Round-2 shares leave encrypted to their receiver's transport key,
 * which each round-1 output carries signed by its cosigner's identity certificate, so the
 * coordinator that relays the rounds can neither read the shares nor substitute a key. Faults of other participants surface as
 * `ParticipantFault` naming the cosigner by id.
 */
export class Ceremony {
  readonly me: Identifier;
  private readonly transport: TransportKey = transportKey();
  private readonly ids: Map<number, Identifier>;
  private dkg?: DKG_Secret;
  private refresh?: RefreshSecret;
  private ownRound1 = '';
  private entries: Round1Entry[] = [];
  readonly startedAt = Date.now();

  constructor(
    readonly params: CeremonyParams,
    readonly cosignerId: number,
    private readonly suite: Suite,
    private readonly identity: CosignerIdentity,
    /** Refresh: the share being refreshed, unsealed for this ceremony only. */
    private readonly oldKey?: Key,
    private readonly faults: CeremonyFaults = {},
  ) {
    this.ids = new Map(params.participants.map((id) => [id, suite.frost.Identifier.fromNumber(id)]));
    this.me = this.ids.get(cosignerId)!;
  }

  private get signers() {
    return { min: this.params.minSigners, max: this.params.participants.length };
  }

  round1(): Round1Output {
    if (this.params.kind === 'dkg') {
      const r = dkgRound1(this.suite, this.me, this.signers);
      this.dkg = r.secret;
      if (this.faults.badProof) r.public.proofOfKnowledge[5]! ^= 1;
      this.ownRound1 = encodeDkgRound1(r.public);
    } else {
      const r = refreshRound1(this.suite, this.me, this.signers, [...this.ids.values()]);
      this.refresh = r.secret;
      this.ownRound1 = encodeRefreshRound1(r.public);
    }
    const transportKey = this.transport.publicKey;
    const signature = this.identity.sign(this.params, this.cosignerId, this.ownRound1, transportKey);
    return { package: this.ownRound1, transportKey, identityCert: this.identity.certPem, signature };
  }

  round2(entries: Round1Entry[]): SealedShare[] {
    this.entries = this.checkRound1(entries);
    const out: Record<Identifier, Uint8Array> = {};
    if (this.params.kind === 'dkg') {
      const others = this.others().map((e) => decodeDkgRound1(e.package, this.ids.get(e.cosignerId)!));
      for (const [id, p] of Object.entries(dkgRound2(this.suite, this.dkg!, others))) out[id] = p.signingShare;
    } else {
      this.others().forEach((e) => decodeRefreshRound1(e.package, this.ids.get(e.cosignerId)!));
      Object.assign(out, refreshRound2(this.suite, this.refresh!));
    }
    return this.others().map((e) => {
      const share = out[this.ids.get(e.cosignerId)!];
      if (!share) throw new Error(`no round2 share computed for cosigner ${e.cosignerId}`);
      if (this.faults.badShare) share[0]! ^= 1;
      const ciphertext = sealFor(
        this.transport,
        e.transportKey,
        this.params.sessionId,
        this.cosignerId,
        e.cosignerId,
        share,
      );
      share.fill(0);
      return { from: this.cosignerId, to: e.cosignerId, ciphertext };
    });
  }

  /** Round three: the new key of this cosigner (seal it, then wait for `finish`). */
  round3(shares: SealedShare[]): Key {
    const received: Record<Identifier, Uint8Array> = {};
    for (const e of this.others()) {
      const sender = this.ids.get(e.cosignerId)!;
      const s = shares.filter((x) => x.from === e.cosignerId && x.to === this.cosignerId);
      if (s.length !== 1) throw new ParticipantFault(sender, s.length ? 'sent two shares' : 'sent no share');
      try {
        received[sender] = openFrom(
          this.transport,
          e.transportKey,
          this.params.sessionId,
          e.cosignerId,
          this.cosignerId,
          s[0]!.ciphertext,
        );
      } catch (err) {
        if (err instanceof TransportError) throw new ParticipantFault(sender, 'share failed authentication');
        throw err;
      }
    }
    try {
      if (this.params.kind === 'dkg') {
        const round1: DKG_Round1[] = this.others().map((e) => decodeDkgRound1(e.package, this.ids.get(e.cosignerId)!));
        const round2 = Object.entries(received).map(([identifier, signingShare]) => ({
          identifier,
          signingShare: Uint8Array.from(signingShare),
        }));
        return dkgRound3(this.suite, this.dkg!, round1, round2);
      }
      const round1: RefreshRound1[] = this.entries.map((e) =>
        decodeRefreshRound1(e.package, this.ids.get(e.cosignerId)!),
      );
      return refreshFinish(this.suite, this.refresh!, this.oldKey!, round1, received);
    } finally {
      for (const v of Object.values(received)) v.fill(0);
    }
  }

  /** Erases the refreshed share held for this ceremony; round three is its last use. */
  erase(): void {
    this.oldKey?.secret.signingShare.fill(0);
  }

  /** The cosigner id behind a FROST identifier of this ceremony. */
  cosignerOf(identifier: Identifier): number | undefined {
    for (const [id, ident] of this.ids) if (ident === identifier) return id;
    return undefined;
  }

  private others(): Round1Entry[] {
    return this.entries.filter((e) => e.cosignerId !== this.cosignerId);
  }

  /** Everyone exactly once, and our own package as we sent it (the relay did not replace it). */
  private checkRound1(entries: Round1Entry[]): Round1Entry[] {
    const byId = new Map<number, Round1Entry>();
    for (const e of entries) {
      const ident = this.ids.get(e.cosignerId);
      if (!ident) throw new Error(`round1 entry from cosigner ${e.cosignerId}, who is not a participant`);
      if (byId.has(e.cosignerId)) throw new ParticipantFault(ident, 'two round1 entries');
      byId.set(e.cosignerId, e);
    }
    for (const [id, ident] of this.ids) if (!byId.has(id)) throw new ParticipantFault(ident, 'no round1 entry');
    for (const [id, e] of byId) {
      if (id === this.cosignerId) continue;
      const problem = this.identity.check(this.params, e);
      if (problem) throw new ParticipantFault(this.ids.get(id)!, problem);
    }
    const mine = byId.get(this.cosignerId)!;
    if (mine.package !== this.ownRound1 || bytesToHex(mine.transportKey) !== bytesToHex(this.transport.publicKey)) {
      throw new Error('our own round1 package was altered in transit');
    }
    return [...byId.values()].sort((a, b) => a.cosignerId - b.cosignerId);
  }
}
