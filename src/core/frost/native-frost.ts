/**
 * RFC 9591 signing (commit, signShare, verifyShare, aggregate) with native group operations
 * (native-group.ts), computing exactly what @noble/curves' `createFROST` computes for the same
 * suite, byte for byte: the RFC 9591 vectors and a differential test against noble on 10,000
 * random signings a suite run through this file (test/threshold-native-*.test.ts). DKG and refresh stay on
 * noble. Why it is faster than noble beyond the native arithmetic: a public package is decoded
 * and validated once per package (not on every call), a commitment once per process, and a
 * signer's own commitments are remembered from `commit` instead of recomputed.
 */
import type {
  FrostPublic,
  FrostSecret,
  GenNonce,
  Identifier,
  NonceCommitments,
  Nonces,
  RNG,
} from '@noble/curves/abstract/frost.js';
import { bytesToHex, concatBytes, equalBytes, hexToBytes, randomBytes } from '@noble/curves/utils.js';
import { hasEvenY, type Pt } from './native-group.js';
import { NATIVE_SUITES, type NativeSuite } from './native-suites.js';
import type { SuiteName } from './suites.js';

/** Aggregation failed; `cheaters` are the signers whose shares fail `verifyShare` (noble's AggErr). */
export class AggregateFault extends Error {
  constructor(
    readonly cheaters: Identifier[],
    why = 'aggregation failed',
  ) {
    super(why);
    this.name = 'AggregateFault';
  }
}

/** A public package as signing uses it, validated once: cached by its bytes and by object. */
interface Prepared {
  name: SuiteName;
  signers: { min: number; max: number };
  /** The group key as stored. */
  stored: Uint8Array;
  /** The group key as signing sees it: BIP340 suites lift it to even y. */
  groupKey: Uint8Array;
  /** Taproot: the stored group key has an odd y, so shares and verifying shares are negated. */
  negate: boolean;
  /** Verifying shares as stored (copies) ... */
  verifyingShares: Map<Identifier, Uint8Array>;
  /** ... and as verification uses them: parsed (and negated with the key) on first use. */
  shares: Map<Identifier, Uint8Array>;
}

const MAX_CACHED = 1024;
const prepared = new Map<string, Prepared>();
/** Encodings (suite-prefixed hex) already known to be valid group elements. */
const validPoints = new Set<string>();
/** A signer's own commitments, remembered by `commit` for the nonces it returned. */
const ownCommitments = new WeakMap<Nonces, NonceCommitments>();

const remember = <K, V>(cache: Map<K, V> | Set<K>, key: K, value?: V) => {
  // Bounded: a long-running process sees new packages and commitments forever.
  if (cache.size >= MAX_CACHED * 8) cache.clear();
  if (cache instanceof Map) cache.set(key, value as V);
  else cache.add(key);
};

/** Validates a public element once per process (validity is a function of the bytes alone). */
function parse(s: NativeSuite, name: SuiteName, bytes: Uint8Array): Uint8Array {
  const key = `${name}:${bytesToHex(bytes)}`;
  if (validPoints.has(key)) return bytes;
  s.group.parse(bytes);
  remember(validPoints, key);
  return bytes;
}

/**
 * Validates group elements received ahead of their use (a coordinator's pooled commitments), so
 * that the signing that uses them later finds them already checked.
 */
export function validateElements(name: SuiteName, points: Uint8Array[]): void {
  const s = NATIVE_SUITES[name];
  for (const p of points) parse(s, name, p);
}

function packageKey(name: SuiteName, pub: FrostPublic): string {
  const shares = Object.entries(pub.verifyingShares).map(([id, v]) => `${id}=${bytesToHex(v)}`);
  return `${name}/${pub.signers.min}/${pub.signers.max}/${pub.commitments.map(bytesToHex).join(',')}/${shares.join(',')}`;
}

/**
 * The same package object again skips even the encoding above: the coordinator and the cosigner
 * keep one decoded package per key version. Packages are never changed in place in this code;
 * the group key and threshold are still compared, so an object reused for another key is not
 * mistaken for the one prepared.
 */
const preparedByObject = new WeakMap<FrostPublic, Prepared>();

function prepare(name: SuiteName, pub: FrostPublic): Prepared {
  const known = preparedByObject.get(pub);
  if (known && known.name === name && unchanged(known, pub)) return known;
  const key = packageKey(name, pub);
  let p = prepared.get(key);
  if (!p) {
    const s = NATIVE_SUITES[name];
    const { min, max } = pub.signers;
    if (!Number.isSafeInteger(min) || !Number.isSafeInteger(max) || min < 2 || min > max)
      throw new Error('invalid signers');
    const stored = pub.commitments[0];
    if (!stored) throw new Error('public package has no group key');
    parse(s, name, stored);
    const negate = s.taproot && !hasEvenY(stored);
    p = {
      name,
      signers: { min, max },
      stored: stored.slice(),
      groupKey: negate ? s.group.bytes(s.group.neg(stored)) : stored.slice(),
      negate,
      verifyingShares: new Map(Object.entries(pub.verifyingShares).map(([id, v]) => [id, v.slice()])),
      shares: new Map(),
    };
    remember(prepared, key, p);
  }
  preparedByObject.set(pub, p);
  return p;
}

