/**
 * The differential check of the native FROST path (src/core/frost/native-frost.ts) against
 * @noble/curves FROST: random keys (trusted dealer of several shapes, and the DKG the service
 * runs), random signer subsets in random list order, random messages; every nonce, commitment,
 * signature share and aggregate compared byte for byte, and corrupted shares refused by both
 * with the same signers named. Randomness is a seeded stream, so a failure replays from its seed.
 */
import type { FrostPublic, FrostSecret, Identifier, NonceCommitments, RNG } from '@noble/curves/abstract/frost.js';
import { bytesToHex, concatBytes } from '@noble/curves/utils.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { dkgRound1, dkgRound2, dkgRound3 } from '../src/core/frost/dkg.js';
import * as native from '../src/core/frost/native-frost.js';
import { SUITES, type SuiteName } from '../src/core/frost/suites.js';

/** A deterministic byte stream: SHA-256(seed || counter) blocks. */
export function seededRng(seed: string): RNG & { int(below: number): number } {
  let counter = 0;
  let pool = new Uint8Array(0);
  const rng = (n = 32) => {
    while (pool.length < n) pool = concatBytes(pool, sha256(new TextEncoder().encode(`${seed}/${counter++}`)));
    const out = pool.slice(0, n);
    pool = pool.slice(n);
    return out;
  };
  // Modulo bias is irrelevant for picking test cases.
  rng.int = (below: number) => new DataView(rng(4).buffer).getUint32(0) % below;
  return rng;
}

export interface DifferentialResult {
  signings: number;
  shares: number;
  aggregates: number;
  /** Signings with one corrupted share, refused by both sides naming the same signer. */
  refused: number;
  keys: number;
  /** Keys whose stored group key has an odd y (the Taproot suite's negation path). */
  oddKeys: number;
  /** The first few differences (empty when native and noble agree everywhere). */
  mismatches: string[];
  ms: number;
}

interface TestKey {
  pub: FrostPublic;
  secrets: FrostSecret[];
}

const SHAPES = [
  { min: 2, max: 3 },
  { min: 2, max: 3 },
  { min: 3, max: 5 },
  { min: 2, max: 2 },
];

function makeKey(name: SuiteName, rng: ReturnType<typeof seededRng>, n: number): TestKey {
  const s = SUITES[name];
  if (n % 2 === 0) {
    // The service's keys: noble's DKG through dkg.ts (Taproot: tweaked, so either y parity).
    const ids = [1, 2, 3].map((i) => s.frost.Identifier.fromNumber(i));
    const r1 = ids.map((id) => dkgRound1(s, id, { min: 2, max: 3 }, rng));
    const others = (i: number) => r1.filter((_, j) => j !== i).map((r) => r.public);
    const r2 = r1.map((r, i) => dkgRound2(s, r.secret, others(i)));
    const keys = ids.map((me, i) =>
      dkgRound3(
        s,
        r1[i]!.secret,
        others(i),
        ids.flatMap((_, j) => (j === i ? [] : [r2[j]![me]!])),
      ),
    );
    return { pub: keys[0]!.public, secrets: keys.map((k) => k.secret) };
  }
  const shape = SHAPES[rng.int(SHAPES.length)]!;
  const dealt = s.frost.trustedDealer(shape, undefined, undefined, rng);
  return { pub: dealt.public, secrets: Object.values(dealt.secretShares) };
}

