import t from 'tap';
import { differentialTests } from '../harness/frost-differential-tests.js';

/**
 * Native FROST(Ed25519) (libsodium group operations) against @noble/curves FROST on 10,000
 * seeded random signings: nonces, commitments, shares, share checks, aggregates and refusals
 * byte for byte (harness/frost-differential.ts says how noble's side is stored and re-run).
 */
t.setTimeout(20 * 60_000);
differentialTests('frost-ed25519');