const unchanged = (p: Prepared, pub: FrostPublic) =>
  pub.signers.min === p.signers.min &&
  pub.signers.max === p.signers.max &&
  pub.commitments[0] !== undefined &&
  equalBytes(pub.commitments[0], p.stored);

function verifyingShare(p: Prepared, id: Identifier): Uint8Array {
  let share = p.shares.get(id);
  if (share) return share;
  const bytes = p.verifyingShares.get(id);
  if (!bytes) throw new Error(`no verifying share for ${id}`);
  const s = NATIVE_SUITES[p.name];
  parse(s, p.name, bytes);
  share = p.negate ? s.group.bytes(s.group.neg(bytes)) : bytes;
  p.shares.set(id, share);
  return share;
}

function identifier(s: NativeSuite, id: Identifier): bigint {
  const n = s.Fn.fromBytes(hexToBytes(id));
  if (s.Fn.is0(n) || bytesToHex(s.Fn.toBytes(n)) !== id) throw new Error(`invalid identifier ${id}`);
  return n;
}

interface GroupCommitment {
  R: Pt;
  rho: Map<Identifier, bigint>;
  ids: bigint[];
  /** Each listed signer's (hiding, binding) commitment, validated. */
  byId: Map<Identifier, [Uint8Array, Uint8Array]>;
}

/** RFC 9591 Sections 4.4 and 4.5: binding factors and the group commitment R. */
function groupCommitment(name: SuiteName, groupKey: Uint8Array, list: NonceCommitments[], msg: Uint8Array) {
  const s = NATIVE_SUITES[name];
  const { Fn, group } = s;
  const entries = list
    .map((c) => ({
      id: c.identifier,
      n: identifier(s, c.identifier),
      h: parse(s, name, c.hiding),
      b: parse(s, name, c.binding),
    }))
    .sort((a, b) => (a.n < b.n ? -1 : a.n > b.n ? 1 : 0));
  const encoded = concatBytes(...entries.flatMap((e) => [Fn.toBytes(e.n), e.h, e.b]));
  const prefix = concatBytes(groupKey, s.H4(msg), s.H5(encoded));
  const out: GroupCommitment = { R: null, rho: new Map(), ids: [], byId: new Map() };
  for (const e of entries) {
    const rho = s.H1(concatBytes(prefix, Fn.toBytes(e.n)));
    out.rho.set(e.id, rho);
    out.ids.push(e.n);
    out.byId.set(e.id, [e.h, e.b]);
    out.R = group.add(out.R, group.add(e.h, group.mul(e.b, Fn.toBytes(rho))));
  }
  return out;
}

/** RFC 9591 Section 4.2: the Lagrange coefficient of `x` over `all` (distinct, containing x). */
function lagrange(s: NativeSuite, all: bigint[], x: bigint): bigint {
  const { Fn } = s;
  if (new Set(all).size !== all.length || !all.includes(x)) throw new Error('invalid parameters');
  let num = Fn.ONE;
  let den = Fn.ONE;
  for (const xj of all) {
    if (xj === x) continue;
    num = Fn.mul(num, xj);
    den = Fn.mul(den, Fn.sub(xj, x));
  }
  return Fn.div(num, den);
}

const checkCount = (p: Prepared, n: number) => {
  if (n < p.signers.min || n > p.signers.max) throw new Error('wrong number of commitments');
};

/** Round one (noble `commit`): nonce = H3(rng(32) || share), hiding first. */
export function commit(name: SuiteName, secret: FrostSecret, rng: RNG = randomBytes): GenNonce {
  const s = NATIVE_SUITES[name];
  const share = s.Fn.toBytes(s.Fn.fromBytes(secret.signingShare));
  const hiding = s.Fn.toBytes(s.H3(concatBytes(rng(32), share)));
  const binding = s.Fn.toBytes(s.H3(concatBytes(rng(32), share)));
  const nonces = { hiding, binding } as Nonces;
  const commitments = {
    identifier: secret.identifier,
    hiding: s.group.bytes(s.group.base(hiding)),
    binding: s.group.bytes(s.group.base(binding)),
  } as NonceCommitments;
  // Made here from nonzero scalars: valid elements, so no later call needs to validate them.
  for (const c of [commitments.hiding, commitments.binding]) remember(validPoints, `${name}:${bytesToHex(c)}`);
  ownCommitments.set(nonces, commitments);
  return { nonces, commitments };
}

