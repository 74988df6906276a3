/**
 * What was done about each target of issue 14: changes kept in the code, and changes tried and
 * dropped (with why). From README's Performance section, the git log and the sessions' closing
 * notes (`issues stops`). bench/targets.ts prints them with each target, met or not.
 */

/** The targets, by a short key (bench/targets.ts names each target's key). */
export type TargetKey =
  | 'digest-c64'
  | 'evm-sqlite'
  | 'c1-p50'
  | 'pg-vs-sqlite'
  | 'pg-cpu'
  | 'mark'
  | 'batch'
  | 'priority'
  | 'frost-p50'
  | 'frost-throughput'
  | 'rss';

export interface Tried {
  kept: string[];
  dropped: string[];
}

/** The single-request hot path: every single-key target rests on it. */
const HOT_PATH_KEPT = [
  'the SQLite commit fsync runs on the libuv pool (synchronous=NORMAL plus an fdatasync of the WAL before anything settles; the next group commits meanwhile)',
  'the TLS peer certificate read once per HTTP/2 connection, not at every call',
  "an EVM key's address computed once per key",
  'SQLite group commit: the transaction and the per-write savepoint built once per group',
  'P-256 self-check by the token off the event loop; libuv threads sized to the session pool (8 sessions)',
  'P-256 request signatures verified on OpenSSL',
  'audit SHA-256 on OpenSSL (held to noble by test/audit-sha256.test.ts) and one serialisation of an entry for its chain hash and its leaf: 208-211 -> 70-105 µs of CPU an appended entry (loaded)',
  "the whole tree's head, read at every rollback-mark release, folded from the stored frontier instead of read node by node",
];
const HOT_PATH_DROPPED = [
  '24 HSM sessions instead of 8: the wait for a session went, throughput did not move (the CPU ceiling)',
  'C_SignInit off the event loop: perf puts it at 0.2% of the JS thread (the V8 share is SoftHSM on the libuv threads preempting it); kept on the loop',
  'C_SignInit + C_Sign in worker threads: on one core it moves CPU between threads without reducing it',
  'the self-check by libsecp256k1 verify instead of recovery: about the same cost, and the recovery id (returned with every secp256k1 signature) would still be needed',
  'no savepoint per write in a commit group: no measurable gain, reverted',
];

const TRIED: Record<TargetKey, Tried> = {
  'digest-c64': { kept: HOT_PATH_KEPT, dropped: HOT_PATH_DROPPED },
  'evm-sqlite': {
    kept: [
      ...HOT_PATH_KEPT,
      'the rollback mark written from a worker thread on its own session, one write per commit group',
    ],
    dropped: HOT_PATH_DROPPED,
  },
  'c1-p50': {
    kept: [
      HOT_PATH_KEPT[0]!,
      HOT_PATH_KEPT[1]!,
      "a commit group of claims only starts no WAL sync (the completion's sync covers it): 2.00 -> 1.02 fdatasyncs a request at c=1",
    ],
    dropped: [
      'none beyond the hot path: the floor is raw + one WAL sync + the mark (a SoftHSM file write); needs a faster disk or a cheaper mark',
    ],
  },
  'pg-vs-sqlite': {
    kept: [
      'a reservation group reads every view in one round trip and one set of statements (each view brought up to date with the plans before it)',
      'insert-only plans of a group share their write statements: 8.2 -> 0.3 statements a sign (bench/pg-store.ts)',
      'completions and audit appends grouped',
      "a completion group's audit append in one round trip, on the point this process's last append left (checked under the audit lock: another replica's append or a restored database makes it read the head and append again)",
      'a reservation group no longer pre-locks its rows (its one read per table locks them in key order): 2 statements fewer a group',
      'the tree takes the leaf hashes the chain step computed instead of hashing each entry again',
    ],
    dropped: [
      'one transaction a sign instead of two (reservation and completion merged): not tried, it would hold row locks across the HSM call',
    ],
  },
  'pg-cpu': {
    kept: [
      'PostgreSQL reservations of a group in two round trips with shared statements: 1,480 -> 364 µs of PostgreSQL CPU a sign (bench/pg-store.ts, loaded)',
      'the completion append in one round trip and no separate row pre-locks: 719 -> 543-582 µs of PostgreSQL CPU a sign in the whole service (one quiet run each side)',
    ],
    dropped: [],
  },
  mark: {
    kept: [
      'the mark written from a worker thread on its own PKCS#11 session, one write per commit group; the second consistency read skipped when the database is still at the marked size',
    ],
    dropped: [],
  },
  batch: {
    kept: [
      'the single-request hot path changes (a batch item takes the same path)',
      "EVM assembly keeps decode's unsigned hash and fields and hashes bytes, not hex: 70-75 -> 35-62 µs an item",
      'stored results encoded without a JSON replacer: 14-16 -> 10 µs an item',
      "a batch's SQLite reservation writes each velocity bucket once with the items' sums and reads an account's next nonce once: 28-33 -> 21-23 ms for 1,000 items",
      'results commit in slices of 100 while later items are still being signed',
    ],
    dropped: ['slices of 50: shorter stalls (5-8 ms against 9-24 ms) but about 15% more CPU an item'],
  },
  priority: {
    kept: [
      'the HSM pool serves hot waiters first',
      'SQLite fsync off the event loop (shorter stalls during batch commits)',
      "a batch's intents and claims built inside its decode chunks (32 items a turn), not in one 4-24 ms block",
    ],
    dropped: [],
  },
  'frost-p50': {
    kept: [
      'FROST signing on native group operations (libsodium, libsecp256k1), byte for byte noble (RFC 9591 vectors, 10,000-signing differential test)',
      "OpenSSL's Ed25519 as the hot-path independent verifier; prepared packages cached",
      'commitments pooled ahead and refilled in the background; the t shares requested in parallel; share verification only when an aggregate fails',
      "cosigners: a client certificate's parse, CA signature and key checked once per certificate bytes (clock, CN and CRL at every share); statements prepared once",
      'cosigners: grants that arrive in one event-loop turn commit in one transaction, the WAL synced off the event loop while the share is computed; nothing leaves before its grant is on disk',
      'cosigners: a share unsealed for signing stays in memory while in use (30 s idle), erased when it stops signing and at shutdown',
      'the coordinator checks pooled commitments when it fetches them, off the signing path',
    ],
    dropped: [
      'a native BIP340 verifier: the secp256k1 binding here has no schnorrsig_verify; a libsecp256k1 build that has one (e.g. tiny-secp256k1 2.x) would be a new dependency (noble schnorr.verify kept, ~2.5 ms)',
    ],
  },
  'frost-throughput': {
    kept: [
      "as for the c=1 p50 (native group operations, pooled commitments, parallel shares, the cosigners' group commit)",
    ],
    dropped: [],
  },
  rss: {
    kept: ['the 10-minute RSS point at full load in the bench (start, peak, end, growth after the first quarter)'],
    dropped: [],
  },
};

export function triedFor(key: TargetKey): Tried {
  return TRIED[key];
}

/** One line: "kept: a; b. tried and dropped: c." ('' when nothing was done). */
export function triedText(key: TargetKey): string {
  const t = triedFor(key);
  return [
    t.kept.length ? `kept: ${t.kept.join('; ')}` : '',
    t.dropped.length ? `tried and dropped: ${t.dropped.join('; ')}` : '',
  ]
    .filter(Boolean)
    .join('. ');
}
