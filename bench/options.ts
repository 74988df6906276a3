/** Command-line options of bench/bench.ts. */
import { join } from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import { repoRoot } from '../harness/token.js';
import type { ThresholdAlgorithm } from '../src/core/frost/suites.js';
import { configSchema } from '../src/infra/config/schema.js';
import type { Algorithm } from './raw.js';

/** Parts of a run, in the order they run; --only and --skip pick among them. */
export const SECTIONS = ['one-core', 'sign', 'evm', 'batch', 'priority', 'rss', 'threshold'] as const;
export type Section = (typeof SECTIONS)[number];

export interface Options {
  quick?: boolean;
  sections: Section[];
  seconds: number;
  warmup: number;
  warmupRequests: number;
  extraSeconds: number;
  concurrency: number[];
  sessions: number;
  extra: Algorithm[];
  channels: number;
  evmConcurrency: number;
  postgres: boolean;
  batchItems: number;
  batchRuns: number;
  priorityConcurrency: number;
  prioritySeconds: number;
  rssSeconds: number;
  thresholdSeconds: number;
  thresholdConcurrency: number[];
  poolSize: number;
  suites: ThresholdAlgorithm[];
  retries: number;
  noiseBudget: number;
  cpuProf?: string;
  /** The profiled pass (bench/profiled.ts); --no-profile turns it off. */
  profile: boolean;
  profileSeconds: number;
  childNodeArg: string[];
  out: string;
  keep?: boolean;
}

/** What --quick (or BENCH_QUICK=1) changes, unless the option is given explicitly: every point, briefly. */
const QUICK: Partial<Options> = {
  seconds: 1,
  warmup: 0.3,
  extraSeconds: 1,
  batchRuns: 1,
  prioritySeconds: 1,
  rssSeconds: 3,
  thresholdSeconds: 1,
  profileSeconds: 1.5,
  retries: 0,
  noiseBudget: 5,
};

const positive = (v: string) => {
  const n = Number(v);
  if (!(n > 0)) throw new InvalidArgumentError('expected a positive number');
  return n;
};
const count = (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError('expected a whole number');
  return n;
};
const between = (lo: number, hi: number) => (v: string) => {
  const n = count(v);
  if (n < lo || n > hi) throw new InvalidArgumentError(`expected ${lo}..${hi}`);
  return n;
};
/** A comma-separated list of names out of `all`. */
const names =
  <T extends string>(all: readonly T[]) =>
  (v: string): T[] =>
    v
      .split(',')
      .map((x) => x.trim())
      .filter(Boolean)
      .map((x) => {
        if (!(all as readonly string[]).includes(x))
          throw new InvalidArgumentError(`unknown: ${x} (${all.join(', ')})`);
        return x as T;
      });
const list = (v: string) =>
  v
    .split(',')
    .map((x) => count(x.trim()))
    .filter((n) => n > 0);
const repeatable = (v: string, all: string[]) => [...all, v];

/** Defaults of the service's config (src/infra/config/schema.ts), so that both sides match. */
function serviceDefaults(): { sessions: number; poolSize: number } {
  const hsm = configSchema.shape.hsm.parse({ uri: 'pkcs11:token=x' });
  const threshold = configSchema.shape.threshold.parse({
    minSigners: 2,
    cosigners: [
      { id: 1, address: 'a:1' },
      { id: 2, address: 'b:1' },
    ],
    tls: { certFile: 'c', keyFile: 'k' },
  });
  return { sessions: hsm.sessions, poolSize: threshold?.poolSize ?? 32 };
}

