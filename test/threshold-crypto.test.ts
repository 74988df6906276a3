import type { DKG_Round2, Identifier } from '@noble/curves/abstract/frost.js';
import { ed25519 } from '@noble/curves/ed25519.js';
import { schnorr } from '@noble/curves/secp256k1.js';
import { equalBytes } from '@noble/curves/utils.js';
import t, { type Test } from 'tap';
import { frostBackend, setFrostBackend } from '../src/core/frost/backend.js';
import { dkgRound1, dkgRound2, dkgRound3 } from '../src/core/frost/dkg.js';
import {
  aggregate,
  checkCommitment,
  commit,
  decodePublic,
  decodeSecret,
  encodePublic,
  encodeSecret,
  type Key,
  ParticipantFault,
  signShare,
  verifyShare,
} from '../src/core/frost/participant.js';
import { refreshFinish, refreshRound1, refreshRound2 } from '../src/core/frost/refresh.js';
import { isThresholdAlgorithm, SUITES, type Suite, type ThresholdAlgorithm } from '../src/core/frost/suites.js';

type Verifier = (sig: Uint8Array, msg: Uint8Array, key: Uint8Array) => boolean;

/** Chain verifiers that share no code with the FROST implementation. */
const INDEPENDENT: Record<ThresholdAlgorithm, Verifier> = {
  'frost-ed25519': (sig, msg, key) => ed25519.verify(sig, msg, key, { zip215: false }),
  'frost-secp256k1-tr': (sig, msg, key) => schnorr.verify(sig, msg, key),
};

const signers = { min: 2, max: 3 };
const message = new TextEncoder().encode('pay 1 unit to treasury');

/** 2-of-3 DKG with every participant in this process; round-2 shares can be altered in transit. */
function runDkg(
  suite: Suite,
  alter: (from: Identifier, to: Identifier, p: DKG_Round2) => DKG_Round2 = (_f, _t, p) => p,
) {
  const ids = [1, 2, 3].map((n) => suite.frost.Identifier.fromNumber(n));
  const r1 = ids.map((id) => dkgRound1(suite, id, signers));
  const othersOf = (i: number) => r1.filter((_, j) => j !== i).map((r) => r.public);
  const r2 = r1.map((r, i) => dkgRound2(suite, r.secret, othersOf(i)));
  const finish = (i: number) =>
    dkgRound3(
      suite,
      r1[i]!.secret,
      othersOf(i),
      ids.flatMap((from, j) => (j === i ? [] : [alter(from, ids[i]!, r2[j]![ids[i]!]!)])),
    );
  return { ids, finish };
}

function dkgKeys(suite: Suite): { ids: Identifier[]; keys: Key[] } {
  const { ids, finish } = runDkg(suite);
  return { ids, keys: ids.map((_, i) => finish(i)) };
}

/** One signing session: commit, sign, check each share, aggregate. */
function sign(suite: Suite, keys: Key[], pub = keys[0]!.public): Uint8Array {
  const rounds = keys.map((key) => ({ key, ...commit(suite, key.secret) }));
  const list = rounds.map((r) => r.commitments);
  const shares: Record<Identifier, Uint8Array> = {};
  for (const r of rounds) shares[r.key.secret.identifier] = signShare(suite, r.key, r.nonces, list, message);
  return aggregate(suite, pub, list, message, shares);
}

function refreshAll(suite: Suite, keys: Key[], alter = (_from: Identifier, _to: Identifier, s: Uint8Array) => s) {
  const ids = keys.map((k) => k.secret.identifier);
  const r1 = ids.map((id) => refreshRound1(suite, id, keys[0]!.public.signers, ids));
  const r2 = r1.map((r) => refreshRound2(suite, r.secret));
  const finish = (i: number) => {
    const me = ids[i]!;
    const received = Object.fromEntries(
      ids.flatMap((from, j) => (j === i ? [] : [[from, alter(from, me, r2[j]![me]!)]])),
    );
    return refreshFinish(
      suite,
      r1[i]!.secret,
      keys[i]!,
      r1.map((r) => r.public),
      received,
    );
  };
  return { r1, finish };
}

