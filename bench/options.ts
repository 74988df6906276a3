/** Command-line options of bench/sign.ts. */
import { join } from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import { configSchema } from '../src/infra/config/schema.js';
import { repoRoot } from '../harness/token.js';
import type { Algorithm } from './raw.js';

export interface Options {
  quick?: boolean;
  seconds: number;
  warmup: number;
  extraSeconds: number;
  concurrency: number[];
  sessions: number;
  extra: Algorithm[];
  channels: number;
  compareChannels: number;
  batch: number;
  evmConcurrency: number;
  postgres: boolean;
  batchItems: number;
  batchRuns: number;
  priorityConcurrency: number;
  prioritySeconds: number;
  retries: number;
  noiseBudget: number;
  cpuProf?: string;
  childNodeArg: string[];
  out: string;
  keep?: boolean;
  /** Run bench/threshold.ts's measurement at the end (--no-threshold: skip). */
  threshold: boolean;
  thresholdSeconds: number;
}

const ALGORITHMS: readonly Algorithm[] = ['ecdsa-secp256k1', 'ecdsa-p256', 'ed25519'];

/** What --quick changes, unless the option is given explicitly. */
const QUICK: Partial<Options> = { seconds: 2, warmup: 0.5, extraSeconds: 1.5, batchRuns: 3, prioritySeconds: 3, noiseBudget: 20, thresholdSeconds: 2 };

export const positive = (v: string) => {
  const n = Number(v);
  if (!(n > 0)) throw new InvalidArgumentError('expected a positive number');
  return n;
};
export const count = (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError('expected a whole number');
  return n;
};
const atLeastOne = (v: string) => {
  const n = count(v);
  if (n < 1) throw new InvalidArgumentError('expected at least 1');
  return n;
};
const algorithms = (v: string) =>
  v.split(',').map((x) => x.trim()).filter(Boolean).map((x) => {
    if (!(ALGORITHMS as readonly string[]).includes(x)) throw new InvalidArgumentError(`unknown algorithm ${x} (${ALGORITHMS.join(', ')})`);
    return x as Algorithm;
  });
const list = (v: string) => v.split(',').map((x) => count(x.trim())).filter((n) => n > 0);
const repeatable = (v: string, all: string[]) => [...all, v];

/** hsm.sessions when a config leaves it out (src/infra/config/schema.ts). */
function serviceSessions(): number {
  try {
    return configSchema.shape.hsm.parse({ uri: 'pkcs11:token=x' }).sessions;
  } catch {
    return 4;
  }
}

export function parseOptions(argv = process.argv): Options {
  const program = new Command()
    .name('bench/sign')
    .description('Signing throughput and latency: raw pkcs11js vs the gRPC service, same SoftHSM token')
    .option('--quick', `shorter points (${Object.entries(QUICK).map(([k, v]) => `${k} ${v}`).join(', ')}), about 1.5 minutes`)
    .option('--seconds <s>', 'measured seconds per point (secp256k1 and EVM)', positive, 5)
    .option('--warmup <s>', 'warm-up seconds before each point', positive, 1)
    .option('--extra-seconds <s>', 'measured seconds for the P-256 and Ed25519 points', positive, 3)
    .option('--concurrency <list>', 'concurrencies for secp256k1 digests', list, [1, 16, 64])
    .option('--sessions <n>', 'PKCS#11 sessions, raw pool and service hsm.sessions alike (the service default)', atLeastOne, serviceSessions())
    .option('--extra <list>', 'algorithms also measured at the top concurrency ("" for none)', algorithms, ['ecdsa-p256', 'ed25519'])
    .option('--channels <n>', 'gRPC channels the service points use', atLeastOne, 1)
    .option('--compare-channels <n>', 'also run secp256k1 at the top concurrency over this many channels (0: skip)', count, 4)
    .option('--batch <n>', 'also run secp256k1 through SignBatch, batches of n digests, top-concurrency signatures in flight (0: skip)', count, 16)
    .option('--evm-concurrency <n>', 'hot-wallet Sign of EVM transfers at this concurrency (0: skip)', count, 64)
    .option('--no-postgres', 'skip the PostgreSQL store (no cluster, no second signer)')
    .option('--batch-items <n>', 'SignBatch of this many EVM payouts (0: skip this and the priority scenario)', count, 1000)
    .option('--batch-runs <n>', 'large batches measured (raw and service alternating); the median is reported', atLeastOne, 5)
    .option('--priority-concurrency <n>', 'hot Sign concurrency for p99 idle vs during batches (0: skip)', count, 8)
    .option('--priority-seconds <s>', 'measured seconds of each priority window', positive, 5)
    .option('--retries <n>', 'measure a point again (this many times at most) while other processes disturb it', count, 2)
    .option('--noise-budget <s>', 'seconds per run that waiting for quiet and re-measuring may add', positive, 60)
    .option('--cpu-prof <dir>', 'run the signer child with --cpu-prof, writing the profile into <dir>')
    .option('--child-node-arg <flag>', 'extra node flag for the signer child (repeatable), e.g. --perf-basic-prof', repeatable, [] as string[])
    .option('--out <file>', 'JSON results', join(repoRoot, '.test', 'bench-results.json'))
    .option('--keep', 'keep the temp dir (token, PKI, config) for inspection')
    .option('--no-threshold', 'skip threshold signing (bench/threshold.ts: 2-of-3 FROST over 3 cosigner processes)')
    .option('--threshold-seconds <s>', 'measured seconds per threshold point', positive, 5)
    .parse(argv);
  const opts = program.opts<Options>();
  if (opts.quick) {
    for (const [k, v] of Object.entries(QUICK)) if (program.getOptionValueSource(k) === 'default') program.setOptionValue(k, v);
  }
  if (opts.concurrency.length === 0) program.error('--concurrency: at least one value');
  if (opts.batchItems > 10_000) program.error('--batch-items: at most 10000 (the service caps batches there)');
  return opts;
}
