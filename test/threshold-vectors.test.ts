import { readFileSync } from 'node:fs';
import type { RNG } from '@noble/curves/abstract/frost.js';
import { ed25519 } from '@noble/curves/ed25519.js';
import { schnorr } from '@noble/curves/secp256k1.js';
import { bytesToHex, hexToBytes } from '@noble/curves/utils.js';
import t from 'tap';
import { type FrostBackend, frostBackend, setFrostBackend } from '../src/core/frost/backend.js';
import {
  aggregate,
  commit,
  decodePublic,
  decodeSecret,
  encodeSecret,
  type Key,
  signShare,
  verifyShare,
} from '../src/core/frost/participant.js';
import { SUITES, type Suite, type SuiteName } from '../src/core/frost/suites.js';

// The RFC 9591 Appendix E vectors, run through our participant code with the vectors' nonce
// randomness; they are not the frost-rs vectors noble tests itself against.
interface RfcVector {
  config: { MAX_PARTICIPANTS: string; MIN_PARTICIPANTS: string };
  inputs: {
    participant_list: number[];
    group_secret_key: string;
    group_public_key: string;
    message: string;
    share_polynomial_coefficients: string[];
    participant_shares: { identifier: number; participant_share: string }[];
  };
  round_one_outputs: {
    outputs: {
      identifier: number;
      hiding_nonce_randomness: string;
      binding_nonce_randomness: string;
      hiding_nonce: string;
      binding_nonce: string;
      hiding_nonce_commitment: string;
      binding_nonce_commitment: string;
    }[];
  };
  round_two_outputs: { outputs: { identifier: number; sig_share: string }[] };
  final_output: { sig: string };
}

// Vendored copies: test/vectors/README.md names each file's source, commit and licence.
const vectorFile = (path: string) => new URL(`./vectors/${path}`, import.meta.url);

/** Hands out the given 32-byte strings in order, as commit's nonce randomness. */
function fixedRandomness(...chunks: string[]): RNG {
  const queue = chunks.map((c) => hexToBytes(c));
  return (n = 32) => {
    const next = queue.shift();
    if (!next || next.length !== n) throw new Error(`unexpected randomness request of ${n} bytes`);
    return next;
  };
}

const RFC: [SuiteName, string][] = [
  ['frost-ed25519', 'rfc9591/frost-ed25519-sha512.json'],
  ['frost-secp256k1', 'rfc9591/frost-secp256k1-sha256.json'],
];

// Through both backends: the native group operations (libsodium, libsecp256k1; the default)
// and noble's FROST, each reproducing every nonce, commitment, share and signature.
const BACKENDS: FrostBackend[] = ['native', 'noble'];