/** The ParticipantFault `fn` throws (fails the test if it throws anything else). */
function faultOf(t: Test, fn: () => unknown): ParticipantFault | undefined {
  try {
    fn();
  } catch (err) {
    if (err instanceof ParticipantFault) return err;
    t.fail(`expected ParticipantFault, got ${String(err)}`);
    return undefined;
  }
  t.fail('expected ParticipantFault, nothing thrown');
  return undefined;
}

const pairs = [
  [0, 1],
  [0, 2],
  [1, 2],
] as const;

t.test('isThresholdAlgorithm admits only the chain-facing suites', async (t) => {
  t.ok(isThresholdAlgorithm('frost-ed25519'));
  t.ok(isThresholdAlgorithm('frost-secp256k1-tr'));
  t.notOk(isThresholdAlgorithm('frost-secp256k1'));
  t.notOk(isThresholdAlgorithm('ed25519'));
});

for (const alg of ['frost-ed25519', 'frost-secp256k1-tr'] as const) {
  const suite = SUITES[alg];
  const independent = INDEPENDENT[alg];

  t.test(`${alg}: DKG 2-of-3, any two sign`, async (t) => {
    const { keys } = dkgKeys(suite);
    const pub = keys[0]!.public;
    for (const k of keys) t.same(encodePublic(k.public), encodePublic(pub), 'one public package for all');
    const chainKey = suite.chainPublicKey(pub);
    t.equal(chainKey.length, 32, '32-byte chain key');
    for (const [a, b] of pairs) {
      const sig = sign(suite, [keys[a]!, keys[b]!]);
      t.ok(independent(sig, message, chainKey), `signers ${a + 1},${b + 1}: independent verifier accepts`);
      t.notOk(independent(sig, new TextEncoder().encode('pay 2 units'), chainKey), 'not for another message');
    }
    t.ok(independent(sign(suite, keys), message, chainKey), 'all three sign too');
  });

  t.test(`${alg}: a commitment is checked on arrival, on both backends`, async (t) => {
    const { keys } = dkgKeys(suite);
    const was = frostBackend();
    t.teardown(() => setFrostBackend(was));
    // Elements a dishonest cosigner might send: off the curve (or not canonical), the identity,
    // a point of small order (Ed25519) or a 33-byte prefix no point has (secp256k1).
    const bad =
      alg === 'frost-ed25519'
        ? [new Uint8Array(32).fill(0xff), Uint8Array.of(1, ...new Uint8Array(31)), new Uint8Array(32)]
        : [Uint8Array.of(2, ...new Uint8Array(32).fill(0xff)), Uint8Array.of(5, ...new Uint8Array(32).fill(1))];
    for (const backend of ['native', 'noble'] as const) {
      setFrostBackend(backend);
      const { commitments } = commit(suite, keys[0]!.secret);
      t.doesNotThrow(() => checkCommitment(suite, commitments), `${backend}: a real commitment passes`);
      for (const b of bad) {
        t.throws(() => checkCommitment(suite, { ...commitments, binding: b }), `${backend}: bad binding refused`);
        t.throws(() => checkCommitment(suite, { ...commitments, hiding: b }), `${backend}: bad hiding refused`);
      }
    }
  });

  t.test(`${alg}: key encodings round-trip and fail closed`, async (t) => {
    const { keys } = dkgKeys(suite);
    const other = dkgKeys(suite).keys[0]!;
    const pub = keys[0]!.public;
    const json = JSON.parse(JSON.stringify(encodePublic(pub)));
    t.same(encodePublic(decodePublic(suite, json)), encodePublic(pub), 'public package survives JSON');
    const sealed = encodeSecret(suite, keys[1]!.secret);
    t.equal(sealed.length, 64);
    const secret = decodeSecret(suite, sealed, pub);
    t.equal(secret.identifier, keys[1]!.secret.identifier);
    t.ok(equalBytes(secret.signingShare, keys[1]!.secret.signingShare), 'share survives sealing');
    t.throws(() => decodeSecret(suite, sealed, other.public), 'a share of another key is refused');
    const spliced = { ...json, verifyingShares: { ...json.verifyingShares } };
    const [a, b] = Object.keys(spliced.verifyingShares);
    [spliced.verifyingShares[a!], spliced.verifyingShares[b!]] = [
      spliced.verifyingShares[b!],
      spliced.verifyingShares[a!],
    ];
    t.throws(() => decodePublic(suite, spliced), 'swapped verifying shares are refused');
  });

  t.test(`${alg}: DKG names the cheater`, async (t) => {
    const ids = [1, 2, 3].map((n) => suite.frost.Identifier.fromNumber(n));
    const r1 = ids.map((id) => dkgRound1(suite, id, signers));
    const forged = { ...r1[1]!.public, proofOfKnowledge: r1[2]!.public.proofOfKnowledge };
    t.equal(
      faultOf(t, () => dkgRound2(suite, r1[0]!.secret, [forged, r1[2]!.public]))?.participant,
      ids[1],
      'bad proof of knowledge: participant 2 named',
    );
    const short = { ...r1[2]!.public, commitment: [r1[2]!.public.commitment[0]!] };
    t.equal(
      faultOf(t, () => dkgRound2(suite, r1[0]!.secret, [r1[1]!.public, short]))?.participant,
      ids[2],
      'wrong number of commitments: participant 3 named',
    );
    t.ok(dkgRound2(suite, r1[0]!.secret, [r1[1]!.public, r1[2]!.public]), 'honest packages still accepted after');

    const { Fn } = suite.frost.utils;
    const run = runDkg(suite, (from, to, p) =>
      from === ids[2] && to === ids[0]
        ? { ...p, signingShare: Fn.toBytes(Fn.add(Fn.fromBytes(p.signingShare), 1n)) as typeof p.signingShare }
        : p,
    );
    t.equal(faultOf(t, () => run.finish(0))?.participant, ids[2], 'inconsistent share: participant 3 named');
    t.ok(run.finish(1), 'a participant with honest shares finishes');
  });

  // schnorr_FROST negates the shares at signing time when the group key has an odd y; refresh must
  // hold for both parities, so for secp256k1 keys are drawn until they have the one under test.
  const prefixes = alg === 'frost-secp256k1-tr' ? [0x02, 0x03] : [undefined];
  for (const prefix of prefixes) {
    const named = prefix === undefined ? '' : ` (group key prefix 0${prefix})`;
    t.test(`${alg}: refresh keeps the key and replaces the shares${named}`, async (t) => {
      let { keys } = dkgKeys(suite);
      while (prefix !== undefined && keys[0]!.public.commitments[0]![0] !== prefix) keys = dkgKeys(suite).keys;
      checkRefresh(t, suite, independent, keys);
    });
  }

  t.test(`${alg}: refresh names the cheater`, async (t) => {
    const { ids, keys } = dkgKeys(suite);
    const { Fn } = suite.frost.utils;
    const tampered = refreshAll(suite, keys, (from, to, s) =>
      from === ids[1] && to === ids[0] ? Fn.toBytes(Fn.add(Fn.fromBytes(s), 1n)) : s,
    );
    t.equal(faultOf(t, () => tampered.finish(0))?.participant, ids[1], 'tampered share: sender named');
    t.ok(tampered.finish(2), 'a participant with honest shares finishes');

    const short = refreshAll(suite, keys);
    short.r1[2]!.public.commitment.push(short.r1[2]!.public.commitment[0]!);
    t.equal(faultOf(t, () => short.finish(0))?.participant, ids[2], 'wrong number of commitments: sender named');

    const missing = refreshAll(suite, keys, (from, to, s) =>
      from === ids[2] && to === ids[0] ? new Uint8Array(0) : s,
    );
    t.equal(faultOf(t, () => missing.finish(0))?.participant, ids[2], 'malformed share: sender named');
  });

  t.test(`${alg}: a refresh without a holder drops that holder`, async (t) => {
    const { keys } = dkgKeys(suite);
    const two = [keys[0]!, keys[1]!];
    const { finish } = refreshAll(suite, two);
    const fresh = two.map((_, i) => finish(i));
    const pub = fresh[0]!.public;
    t.same(
      Object.keys(pub.verifyingShares).sort(),
      two.map((k) => k.secret.identifier).sort(),
      'only participants keep a share',
    );
    t.ok(independent(sign(suite, fresh), message, suite.chainPublicKey(keys[0]!.public)), 'the remaining two sign');
  });

  t.test(`${alg}: nonces are single-use`, async (t) => {
    const { keys } = dkgKeys(suite);
    const [a, b] = keys.map((key) => ({ key, ...commit(suite, key.secret) }));
    const list = [a!.commitments, b!.commitments];
    signShare(suite, a!.key, a!.nonces, list, message);
    t.ok(a!.nonces.hiding.every((x) => x === 0) && a!.nonces.binding.every((x) => x === 0), 'nonces erased');
    t.throws(() => signShare(suite, a!.key, a!.nonces, list, message), /already used/, 'reuse refused');
  });
}

