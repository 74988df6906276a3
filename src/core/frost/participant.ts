import type {
  FrostPublic,
  FrostSecret,
  GenNonce,
  Identifier,
  Key,
  NonceCommitments,
  Nonces,
  RNG,
} from '@noble/curves/abstract/frost.js';
import { bytesToHex, concatBytes, hexToBytes } from '@noble/curves/utils.js';
import { z } from 'zod';
import { frostBackend } from './backend.js';
import * as native from './native-frost.js';
import { evaluateCommitment, identifierScalar, parseElement, parseScalar, type Suite } from './suites.js';

export type { Key };

/**
 * Another participant broke the protocol (bad proof, share that does not match its commitment,
 * malformed or missing package). `participant` is who to blame; the message never carries a
 * secret, only the identifier and what was wrong.
 */
export class ParticipantFault extends Error {
  constructor(
    readonly participant: Identifier,
    why: string,
  ) {
    super(`participant ${participant}: ${why}`);
    this.name = 'ParticipantFault';
  }
}

/**
 * Round one of signing (RFC 9591 `commit`). The nonces are one-time-use, stay in this process's
 * memory (never on disk) and go to exactly one `signShare`; only `commitments` are sent.
 * `rng` is called twice for 32 bytes, hiding nonce first: nonce = H3(rng(32) || share).
 */
export function commit(suite: Suite, secret: FrostSecret, rng?: RNG): GenNonce {
  if (frostBackend() === 'native') return native.commit(suite.name, secret, rng);
  return suite.frost.commit(secret, rng);
}

/**
 * Checks a participant's commitment (hiding and binding points) when it arrives, before it is
 * pooled: throws for an element that is not valid. The native path remembers the checked
 * encodings, so signing with them later does not check them again.
 */
export function checkCommitment(suite: Suite, c: { hiding: Uint8Array; binding: Uint8Array }): void {
  if (frostBackend() === 'native') {
    native.validateElements(suite.name, [c.hiding, c.binding]);
    return;
  }
  parseElement(suite, c.hiding);
  parseElement(suite, c.binding);
}

/**
 * Round two of signing (RFC 9591 `sign`). `nonces` MUST be the ones behind this signer's entry in
 * `commitmentList`; they are consumed (zeroed in place) on success, so a second call with the same
 * package throws instead of leaking the share through nonce reuse.
 */
export function signShare(
  suite: Suite,
  key: Key,
  nonces: Nonces,
  commitmentList: NonceCommitments[],
  message: Uint8Array,
): Uint8Array {
  if (frostBackend() === 'native')
    return native.signShare(suite.name, key.secret, key.public, nonces, commitmentList, message);
  return suite.frost.signShare(key.secret, key.public, nonces, commitmentList, message);
}

/**
 * The coordinator's per-share check (RFC 9591 Section 5.4). A share that is not a canonical scalar
 * is reported as invalid, not thrown: it is the sender's fault, not the caller's.
 */
export function verifyShare(
  suite: Suite,
  pub: FrostPublic,
  commitmentList: NonceCommitments[],
  message: Uint8Array,
  identifier: Identifier,
  share: Uint8Array,
): boolean {
  try {
    parseScalar(suite, share);
  } catch {
    return false;
  }
  if (frostBackend() === 'native')
    return native.verifyShare(suite.name, pub, commitmentList, message, identifier, share);
  return suite.frost.verifyShare(pub, commitmentList, message, identifier, share);
}

/**
 * Sums the shares into the group signature (RFC 9591 `aggregate`) and checks the result with the
 * suite's independent verifier before returning it. An invalid share throws `ParticipantFault`
 * naming the first signer whose share fails `verifyShare` (call it per share to find them all).
 */
export function aggregate(
  suite: Suite,
  pub: FrostPublic,
  commitmentList: NonceCommitments[],
  message: Uint8Array,
  shares: Record<Identifier, Uint8Array>,
): Uint8Array {
  const chainKey = suite.chainPublicKey(pub);
  const independent = (signature: Uint8Array) => suite.verify(signature, message, chainKey);
  let signature: Uint8Array;
  try {
    // The native path checks the sum with the independent verifier only (noble checks it with
    // its own FROST verify first, then again below): one verification instead of two.
    if (frostBackend() === 'native') {
      const check = (sig: Uint8Array) => suite.hotVerify(sig, message, chainKey);
      return native.aggregate(suite.name, pub, commitmentList, message, shares, check);
    }
    signature = suite.frost.aggregate(pub, commitmentList, message, shares);
  } catch (err) {
    // noble's (unexported) aggregation error and native's AggregateFault list the signers whose
    // shares failed verifyShare.
    const cheaters = (err as { cheaters?: unknown }).cheaters;
    if (Array.isArray(cheaters) && typeof cheaters[0] === 'string')
      throw new ParticipantFault(cheaters[0], 'invalid signature share');
    throw err;
  }
  if (!independent(signature)) throw new Error('aggregate signature failed the independent verification');
  return signature;
}