/** Round two (noble `signShare`); zeroes `nonces` on success. */
export function signShare(
  name: SuiteName,
  secret: FrostSecret,
  pub: FrostPublic,
  nonces: Nonces,
  list: NonceCommitments[],
  msg: Uint8Array,
): Uint8Array {
  const s = NATIVE_SUITES[name];
  const { Fn, group } = s;
  const p = prepare(name, pub);
  checkCount(p, list.length);
  let d = Fn.fromBytes(nonces.hiding);
  let e = Fn.fromBytes(nonces.binding);
  if (Fn.is0(d) || Fn.is0(e)) throw new Error('signing nonces already used');
  // The coordinator must have listed this signer's own commitments for these nonces.
  const own = ownCommitments.get(nonces) ?? {
    hiding: group.bytes(group.base(nonces.hiding)),
    binding: group.bytes(group.base(nonces.binding)),
  };
  const listed = list.find((c) => c.identifier === secret.identifier);
  if (!listed) throw new Error('missing signer commitment');
  if (!equalBytes(listed.hiding, own.hiding) || !equalBytes(listed.binding, own.binding))
    throw new Error('incorrect signer commitment');
  let sk = Fn.fromBytes(secret.signingShare);
  if (p.negate) sk = Fn.neg(sk);
  const gc = groupCommitment(name, p.groupKey, list, msg);
  const lambda = lagrange(s, gc.ids, identifier(s, secret.identifier));
  const c = s.challenge(group.bytes(gc.R), p.groupKey, msg);
  if (s.taproot && !hasEvenY(gc.R)) {
    d = Fn.neg(d);
    e = Fn.neg(e);
  }
  const z = Fn.add(Fn.add(d, Fn.mul(e, gc.rho.get(secret.identifier)!)), Fn.mul(Fn.mul(lambda, sk), c));
  nonces.hiding.fill(0);
  nonces.binding.fill(0);
  return Fn.toBytes(z);
}

/** The coordinator's check of one share (noble `verifyShare`, RFC 9591 Section 5.4). */
export function verifyShare(
  name: SuiteName,
  pub: FrostPublic,
  list: NonceCommitments[],
  msg: Uint8Array,
  id: Identifier,
  share: Uint8Array,
): boolean {
  const p = prepare(name, pub);
  return shareValid(name, p, groupCommitment(name, p.groupKey, list, msg), msg, id, share);
}

function shareValid(
  name: SuiteName,
  p: Prepared,
  gc: GroupCommitment,
  msg: Uint8Array,
  id: Identifier,
  share: Uint8Array,
) {
  const s = NATIVE_SUITES[name];
  const { Fn, group } = s;
  const mine = gc.byId.get(id);
  if (!mine) throw new Error('cannot find identifier commitment');
  const Y = verifyingShare(p, id);
  const lambda = lagrange(s, gc.ids, identifier(s, id));
  const c = s.challenge(group.bytes(gc.R), p.groupKey, msg);
  let commitment = group.add(mine[0], group.mul(mine[1], Fn.toBytes(gc.rho.get(id)!)));
  if (s.taproot && !hasEvenY(gc.R)) commitment = group.neg(commitment);
  const z = Fn.fromBytes(share);
  return group.eq(group.base(Fn.toBytes(z)), group.add(commitment, group.mul(Y, Fn.toBytes(Fn.mul(c, lambda)))));
}

/**
 * Sums the shares (noble `aggregate`, RFC 9591 Section 5.3). `verify` checks the result (the
 * caller's independent verifier); if it fails, or a share is not a scalar, `AggregateFault`
 * names every signer whose share fails `verifyShare`.
 */
export function aggregate(
  name: SuiteName,
  pub: FrostPublic,
  list: NonceCommitments[],
  msg: Uint8Array,
  shares: Record<Identifier, Uint8Array>,
  verify: (signature: Uint8Array) => boolean,
): Uint8Array {
  const s = NATIVE_SUITES[name];
  const { Fn, group } = s;
  const p = prepare(name, pub);
  const ids = list.map((c) => c.identifier);
  try {
    checkCount(p, ids.length);
  } catch {
    throw new AggregateFault([]);
  }
  if (new Set(ids).size !== ids.length || ids.length !== Object.keys(shares).length) throw new AggregateFault([]);
  for (const id of ids) if (!(id in shares) || !(id in pub.verifyingShares)) throw new AggregateFault([]);
  const gc = groupCommitment(name, p.groupKey, list, msg);
  let z = Fn.ZERO;
  let signature: Uint8Array | undefined;
  try {
    for (const id of ids) z = Fn.add(z, Fn.fromBytes(shares[id]!));
    const R = group.bytes(gc.R);
    // RFC 9591 Appendix A: SerializeElement(R) || SerializeScalar(z); BIP340 keeps x(R) only.
    signature = concatBytes(s.taproot ? R.subarray(1) : R, Fn.toBytes(z));
  } catch {
    // A share that is not a scalar (or an R that is the identity): found below, share by share.
  }
  if (signature && verify(signature)) return signature;
  const cheaters = ids.filter((id) => {
    try {
      return !shareValid(name, p, gc, msg, id, shares[id]!);
    } catch {
      return true;
    }
  });
  // Every share checks out, yet the sum does not verify: the verifier and FROST disagree.
  throw new AggregateFault(
    cheaters,
    cheaters.length ? 'aggregation failed' : 'aggregate signature failed the verification',
  );
}