function checkRefresh(t: Test, suite: Suite, independent: Verifier, keys: Key[]) {
  const old = keys[0]!.public;
  const chainKey = suite.chainPublicKey(old);
  const { finish } = refreshAll(suite, keys);
  const fresh = keys.map((_, i) => finish(i));
  const pub = fresh[0]!.public;
  for (const k of fresh) t.same(encodePublic(k.public), encodePublic(pub), 'one new public package for all');
  t.ok(equalBytes(pub.commitments[0]!, old.commitments[0]!), 'group key unchanged');
  t.ok(equalBytes(suite.chainPublicKey(pub), chainKey), 'chain key unchanged');
  t.same(pub.signers, old.signers, 'threshold unchanged');
  t.notOk(equalBytes(pub.commitments[1]!, old.commitments[1]!), 'higher commitment moved');
  for (const id of Object.keys(old.verifyingShares))
    t.notOk(equalBytes(pub.verifyingShares[id]!, old.verifyingShares[id]!), `verifying share ${id} changed`);
  fresh.forEach((k, i) =>
    t.notOk(equalBytes(k.secret.signingShare, keys[i]!.secret.signingShare), `share ${i + 1} changed`),
  );
  t.ok(decodePublic(suite, encodePublic(pub)), 'new package is self-consistent');
  for (const [a, b] of pairs) {
    const sig = sign(suite, [fresh[a]!, fresh[b]!]);
    t.ok(independent(sig, message, chainKey), `new shares ${a + 1},${b + 1} sign for the same key`);
  }

  // An old share does not combine with a new one.
  const stale: Key = { public: pub, secret: keys[0]!.secret };
  const rounds = [stale, fresh[1]!].map((key) => ({ key, ...commit(suite, key.secret) }));
  const list = rounds.map((r) => r.commitments);
  const shares = Object.fromEntries(
    rounds.map((r) => [r.key.secret.identifier, signShare(suite, r.key, r.nonces, list, message)]),
  );
  const [oldId, newId] = rounds.map((r) => r.key.secret.identifier) as [Identifier, Identifier];
  t.notOk(verifyShare(suite, pub, list, message, oldId, shares[oldId]!), 'old share rejected by new package');
  t.ok(verifyShare(suite, pub, list, message, newId, shares[newId]!), 'new share accepted');
  const fault = faultOf(t, () => aggregate(suite, pub, list, message, shares));
  t.equal(fault?.participant, oldId, 'aggregate refuses, naming the old share');
  const { Fn } = suite.frost.utils;
  const interpolatesToKey = (k: Key[]) => {
    const secret = suite.frost.combineSecret(
      k.map((x) => x.secret),
      signers,
    );
    return equalBytes(suite.Point.BASE.multiply(Fn.fromBytes(secret)).toBytes(), old.commitments[0]!);
  };
  t.ok(interpolatesToKey([fresh[0]!, fresh[1]!]), 'new shares interpolate to the group key');
  t.notOk(interpolatesToKey([keys[0]!, fresh[1]!]), 'an old and a new share do not');
}
