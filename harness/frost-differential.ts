/**
 * The differential check of the native FROST path (src/core/frost/native-frost.ts) against
 * @noble/curves FROST: random keys (trusted dealer of several shapes, and the DKG the service
 * runs), random signer subsets in random list order, random messages; every nonce, commitment,
 * signature share and aggregate, and who a corrupted share names, compared byte for byte.
 *
 * Each signing is a pure function of its seed, so one side can run alone: a side's transcript
 * of a chunk of signings hashes to one digest. noble costs some 80 ms of CPU a signing, native
 * a few: test/vectors/frost-differential.json keeps noble's digests of 10,000 signings a suite
 * (written by `tsx harness/frost-differential.ts --generate`, which runs noble), the tests hold
 * native's transcript of all of them to those digests and re-run noble live on random chunks,
 * comparing field by field, which also proves the stored digests are noble's.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import type { FrostPublic, FrostSecret, Identifier, NonceCommitments, RNG } from '@noble/curves/abstract/frost.js';
import { bytesToHex, concatBytes } from '@noble/curves/utils.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { dkgRound1, dkgRound2, dkgRound3 } from '../src/core/frost/dkg.js';
import * as native from '../src/core/frost/native-frost.js';
import { SUITES, type SuiteName } from '../src/core/frost/suites.js';

export const VECTORS_FILE = new URL('../test/vectors/frost-differential.json', import.meta.url);

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

export type Side = 'native' | 'noble';

/** One signing's observable outputs on one side, in order: [what, value]. */
type Transcript = Array<[string, string]>;

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
/** A new key every PER_KEY signings. */
const PER_KEY = 50;

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

/** Keys are made with noble on both sides (DKG stays on noble): one per PER_KEY signings. */
class Keys {
  private readonly made = new Map<number, TestKey>();
  constructor(
    private readonly name: SuiteName,
    private readonly seed: string,
  ) {}
  for(i: number): TestKey {
    const n = Math.floor(i / PER_KEY);
    let key = this.made.get(n);
    if (!key) {
      key = makeKey(this.name, seededRng(`${this.name}/${this.seed}/key/${n}`), n);
      this.made.clear();
      this.made.set(n, key);
    }
    return key;
  }
}

const hex = (v: Uint8Array) => bytesToHex(v);

/** Signing `i` on `side`: every nonce, commitment, share, share check and the aggregate or refusal. */
function signing(name: SuiteName, side: Side, key: TestKey, seed: string, i: number): Transcript {
  const s = SUITES[name];
  const { Fn } = s.frost.utils;
  const rng = seededRng(`${name}/${seed}/signing/${i}`);
  const out: Transcript = [];
  const { pub, secrets } = key;
  // A random subset of min..max signers (min three times in four, as the service signs),
  // listed in random order.
  const extra = rng.int(4) === 0 ? rng.int(secrets.length - pub.signers.min + 1) : 0;
  const signers = [...secrets];
  for (let j = signers.length - 1; j > 0; j--) {
    const k = rng.int(j + 1);
    [signers[j], signers[k]] = [signers[k]!, signers[j]!];
  }
  signers.length = pub.signers.min + extra;
  const msg = rng([0, 1, 32, 32, 64, 100][rng.int(6)]!);
  const rounds = signers.map((secret) => {
    const g = side === 'native' ? native.commit(name, secret, rng) : s.frost.commit(secret, rng);
    const id = secret.identifier;
    out.push([`hiding nonce ${id}`, hex(g.nonces.hiding)], [`binding nonce ${id}`, hex(g.nonces.binding)]);
    out.push([`hiding commitment ${id}`, hex(g.commitments.hiding)]);
    out.push([`binding commitment ${id}`, hex(g.commitments.binding)]);
    return { secret, g };
  });
  const list: NonceCommitments[] = rounds.map((r) => r.g.commitments);
  const verifyShare = (id: Identifier, share: Uint8Array) =>
    side === 'native'
      ? native.verifyShare(name, pub, list, msg, id, share)
      : s.frost.verifyShare(pub, list, msg, id, share);
  const shares: Record<Identifier, Uint8Array> = {};
  for (const { secret, g } of rounds) {
    const id = secret.identifier;
    shares[id] =
      side === 'native'
        ? native.signShare(name, secret, pub, g.nonces, list, msg)
        : s.frost.signShare(secret, pub, g.nonces, list, msg);
    out.push([`share ${id}`, hex(shares[id])], [`verifyShare ${id}`, String(verifyShare(id, shares[id]))]);
  }
  if (i % 25 === 24) {
    // One share off by one: the aggregate is refused, naming that signer and only it.
    const bad = signers[rng.int(signers.length)]!.identifier;
    shares[bad] = Fn.toBytes(Fn.add(Fn.fromBytes(shares[bad]!), Fn.ONE));
    out.push([`verifyShare of the bad share ${bad}`, String(verifyShare(bad, shares[bad]))]);
  }
  const check = (sig: Uint8Array) => s.verify(sig, msg, s.chainPublicKey(pub));
  try {
    const sig =
      side === 'native'
        ? native.aggregate(name, pub, list, msg, shares, check)
        : s.frost.aggregate(pub, list, msg, shares);
    out.push(['aggregate', hex(sig)]);
  } catch (e) {
    out.push(['refusal', JSON.stringify((e as { cheaters?: unknown }).cheaters ?? (e as Error).message)]);
  }
  return out;
}

