/**
 * Threshold signing throughput and latency: 2-of-3 FROST (Ed25519 and BIP340) through the signer
 * and three cosigner processes over gRPC, against the same FROST computation in one process, in
 * one run. Also the last step of `npm run bench` (bench/sign.ts, unless --no-threshold).
 *
 *   npx tsx bench/threshold.ts [--threshold-seconds 5] [--warmup 1] [--threshold-concurrency 8,16]
 *                              [--pool-size <n>] [--suites frost-ed25519,frost-secp256k1-tr]
 *                              [--retries 2] [--noise-budget 60] [--out <file>] [--keep]
 *
 * In-process: per signature two `commit`s, two `signShare`s and `aggregate` (src/threshold/
 * participant.ts, which checks the result with noble's ed25519/schnorr verify), sequentially on
 * this thread: p50/p99 of each signature and signatures/s. Service: the real signer as a child
 * process with a `threshold` section for three real cosigners (each its own SoftHSM token), one
 * key per suite made by KeyAdmin.CreateKey (DKG), Signer.Sign as payment-engine (Ed25519: 32..64
 * byte messages; BIP340: 32-byte digests) at c=1 for latency and at each --threshold-concurrency
 * for throughput; a sample of the signatures is checked with noble's verifiers. Targets (issue):
 * service p50 at most 1.5x in-process, service sig/s above in-process.
 * Results: tables on stdout, JSON in .test/bench-threshold.json.
 */
import { join } from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import type { ThresholdAlgorithm } from '../src/core/frost/suites.js';
import { repoRoot } from '../harness/token.js';
import { Noise } from './noise.js';
import { count, positive } from './options.js';
import { runThreshold, thresholdReport, writeThresholdJson } from './threshold-run.js';
import { defaultPoolSize, WIRE_ALGORITHM } from './threshold-service.js';

const SUITES = Object.keys(WIRE_ALGORITHM) as ThresholdAlgorithm[];

const poolSize = (v: string) => {
  const n = count(v);
  if (n < 1 || n > 256) throw new InvalidArgumentError('expected 1..256 (threshold.poolSize in src/infra/config/schema.ts)');
  return n;
};
const list = (v: string) => v.split(',').map((x) => count(x.trim())).filter((n) => n > 0);
const suites = (v: string) =>
  v.split(',').map((x) => x.trim()).filter(Boolean).map((x) => {
    if (!(SUITES as string[]).includes(x)) throw new InvalidArgumentError(`unknown suite ${x} (${SUITES.join(', ')})`);
    return x as ThresholdAlgorithm;
  });

const opts = new Command()
  .name('bench/threshold')
  .description('Threshold signing (2-of-3 FROST over gRPC, 3 cosigner processes) vs the same FROST computation in one process')
  .option('--threshold-seconds <s>', 'measured seconds per point', positive, 5)
  .option('--warmup <s>', 'warm-up seconds before each point', positive, 1)
  .option('--threshold-concurrency <list>', 'service concurrencies for throughput (latency is measured at c=1)', list, [8, 16])
  .option('--pool-size <n>', 'threshold.poolSize of the signer (the config default)', poolSize, defaultPoolSize())
  .option('--suites <list>', 'suites to measure', suites, SUITES)
  .option('--retries <n>', 'measure a point again (this many times at most) while other processes disturb it', count, 2)
  .option('--noise-budget <s>', 'seconds per run that waiting for quiet and re-measuring may add', positive, 60)
  .option('--out <file>', 'JSON results', join(repoRoot, '.test', 'bench-threshold.json'))
  .option('--keep', 'keep the temp dir (tokens, PKI, configs, stores) for inspection')
  .parse()
  .opts<{ thresholdSeconds: number; warmup: number; thresholdConcurrency: number[]; poolSize: number; suites: ThresholdAlgorithm[]; retries: number; noiseBudget: number; out: string; keep?: boolean }>();

const log = (s: string) => process.stderr.write(`bench: ${s}\n`);
const noise = new Noise({ budgetSeconds: opts.noiseBudget, retries: opts.retries, log });
const result = await runThreshold(
  { seconds: opts.thresholdSeconds, warmup: opts.warmup, concurrency: opts.thresholdConcurrency, poolSize: opts.poolSize, suites: opts.suites, ...(opts.keep ? { keep: true } : {}) },
  noise,
  log,
);
console.log(thresholdReport(result));
console.log(`noise: waiting for quiet and re-measuring took ${noise.budget.spentSeconds}s of the ${opts.noiseBudget}s budget`);
await writeThresholdJson(opts.out, result, { argv: process.argv.slice(2), noise: noise.budget });
log(`results written to ${opts.out}`);
