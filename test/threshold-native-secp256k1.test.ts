import t from 'tap';
import { differentialTests } from '../harness/frost-differential-tests.js';

/**
 * Native FROST(secp256k1) (libsecp256k1 group operations) against @noble/curves FROST: the
 * BIP340 Taproot suite the service signs with on 10,000 seeded random signings (group keys of
 * both y parities), and plain RFC 9591 FROST(secp256k1, SHA-256) on 1,000 (its RFC vectors run
 * in threshold-vectors.test.ts). Byte for byte, as harness/frost-differential.ts describes.
 */
t.setTimeout(20 * 60_000);
differentialTests('frost-secp256k1-tr');
differentialTests('frost-secp256k1');
