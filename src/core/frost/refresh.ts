/**
 * Proactive share refresh, after frost-rs `keys::refresh`: the participants jointly share a random
 * polynomial whose constant term is zero and add it to the key's polynomial. The group key
 * (commitments[0]) and the threshold stay the same; every share and verifying share changes, so
 * shares stolen before a refresh cannot be combined with shares stolen after it.
 *
 * The constant term being zero is enforced by its absence: round one commits only to coefficients
 * 1..min-1. No proof of knowledge is needed (frost-rs has none either): there is no constant term
 * to bias the group key with, and shares that match a commitment at min-1 or more points already
 * require knowing its coefficients.
 */
import type { Identifier, Key, RNG, Signers } from '@noble/curves/abstract/frost.js';
import { equalBytes } from '@noble/curves/utils.js';
import { ParticipantFault } from './participant.js';
import {
  evaluateCommitment,
  type GroupPoint,
  identifierScalar,
  parseElement,
  parseScalar,
  type Suite,
} from './suites.js';

export { ParticipantFault };

/** Round one broadcast: commitments to coefficients 1..min-1 of the sender's zero polynomial. */
export interface RefreshRound1 {
  identifier: Identifier;
  commitment: Uint8Array[];
}

/**
 * A participant's private refresh state. It holds secret scalars: keep it in memory only, for
 * one refresh; `refreshRound2` and a successful `refreshFinish` erase what they have consumed.
 */
export interface RefreshSecret {
  identifier: Identifier;
  signers: Signers;
  /** Everyone taking part, sorted. Holders of the key left out of the refresh lose their share. */
  participants: Identifier[];
  /** The own round one broadcast, to spot a substituted copy in `refreshFinish`. */
  commitment: Uint8Array[];
  /** Coefficients 1..min-1 (scalar bytes); erased by `refreshRound2`. */
  coefficients?: Uint8Array[];
  /** Own polynomial at own identifier: set by round two, erased when `refreshFinish` succeeds. */
  ownEvaluation?: Uint8Array;
}

/**
 * Starts a refresh of the key `identifier` holds a share of. `participants` (including this one)
 * must be the same list for everyone and hold at least `signers.min` of the key's holders.
 */
export function refreshRound1(
  suite: Suite,
  identifier: Identifier,
  signers: Signers,
  participants: Identifier[],
  rng?: RNG,
): { public: RefreshRound1; secret: RefreshSecret } {
  const { min, max } = signers;
  if (!Number.isSafeInteger(min) || !Number.isSafeInteger(max) || min < 2 || min > max)
    throw new Error(`invalid threshold ${min}-of-${max}`);
  const sorted = sortParticipants(suite, participants);
  if (sorted.length < min || sorted.length > max)
    throw new Error(`a refresh needs ${min} to ${max} participants, got ${sorted.length}`);
  if (!sorted.includes(identifier)) throw new Error('own identifier is not among the participants');
  const { Fn, randomScalar } = suite.frost.utils;
  const coefficients = Array.from({ length: min - 1 }, () => randomScalar(rng));
  const commitment = coefficients.map((a) => suite.Point.BASE.multiply(Fn.fromBytes(a)).toBytes());
  return {
    public: { identifier, commitment: commitment.map((c) => c.slice()) },
    secret: { identifier, signers: { min, max }, participants: sorted, commitment, coefficients },
  };
}

/**
 * Evaluates this participant's zero polynomial for every other participant; send each entry to
 * its participant only, over an authenticated and encrypted channel. One call per refresh: the
 * coefficients are erased afterwards.
 */
export function refreshRound2(suite: Suite, secret: RefreshSecret): Record<Identifier, Uint8Array> {
  const { coefficients } = secret;
  if (!coefficients) throw new Error('refresh round two already ran');
  const { Fn } = suite.frost.utils;
  const a = coefficients.map((c) => Fn.fromBytes(c));
  const evaluate = (id: Identifier): Uint8Array => {
    const x = identifierScalar(suite, id);
    let sum = Fn.ZERO;
    let power = x;
    for (const coefficient of a) {
      sum = Fn.add(sum, Fn.mul(coefficient, power));
      power = Fn.mul(power, x);
    }
    return Fn.toBytes(sum);
  };
  const shares: Record<Identifier, Uint8Array> = {};
  for (const id of secret.participants) if (id !== secret.identifier) shares[id] = evaluate(id);
  secret.ownEvaluation = evaluate(secret.identifier);
  for (const c of coefficients) c.fill(0);
  delete secret.coefficients;
  return shares;
}

/**
 * Applies the refresh to `oldKey`. `round1` is every participant's broadcast (own included) and
 * `received` maps each other participant to the share it sent, keyed by the authenticated sender.
 * Throws `ParticipantFault` naming the participant whose package is missing, malformed or
 * inconsistent. The returned key has the same group key and threshold and passes noble
 * `validateSecret`; the old key MUST be replaced by it only once every participant has finished.
 */
