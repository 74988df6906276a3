/**
 * What was done about each target of issue 14: changes kept in the code, and changes tried and
 * dropped (with why). From README's Performance section, the git log and the sessions' closing
 * notes (`issues stops`). bench/targets.ts prints them with each target, met or not.
 *
 * A session adds its items to THIS_SESSION below (the lead moves them up at merge).
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
];
const HOT_PATH_DROPPED = [
  '24 HSM sessions instead of 8: the wait for a session went, throughput did not move (the CPU ceiling)',
  'C_SignInit off the event loop: perf puts it at 0.2% of the JS thread (the V8 share is SoftHSM on the libuv threads preempting it); kept on the loop',
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
    kept: [HOT_PATH_KEPT[0]!, HOT_PATH_KEPT[1]!, 'a claim-only reservation no longer waits for a WAL sync of its own'],
    dropped: [
      'none beyond the hot path: the floor is raw + one WAL sync + the mark (a SoftHSM file write); needs a faster disk or a cheaper mark',
    ],
  },
  'pg-vs-sqlite': {
    kept: [
      'a reservation group reads every view in one round trip and one set of statements (each view brought up to date with the plans before it)',
      'insert-only plans of a group share their write statements: 8.2 -> 0.3 statements a sign (bench/pg-store.ts)',
      'completions and audit appends grouped',
    ],
    dropped: [],
  },
  'pg-cpu': {
    kept: [
      'PostgreSQL reservations of a group in two round trips with shared statements: 1,480 -> 364 µs of PostgreSQL CPU a sign (bench/pg-store.ts, loaded)',
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
    kept: ['the single-request hot path changes (a batch item takes the same path)'],
    dropped: [
      'none batch-only: its profile is the single-request path (HSM calls, SQLite transactions, keccak, recovery)',
    ],
  },
  priority: {
    kept: [
      'the HSM pool serves hot waiters first',
      'SQLite fsync off the event loop (shorter stalls during batch commits)',
    ],
    dropped: [],
  },
  'frost-p50': {
    kept: [
      'FROST signing on native group operations (libsodium, libsecp256k1), byte for byte noble (RFC 9591 vectors, 10,000-signing differential test)',
      "OpenSSL's Ed25519 as the hot-path independent verifier; prepared packages cached",
      'commitments pooled ahead and refilled in the background; the t shares requested in parallel; share verification only when an aggregate fails',
    ],
    dropped: ['a native BIP340 verifier: none at hand without hand-rolling one (noble schnorr.verify kept, ~3 ms)'],
  },
  'frost-throughput': {
    kept: ['as for the c=1 p50 (native group operations, pooled commitments, parallel shares)'],
    dropped: [],
  },
  rss: {
    kept: ['the 10-minute RSS point at full load in the bench (start, peak, end, growth after the first quarter)'],
    dropped: [],
  },
};

/**
 * This session's items, by target: the lead fills them in at merge (kept and tried-and-dropped),
 * and moves them into TRIED above in the session after.
 */
const THIS_SESSION: Partial<Record<TargetKey, Partial<Tried>>> = {};

export function triedFor(key: TargetKey): Tried {
  const base = TRIED[key];
  const now = THIS_SESSION[key] ?? {};
  return { kept: [...base.kept, ...(now.kept ?? [])], dropped: [...base.dropped, ...(now.dropped ?? [])] };
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