for (const [name, file] of RFC)
  for (const backend of BACKENDS) {
    t.test(`RFC 9591 ${name} (${backend})`, (t) => {
      setFrostBackend(backend);
      t.teardown(() => setFrostBackend('native'));
      t.equal(frostBackend(), backend, `signing runs on ${backend}`);
      const suite: Suite = SUITES[name];
      const v = JSON.parse(readFileSync(vectorFile(file), 'utf8')) as RfcVector;
      const { frost } = suite;
      const { Fn } = frost.utils;
      const signers = { min: Number(v.config.MIN_PARTICIPANTS), max: Number(v.config.MAX_PARTICIPANTS) };
      const id = (n: number) => frost.Identifier.fromNumber(n);
      const message = hexToBytes(v.inputs.message);

      // The dealer's polynomial, published the way a stored key package is: JSON, then decodePublic
      // (which checks each verifying share against the commitments).
      const dealt = frost.utils.generateSecretPolynomial(
        signers,
        hexToBytes(v.inputs.group_secret_key),
        v.inputs.share_polynomial_coefficients.map((c) => Fn.fromBytes(hexToBytes(c))),
      );
      t.equal(bytesToHex(dealt.commitment[0]!), v.inputs.group_public_key, 'group public key');
      const pub = decodePublic(suite, {
        signers,
        commitments: dealt.commitment.map((c) => bytesToHex(c)),
        verifyingShares: Object.fromEntries(
          v.inputs.participant_shares.map((s) => [
            id(s.identifier),
            bytesToHex(suite.Point.BASE.multiply(Fn.fromBytes(hexToBytes(s.participant_share))).toBytes()),
          ]),
        ),
      });
      const keys = new Map<number, Key>();
      for (const s of v.inputs.participant_shares) {
        const sealed = encodeSecret(suite, {
          identifier: id(s.identifier),
          signingShare: hexToBytes(s.participant_share),
        });
        keys.set(s.identifier, { public: pub, secret: decodeSecret(suite, sealed, pub) });
      }

      const rounds = v.round_one_outputs.outputs.map((o) => {
        const key = keys.get(o.identifier)!;
        const r = commit(suite, key.secret, fixedRandomness(o.hiding_nonce_randomness, o.binding_nonce_randomness));
        t.equal(bytesToHex(r.nonces.hiding), o.hiding_nonce, `hiding nonce ${o.identifier}`);
        t.equal(bytesToHex(r.nonces.binding), o.binding_nonce, `binding nonce ${o.identifier}`);
        t.equal(bytesToHex(r.commitments.hiding), o.hiding_nonce_commitment, `hiding commitment ${o.identifier}`);
        t.equal(bytesToHex(r.commitments.binding), o.binding_nonce_commitment, `binding commitment ${o.identifier}`);
        return { n: o.identifier, key, nonces: r.nonces, commitments: r.commitments };
      });
      t.same(
        rounds.map((r) => r.n),
        v.inputs.participant_list,
        'signers are the participant list',
      );
      const commitmentList = rounds.map((r) => r.commitments);

      const shares: Record<string, Uint8Array> = {};
      for (const r of rounds) {
        const share = signShare(suite, r.key, r.nonces, commitmentList, message);
        const expected = v.round_two_outputs.outputs.find((o) => o.identifier === r.n)!;
        t.equal(bytesToHex(share), expected.sig_share, `signature share ${r.n}`);
        t.ok(verifyShare(suite, pub, commitmentList, message, id(r.n), share), `share ${r.n} verifies`);
        shares[id(r.n)] = share;
      }

      const signature = aggregate(suite, pub, commitmentList, message, shares);
      t.equal(bytesToHex(signature), v.final_output.sig, 'final signature');
      t.ok(suite.verify(signature, message, suite.chainPublicKey(pub)), 'suite verifier accepts it');
      if (name === 'frost-ed25519') {
        const key = hexToBytes(v.inputs.group_public_key);
        t.ok(ed25519.verify(signature, message, key, { zip215: false }), 'RFC 8032 verifier accepts it');
      }
      t.end();
    });
  }

// Final BIP340 (bitcoin/bips bip-0340/test-vectors.csv): challenge tag "BIP0340/challenge", R
// with an even y, indices 0-18 (15-18 sign messages of 0, 1, 17 and 100 bytes). Every row goes
// through noble's schnorr.verify (what Taproot nodes implement) and through the
// frost-secp256k1-tr suite's verifier, which threshold signatures are checked with; rows with a
// secret key are also signed again and must give the file's signature byte for byte.
t.test('BIP340 vectors: noble schnorr and the frost-secp256k1-tr suite verifier', (t) => {
  const suite = SUITES['frost-secp256k1-tr'];
  const [header, ...rows] = readFileSync(vectorFile('bip340/test-vectors.csv'), 'utf8').trim().split(/\r?\n/);
  const cols = header!.split(',');
  t.same(
    rows.map((row) => row.split(',')[0]),
    Array.from({ length: 19 }, (_, i) => String(i)),
    'indices 0-18',
  );
  const verdicts = { TRUE: 0, FALSE: 0 };
  for (const row of rows) {
    const f = Object.fromEntries(row.split(',').map((v, i) => [cols[i]!, v]));
    const bytes = (name: string) => hexToBytes(f[name]!.toLowerCase());
    const label = `vector ${f.index} ${f.comment ?? ''}`.trim();
    const expected = f['verification result'];
    if (expected !== 'TRUE' && expected !== 'FALSE') throw new Error(`${label}: verification result ${expected}`);
    verdicts[expected]++;
    const [sig, msg, pub] = [bytes('signature'), bytes('message'), bytes('public key')];
    let noble: boolean;
    try {
      noble = schnorr.verify(sig, msg, pub);
    } catch {
      noble = false; // a key or signature noble cannot parse is refused too
    }
    t.equal(noble, expected === 'TRUE', `${label}: noble schnorr.verify`);
    t.equal(suite.verify(sig, msg, pub), expected === 'TRUE', `${label}: suite verify`);
    if (!f['secret key']) continue;
    const sk = bytes('secret key');
    t.equal(bytesToHex(schnorr.getPublicKey(sk)), f['public key']!.toLowerCase(), `${label}: x-only key`);
    t.equal(bytesToHex(schnorr.sign(msg, sk, bytes('aux_rand'))), bytesToHex(sig), `${label}: signing is byte-exact`);
  }
  t.same(verdicts, { TRUE: 9, FALSE: 10 }, 'nine valid rows (0-4, 15-18) and ten invalid ones (5-14)');
  t.end();
});