export function parseOptions(argv = process.argv): Options {
  const d = serviceDefaults();
  const quick = Object.entries(QUICK)
    .map(([k, v]) => `${k} ${v}`)
    .join(', ');
  const ALGORITHMS = ['ecdsa-secp256k1', 'ecdsa-p256', 'ed25519'] as const;
  const SUITES = ['frost-ed25519', 'frost-secp256k1-tr'] as const;
  const program = new Command()
    .name('bench/bench')
    .description('The service against raw pkcs11js (single keys) and against FROST in one process (threshold keys)')
    .option('--quick', `every point briefly, as BENCH_QUICK=1 does (${quick})`)
    .option('--only <list>', `sections to run (${SECTIONS.join(', ')})`, names(SECTIONS), [...SECTIONS])
    .option('--skip <list>', 'sections not to run', names(SECTIONS), [] as Section[])
    .option('--seconds <s>', 'measured seconds per point (secp256k1 and EVM)', positive, 5)
    .option('--warmup <s>', 'warm-up seconds before each point', positive, 1)
    .option('--warmup-requests <n>', 'requests each single-key signer serves before its first point', count, 1000)
    .option('--extra-seconds <s>', 'measured seconds for the P-256 and Ed25519 points', positive, 3)
    .option('--concurrency <list>', 'secp256k1 digest concurrencies (the top one: one-core point)', list, [1, 16, 64])
    .option('--sessions <n>', 'PKCS#11 sessions, raw pool and service hsm.sessions alike', between(1, 256), d.sessions)
    .option('--extra <list>', 'algorithms also measured at the top concurrency ("" for none)', names(ALGORITHMS), [
      'ecdsa-p256',
      'ed25519',
    ])
    .option('--channels <n>', 'gRPC channels the service points use', between(1, 64), 1)
    .option('--evm-concurrency <n>', 'hot-wallet Sign of EVM transfers at this concurrency', between(1, 1024), 64)
    .option('--no-postgres', 'skip the PostgreSQL store (no cluster, no second signer)')
    .option('--batch-items <n>', 'SignBatch of this many EVM payouts (batch, priority)', between(1, 10_000), 1000)
    .option('--batch-runs <n>', 'large batches measured (raw and service alternating); median', between(1, 100), 5)
    .option('--priority-concurrency <n>', 'hot Sign concurrency for p99 idle vs during batches', between(1, 1024), 8)
    .option('--priority-seconds <s>', 'measured seconds of each priority window', positive, 5)
    .option('--rss-seconds <s>', "the signer's RSS under full load (hot EVM Sign) for this long", positive, 600)
    .option('--threshold-seconds <s>', 'measured seconds per threshold point', positive, 5)
    .option('--threshold-concurrency <list>', 'threshold concurrencies for throughput (latency: c=1)', list, [8, 16])
    .option('--pool-size <n>', 'threshold.poolSize of the threshold signer', between(1, 256), d.poolSize)
    .option('--suites <list>', 'threshold suites', names(SUITES), [...SUITES])
    .option('--retries <n>', 'measure a point again (at most this often) while other processes disturb it', count, 2)
    .option('--noise-budget <s>', 'seconds per run that waiting for quiet and re-measuring may add', positive, 60)
    .option('--no-profile', 'skip the profiled pass (the profile behind each missed target)')
    .option('--profile-seconds <s>', 'seconds of load per point of the profiled pass', positive, 4)
    .option('--cpu-prof <dir>', 'run the signer and cosigner children with --cpu-prof, writing the profiles into <dir>')
    .option('--child-node-arg <flag>', 'node flag for signers (repeatable), e.g. --perf-basic-prof', repeatable, [])
    .option('--out <file>', 'JSON results', join(repoRoot, '.test', 'bench-results.json'))
    .option('--keep', 'keep the temp dir (token, PKI, configs, stores) for inspection')
    .parse(argv);
  const o = program.opts<Options & { only: Section[]; skip: Section[] }>();
  if (o.quick || process.env.BENCH_QUICK === '1') {
    program.setOptionValue('quick', true);
    for (const [k, v] of Object.entries(QUICK)) {
      if (program.getOptionValueSource(k) === 'default') program.setOptionValue(k, v);
    }
  }
  if (o.concurrency.length === 0) program.error('--concurrency: at least one value');
  const { only, skip, ...rest } = program.opts<Options & { only: Section[]; skip: Section[] }>();
  return { ...rest, sections: SECTIONS.filter((s) => only.includes(s) && !skip.includes(s)) };
}
