import { randomInt } from 'node:crypto';
import { readFileSync } from 'node:fs';
import t from 'tap';
import { CHUNK, DIFFERENTIAL_SUITES, runDifferential, transcriptDigests, VECTORS_FILE } from './frost-differential.js';

/** Chunks re-run live on noble in each test run, picked at random (a different two each time). */
const LIVE_CHUNKS = 2;

/**
 * The tests of one suite: native's transcript of every stored signing equals noble's stored
 * digest, chunk by chunk; and LIVE_CHUNKS random chunks run on noble now, field by field against
 * native, hashing to the stored digests (so those are noble's, not native's).
 */
export function differentialTests(name: (typeof DIFFERENTIAL_SUITES)[number]['name']): void {
  const suite = DIFFERENTIAL_SUITES.find((s) => s.name === name)!;
  const stored = JSON.parse(readFileSync(VECTORS_FILE, 'utf8')).suites[name] as {
    seed: string;
    count: number;
    chunk: number;
    digests: string[];
  };
  const { seed, count } = suite;
  t.test(`native ${name} equals noble's stored transcripts of ${count} random signings`, (t) => {
    t.same([stored.seed, stored.count, stored.chunk], [seed, count, CHUNK], 'the stored digests cover these signings');
    const r = transcriptDigests(name, 'native', { seed, from: 0, count, chunk: CHUNK });
    const differing = r.digests.flatMap((d, i) => (d === stored.digests[i] ? [] : [i]));
    t.same(differing, [], `all ${r.digests.length} chunks of ${CHUNK} signings equal (differing chunks listed)`);
    t.equal(r.digests.length, count / CHUNK);
    t.equal(r.refused, Math.floor(count / 25), `${r.refused} signings with a corrupted share, refused`);
    t.equal(r.aggregates + r.refused, count, `${r.aggregates} aggregates`);
    // Taproot: stored group keys of both y parities, so both branches of the negation ran.
    if (name === 'frost-secp256k1-tr') t.ok(r.oddKeys > 0 && r.oddKeys < r.keys, `${r.oddKeys} of ${r.keys} odd`);
    t.end();
  });
  t.test(`${LIVE_CHUNKS} random chunks of ${name} on noble now, field by field`, (t) => {
    for (let n = 0; n < LIVE_CHUNKS; n++) {
      const c = randomInt(count / CHUNK);
      const r = runDifferential(name, { seed, from: c * CHUNK, count: CHUNK });
      t.same(r.mismatches, [], `chunk ${c}: native and noble agree on every field`);
      t.equal(r.noble.digests[0], stored.digests[c], `chunk ${c}: noble's transcript is the stored one`);
    }
    t.end();
  });
}