export interface TranscriptResult {
  /** SHA-256 of each `chunk` signings' transcript lines (`<i> <what> <value>`). */
  digests: string[];
  signings: number;
  aggregates: number;
  /** Signings with one corrupted share (the aggregate refused). */
  refused: number;
  keys: number;
  /** Keys whose group key has an odd y (the Taproot suite's negation path). */
  oddKeys: number;
}

/** Signings [from, from + count) on `side`, one SHA-256 digest per `chunk` signings. */
export function transcriptDigests(
  name: SuiteName,
  side: Side,
  o: { seed: string; from: number; count: number; chunk: number },
): TranscriptResult {
  return run(name, [side], o).get(side)!;
}

/**
 * Signings [from, from + count), native against noble live, field by field: the first few
 * differences (none when they agree), and each side's transcript result over the range.
 */
export function runDifferential(
  name: SuiteName,
  o: { seed: string; from: number; count: number },
): { mismatches: string[]; native: TranscriptResult; noble: TranscriptResult } {
  const mismatches: string[] = [];
  const results = run(name, ['native', 'noble'], { ...o, chunk: o.count }, (i, [ours, theirs]) => {
    for (let j = 0; j < Math.max(ours!.length, theirs!.length); j++) {
      const [a, b] = [ours![j], theirs![j]];
      if ((a?.[0] !== b?.[0] || a?.[1] !== b?.[1]) && mismatches.length < 10)
        mismatches.push(`${o.seed} #${i}: native ${a?.join(' ')}, noble ${b?.join(' ')}`);
    }
  });
  return { mismatches, native: results.get('native')!, noble: results.get('noble')! };
}

function run(
  name: SuiteName,
  sides: Side[],
  o: { seed: string; from: number; count: number; chunk: number },
  compare?: (i: number, transcripts: Transcript[]) => void,
): Map<Side, TranscriptResult> {
  const keys = new Keys(name, o.seed);
  const results = new Map(
    sides.map((side) => [side, { digests: [], signings: 0, aggregates: 0, refused: 0, keys: 0, oddKeys: 0 }]),
  ) as Map<Side, TranscriptResult>;
  const hashes = new Map(sides.map((side) => [side, sha256.create()]));
  let lastKey: TestKey | undefined;
  for (let i = o.from; i < o.from + o.count; i++) {
    const key = keys.for(i);
    const newKey = key !== lastKey;
    lastKey = key;
    const transcripts = sides.map((side) => {
      const lines = signing(name, side, key, o.seed, i);
      const r = results.get(side)!;
      const h = hashes.get(side)!;
      for (const [what, value] of lines) h.update(new TextEncoder().encode(`${i} ${what} ${value}\n`));
      r.signings++;
      if (lines[lines.length - 1]![0] === 'aggregate') r.aggregates++;
      else r.refused++;
      if (newKey) {
        r.keys++;
        if (key.pub.commitments[0]![0] === 3) r.oddKeys++;
      }
      if ((i - o.from + 1) % o.chunk === 0 || i === o.from + o.count - 1) {
        r.digests.push(bytesToHex(h.digest()));
        hashes.set(side, sha256.create());
      }
      return lines;
    });
    compare?.(i, transcripts);
  }
  return results;
}

/** The suites and counts the stored digests cover (the tests read the same list). */
export const DIFFERENTIAL_SUITES = [
  { name: 'frost-ed25519', seed: 'ed25519-v1', count: 10_000 },
  { name: 'frost-secp256k1-tr', seed: 'frost-secp256k1-tr-v1', count: 10_000 },
  { name: 'frost-secp256k1', seed: 'frost-secp256k1-v1', count: 1_000 },
] as const satisfies ReadonlyArray<{ name: SuiteName; seed: string; count: number }>;
export const CHUNK = 100;

if (
  process.argv[1] &&
  import.meta.url.endsWith(process.argv[1].split('/').pop()!) &&
  process.argv[2] === '--generate'
) {
  // noble's side only: what the tests hold native to. Slow (noble), run once per change of the
  // transcript's shape; `--only <suite>` for one suite (the others are kept from the file).
  const only = process.argv[3] === '--only' ? process.argv[4] : undefined;
  let previous: Record<string, unknown> = {};
  try {
    previous = JSON.parse(readFileSync(VECTORS_FILE, 'utf8')).suites ?? {};
  } catch {}
  const suites: Record<string, unknown> = { ...previous };
  for (const { name, seed, count } of DIFFERENTIAL_SUITES) {
    if (only && only !== name) continue;
    const started = Date.now();
    const { digests } = transcriptDigests(name, 'noble', { seed, from: 0, count, chunk: CHUNK });
    suites[name] = { seed, count, chunk: CHUNK, digests };
    console.log(`${name}: ${count} signings on noble in ${((Date.now() - started) / 1000).toFixed(0)} s`);
  }
  const file = {
    about:
      "@noble/curves FROST's transcripts (nonces, commitments, shares, share checks, aggregates, refusals) of seeded random signings, SHA-256 per chunk; written by harness/frost-differential.ts --generate",
    suites,
  };
  writeFileSync(VECTORS_FILE, `${JSON.stringify(file, null, 1)}\n`);
}
