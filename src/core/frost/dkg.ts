/**
 * Distributed key generation: noble's DKG (frost-rs rounds) with cheater identification. noble
 * refuses a bad proof of knowledge or an inconsistent share but does not say whose it was, so these
 * wrappers find the participant and throw `ParticipantFault` naming it.
 */
import type {
  DKG_Round1,
  DKG_Round2,
  DKG_Secret,
  Identifier,
  Key,
  RNG,
  Signers,
} from '@noble/curves/abstract/frost.js';
import { bytesToHex } from '@noble/curves/utils.js';
import { ParticipantFault } from './participant.js';
import { evaluateCommitment, parseElement, parseScalar, type Suite } from './suites.js';

/**
 * Round one: a random polynomial, its commitment and a proof of knowledge of its constant term.
 * Broadcast `public`; `secret` holds the polynomial and MUST stay in memory, for this DKG only.
 */
export function dkgRound1(
  suite: Suite,
  identifier: Identifier,
  signers: Signers,
  rng?: RNG,
): { public: DKG_Round1; secret: DKG_Secret } {
  return suite.frost.DKG.round1(identifier, signers, undefined, rng);
}

/**
 * Round two: checks every other participant's broadcast and returns the share for each of them
 * (send each to its participant only, encrypted). Throws `ParticipantFault` for a bad proof of
 * knowledge, a wrong number of commitments, an invalid element or a duplicated identifier.
 */
export function dkgRound2(suite: Suite, secret: DKG_Secret, others: DKG_Round1[]): Record<Identifier, DKG_Round2> {
  const seen = new Set<Identifier>();
  const own = bytesToHex(suite.frost.utils.Fn.toBytes(secret.identifier));
  for (const p of others) {
    if (p.identifier === own) throw new ParticipantFault(p.identifier, 'uses our identifier');
    if (seen.has(p.identifier)) throw new ParticipantFault(p.identifier, 'sent two round1 packages');
    seen.add(p.identifier);
  }
  try {
    return suite.frost.DKG.round2(secret, others);
  } catch (err) {
    // noble throws before touching `secret`, so it can be retried once the culprit is excluded.
    const culprit = others.find((p) => !round1Acceptable(suite, secret.signers, p));
    if (culprit) throw new ParticipantFault(culprit.identifier, 'invalid round1 package');
    throw err;
  }
}

/**
 * Round three: checks each received share against its sender's round one commitment, then lets
 * noble combine them into this participant's key. Throws `ParticipantFault` naming a sender whose
 * share is missing or inconsistent. For frost-secp256k1-tr the key noble returns is already
 * tweaked as a BIP-341 key-path-only output key (empty merkle root).
 */
export function dkgRound3(suite: Suite, secret: DKG_Secret, round1: DKG_Round1[], round2: DKG_Round2[]): Key {
  const senders = new Map(round1.map((p) => [p.identifier, p]));
  const received = new Set<Identifier>();
  for (const r of round2) {
    const sender = senders.get(r.identifier);
    if (!sender) throw new ParticipantFault(r.identifier, 'sent a share but no round1 package');
    if (received.has(r.identifier)) throw new ParticipantFault(r.identifier, 'sent two shares');
    received.add(r.identifier);
    if (!shareMatches(suite, secret.identifier, sender.commitment, r.signingShare))
      throw new ParticipantFault(r.identifier, 'share does not match its round1 commitment');
  }
  for (const id of senders.keys()) if (!received.has(id)) throw new ParticipantFault(id, 'sent no round2 share');
  return suite.frost.DKG.round3(secret, round1, round2);
}

/** share * G == sum_k commitment[k] * x^k; false for anything malformed. */
function shareMatches(suite: Suite, x: bigint, commitment: Uint8Array[], share: Uint8Array): boolean {
  try {
    const points = commitment.map((c) => parseElement(suite, c));
    const expected = evaluateCommitment(suite, points, x);
    return suite.Point.BASE.multiply(parseScalar(suite, share)).equals(expected);
  } catch {
    return false;
  }
}

/**
 * Whether noble's round two accepts `p` on its own. noble's proof-of-knowledge check is the
 * reference, so instead of re-deriving its challenge hash we run its round two for a throwaway
 * participant against `p` plus packages generated here, which are valid by construction.
 */
function round1Acceptable(suite: Suite, signers: Signers, p: DKG_Round1): boolean {
  const { DKG, utils } = suite.frost;
  const freshId = (): Identifier => bytesToHex(utils.randomScalar());
  const probe = DKG.round1(freshId(), signers);
  const fillers = Array.from({ length: signers.max - 2 }, () => DKG.round1(freshId(), signers));
  try {
    DKG.round2(probe.secret, [p, ...fillers.map((f) => f.public)]);
    return true;
  } catch {
    return false;
  } finally {
    DKG.clean(probe.secret);
    for (const f of fillers) DKG.clean(f.secret);
  }
}
