import t from 'tap';
import { runDifferential } from '../harness/frost-differential.js';

/**
 * Native FROST(Ed25519) (libsodium group operations) against @noble/curves FROST on
 * SIGNINGS random signings: nonces, commitments, shares and aggregates byte for byte, and
 * corrupted shares refused naming the same signer (harness/frost-differential.ts). noble is the
 * slow side (about 30 ms a signing): this file takes minutes, hence its own timeout.
 */
const SIGNINGS = 10_000;

t.setTimeout(30 * 60_000);

t.test(`native FROST(Ed25519) equals noble on ${SIGNINGS} random signings`, (t) => {
  const r = runDifferential('frost-ed25519', SIGNINGS, 'ed25519-v1');
  t.same(r.mismatches, [], 'no difference');
  t.equal(r.signings, SIGNINGS);
  t.ok(r.shares >= 2 * SIGNINGS, `${r.shares} shares compared`);
  t.ok(r.refused >= SIGNINGS / 30, `${r.refused} corrupted shares refused alike`);
  t.ok(r.aggregates + r.refused === SIGNINGS, `${r.aggregates} aggregates compared`);
  t.comment(`${r.keys} keys, ${(r.ms / 1000).toFixed(1)} s`);
  t.end();
});