/** `FrostPublic` as JSON: points and identifiers as lowercase hex. */
export interface PublicJson {
  signers: { min: number; max: number };
  commitments: string[];
  verifyingShares: Record<Identifier, string>;
}

const hex = z.string().regex(/^(?:[0-9a-f]{2})+$/, 'expected lowercase hex');
const publicJson = z
  .object({
    signers: z.object({ min: z.number().int(), max: z.number().int() }).strict(),
    commitments: z.array(hex),
    verifyingShares: z.record(z.string(), hex),
  })
  .strict();

/**
 * Canonical: verifying shares sorted by identifier, so every participant's package encodes to
 * the same text (each DKG output lists them in its own order) and packages compare as text.
 */
export function encodePublic(pub: FrostPublic): PublicJson {
  return {
    signers: { min: pub.signers.min, max: pub.signers.max },
    commitments: pub.commitments.map((c) => bytesToHex(c)),
    verifyingShares: Object.fromEntries(
      Object.entries(pub.verifyingShares)
        .sort(([a], [b]) => (a < b ? -1 : 1))
        .map(([id, p]) => [id, bytesToHex(p)]),
    ),
  };
}

/**
 * Parses and checks a public package: valid group elements, one commitment per coefficient, and
 * every verifying share equal to the commitment evaluated at its identifier, so a corrupted or
 * spliced package is refused before anyone signs with it.
 */
export function decodePublic(suite: Suite, json: unknown): FrostPublic {
  const p = publicJson.parse(json);
  const { min, max } = p.signers;
  if (min < 2 || min > max) throw new Error(`invalid threshold ${min}-of-${max}`);
  if (p.commitments.length !== min) throw new Error('expected one commitment per coefficient');
  const ids = Object.keys(p.verifyingShares);
  if (ids.length < min || ids.length > max) throw new Error('wrong number of verifying shares');
  const commitment = p.commitments.map((c) => parseElement(suite, hexToBytes(c)));
  for (const [id, share] of Object.entries(p.verifyingShares)) {
    const expected = evaluateCommitment(suite, commitment, identifierScalar(suite, id));
    if (!parseElement(suite, hexToBytes(share)).equals(expected))
      throw new Error(`verifying share of ${id} does not match the commitments`);
  }
  return {
    signers: { min, max },
    commitments: p.commitments.map((c) => hexToBytes(c)),
    verifyingShares: Object.fromEntries(ids.map((id) => [id, hexToBytes(p.verifyingShares[id]!)])),
  };
}

/**
 * The bytes to seal: identifier scalar || signing share, each `Fn.BYTES` long (64 bytes for both
 * suites). The caller MUST erase the returned array once it is sealed.
 */
export function encodeSecret(suite: Suite, secret: FrostSecret): Uint8Array {
  identifierScalar(suite, secret.identifier);
  parseScalar(suite, secret.signingShare);
  return concatBytes(hexToBytes(secret.identifier), secret.signingShare);
}

/**
 * Reverses `encodeSecret` and refuses a share that does not belong to `pub` (noble
 * `validateSecret`), so a share unsealed for the wrong key or suite is never used to sign.
 */
export function decodeSecret(suite: Suite, bytes: Uint8Array, pub: FrostPublic, validate = true): FrostSecret {
  const n = suite.frost.utils.Fn.BYTES;
  if (bytes.length !== 2 * n) throw new Error('invalid sealed share length');
  const identifier = bytesToHex(bytes.subarray(0, n));
  identifierScalar(suite, identifier);
  // A copy, not a view: callers erase the unsealed bytes (often a Buffer, whose slice is a view).
  const signingShare = Uint8Array.from(bytes.subarray(n));
  parseScalar(suite, signingShare);
  const secret = { identifier, signingShare };
  if (validate) suite.frost.validateSecret(secret, pub);
  return secret;
}