/** `count` signings of `name`, native against noble; a new key every `perKey` signings. */
export function runDifferential(name: SuiteName, count: number, seed: string, perKey = 50): DifferentialResult {
  const s = SUITES[name];
  const { Fn } = s.frost.utils;
  const rng = seededRng(`${name}/${seed}`);
  const out: DifferentialResult = {
    signings: 0,
    shares: 0,
    aggregates: 0,
    refused: 0,
    keys: 0,
    oddKeys: 0,
    mismatches: [],
    ms: 0,
  };
  const started = performance.now();
  const differ = (i: number, what: string, a: Uint8Array | string, b: Uint8Array | string) => {
    const [x, y] = [a, b].map((v) => (typeof v === 'string' ? v : bytesToHex(v)));
    if (x !== y && out.mismatches.length < 10) out.mismatches.push(`${seed} #${i} ${what}: native ${x}, noble ${y}`);
  };
  const verify = (pub: FrostPublic, msg: Uint8Array) => (sig: Uint8Array) => s.verify(sig, msg, s.chainPublicKey(pub));
  let key: TestKey | undefined;
  for (let i = 0; i < count; i++) {
    if (i % perKey === 0) {
      key = makeKey(name, rng, out.keys++);
      if (key.pub.commitments[0]![0] === 3) out.oddKeys++;
    }
    const { pub, secrets } = key!;
    // A random subset of min..max signers (min three times in four, as the service signs),
    // listed in random order.
    const extra = rng.int(4) === 0 ? rng.int(secrets.length - pub.signers.min + 1) : 0;
    const size = pub.signers.min + extra;
    const signers = [...secrets];
    for (let j = signers.length - 1; j > 0; j--) {
      const k = rng.int(j + 1);
      [signers[j], signers[k]] = [signers[k]!, signers[j]!];
    }
    signers.length = size;
    const msg = rng([0, 1, 32, 32, 64, 100][rng.int(6)]!);
    const rounds = signers.map((secret) => {
      const randomness = [rng(32), rng(32)];
      const replay = () => {
        const queue = randomness.map((r) => r.slice());
        return () => queue.shift()!;
      };
      const ours = native.commit(name, secret, replay());
      const theirs = s.frost.commit(secret, replay());
      differ(i, 'hiding nonce', ours.nonces.hiding, theirs.nonces.hiding);
      differ(i, 'binding nonce', ours.nonces.binding, theirs.nonces.binding);
      differ(i, 'hiding commitment', ours.commitments.hiding, theirs.commitments.hiding);
      differ(i, 'binding commitment', ours.commitments.binding, theirs.commitments.binding);
      return { secret, ours, theirs };
    });
    const list: NonceCommitments[] = rounds.map((r) => r.ours.commitments);
    const shares: Record<Identifier, Uint8Array> = {};
    for (const r of rounds) {
      const id = r.secret.identifier;
      const ours = native.signShare(name, r.secret, pub, r.ours.nonces, list, msg);
      const theirs = s.frost.signShare(r.secret, pub, r.theirs.nonces, list, msg);
      differ(i, `share of ${id}`, ours, theirs);
      if (!native.verifyShare(name, pub, list, msg, id, ours)) differ(i, `verifyShare ${id}`, 'false', 'true');
      shares[id] = ours;
      out.shares++;
    }
    if (i % 25 === 24) {
      // One share off by one: both refuse the aggregate, both name that signer and only it.
      const bad = signers[rng.int(signers.length)]!.identifier;
      shares[bad] = Fn.toBytes(Fn.add(Fn.fromBytes(shares[bad]!), Fn.ONE));
      const named = (f: () => unknown) => {
        try {
          f();
          return 'accepted';
        } catch (e) {
          return JSON.stringify((e as { cheaters?: unknown }).cheaters ?? (e as Error).message);
        }
      };
      differ(
        i,
        'refusal',
        named(() => native.aggregate(name, pub, list, msg, shares, verify(pub, msg))),
        named(() => s.frost.aggregate(pub, list, msg, shares)),
      );
      differ(
        i,
        'verifyShare of the bad share',
        String(native.verifyShare(name, pub, list, msg, bad, shares[bad]!)),
        String(s.frost.verifyShare(pub, list, msg, bad, shares[bad]!)),
      );
      out.refused++;
    } else {
      // native.aggregate returns only what the suite's independent verifier accepted.
      const ours = native.aggregate(name, pub, list, msg, shares, verify(pub, msg));
      const theirs = s.frost.aggregate(pub, list, msg, shares);
      differ(i, 'aggregate', ours, theirs);
      out.aggregates++;
    }
    out.signings++;
  }
  out.ms = performance.now() - started;
  return out;
}