export function refreshFinish(
  suite: Suite,
  secret: RefreshSecret,
  oldKey: Key,
  round1: RefreshRound1[],
  received: Record<Identifier, Uint8Array>,
): Key {
  const { ownEvaluation, participants, signers } = secret;
  if (!ownEvaluation) throw new Error('refresh round two has not run');
  const me = secret.identifier;
  const old = oldKey.public;
  if (oldKey.secret.identifier !== me) throw new Error('refresh state belongs to another share');
  if (old.signers.min !== signers.min || old.signers.max !== signers.max)
    throw new Error('refresh threshold differs from the key threshold');
  if (old.commitments.length !== signers.min) throw new Error('key has a malformed commitment');
  for (const id of participants)
    if (!(id in old.verifyingShares)) throw new ParticipantFault(id, 'holds no share of this key');

  const polynomials = collectRound1(suite, secret, round1);
  const { Fn } = suite.frost.utils;
  const myX = identifierScalar(suite, me);
  let share = Fn.add(Fn.fromBytes(oldKey.secret.signingShare), Fn.fromBytes(ownEvaluation));
  for (const id of Object.keys(received))
    if (id === me || !participants.includes(id))
      throw new ParticipantFault(id, 'sent a refresh share but is not another participant');
  for (const [id, commitment] of polynomials) {
    if (id === me) continue;
    const bytes = received[id];
    if (!bytes) throw new ParticipantFault(id, 'sent no refresh share');
    let part: bigint;
    try {
      part = parseScalar(suite, bytes);
    } catch {
      throw new ParticipantFault(id, 'refresh share is not a scalar');
    }
    if (!suite.Point.BASE.multiply(part).equals(evaluateCommitment(suite, commitment, myX)))
      throw new ParticipantFault(id, 'refresh share does not match its commitment');
    share = Fn.add(share, part);
  }

  // Everyone's zero polynomials summed, in the exponent: how far the key's polynomial moves.
  const delta = Array.from({ length: signers.min }, () => suite.Point.ZERO);
  for (const commitment of polynomials.values()) commitment.forEach((c, k) => (delta[k] = delta[k]!.add(c)));
  const commitments = old.commitments.map((c, k) =>
    k === 0 ? c.slice() : serialize(parseElement(suite, c).add(delta[k]!)),
  );
  const verifyingShares: Record<Identifier, Uint8Array<ArrayBuffer>> = {};
  for (const id of participants) {
    const moved = evaluateCommitment(suite, delta, identifierScalar(suite, id));
    verifyingShares[id] = serialize(parseElement(suite, old.verifyingShares[id]!).add(moved));
  }
  // noble types its byte outputs loosely (ArrayBufferLike); they are fresh arrays over an
  // ArrayBuffer, which is what the Key type (Uint8Array<ArrayBuffer>) asks for.
  const key: Key = {
    public: { signers: { min: signers.min, max: signers.max }, commitments, verifyingShares },
    secret: { identifier: me, signingShare: Fn.toBytes(share) as Uint8Array<ArrayBuffer> },
  };
  ownEvaluation.fill(0);
  delete secret.ownEvaluation;
  suite.frost.validateSecret(key.secret, key.public);
  return key;
}

function sortParticipants(suite: Suite, ids: Identifier[]): Identifier[] {
  const sorted = [...ids].sort((a, b) => {
    const x = identifierScalar(suite, a);
    const y = identifierScalar(suite, b);
    return x < y ? -1 : x > y ? 1 : 0;
  });
  for (let i = 1; i < sorted.length; i++)
    if (sorted[i] === sorted[i - 1]) throw new Error(`participant ${sorted[i]} listed twice`);
  return sorted;
}

/**
 * Checks the round one broadcasts (exactly one per participant, own copy unchanged, min-1 valid
 * elements each) and returns each sender's full commitment, identity in place of the zero constant.
 */
function collectRound1(suite: Suite, secret: RefreshSecret, round1: RefreshRound1[]): Map<Identifier, GroupPoint[]> {
  const polynomials = new Map<Identifier, GroupPoint[]>();
  for (const p of round1) {
    const id = p.identifier;
    if (!secret.participants.includes(id))
      throw new ParticipantFault(id, 'sent a refresh commitment but is not a participant');
    if (polynomials.has(id)) throw new ParticipantFault(id, 'sent two refresh commitments');
    if (p.commitment.length !== secret.signers.min - 1)
      throw new ParticipantFault(id, `expected ${secret.signers.min - 1} refresh commitments`);
    const own = id === secret.identifier;
    if (own && !p.commitment.every((c, k) => equalBytes(c, secret.commitment[k]!)))
      throw new Error('own refresh commitment was altered');
    let points: GroupPoint[];
    try {
      points = p.commitment.map((c) => parseElement(suite, c));
    } catch {
      throw new ParticipantFault(id, 'refresh commitment is not a valid group element');
    }
    polynomials.set(id, [suite.Point.ZERO, ...points]);
  }
  for (const id of secret.participants)
    if (!polynomials.has(id)) throw new ParticipantFault(id, 'sent no refresh commitment');
  return polynomials;
}

/** Serializes a sum of public points; the identity would be an unusable share, so refuse it. */
function serialize(p: GroupPoint): Uint8Array<ArrayBuffer> {
  if (p.is0()) throw new Error('refresh produced the identity element');
  return p.toBytes() as Uint8Array<ArrayBuffer>;
}
