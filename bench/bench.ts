/**
 * The benchmark, in one run on one fresh SoftHSM token: the service (the real signer as a child
 * process: gRPC + mTLS + policy + replay guard + store + audit) against raw pkcs11js on the same
 * token, and threshold signing against the same FROST computation in one process.
 *
 *   npx tsx bench/bench.ts [--quick] [--only <sections>] [--skip <sections>]   (--help: every option)
 *   BENCH_QUICK=1 is --quick: every point briefly.
 *
 * Sections, in order:
 *   one-core   the headline: the signer pinned to one CPU (taskset), the load generator (this
 *              process) on another, raw pinned to the signer's CPU: secp256k1 digest Sign at the
 *              top concurrency and at c=1, hot EVM Sign on SQLite; CPU per signature beyond raw's;
 *   sign       secp256k1 digests at each --concurrency, P-256 and Ed25519, nothing pinned;
 *   evm        hot EVM Sign on SQLite, then on PostgreSQL (a throwaway cluster, a second signer);
 *   batch      SignBatch of --batch-items EVM payouts against as many raw signs at once;
 *   priority   hot Sign p50/p99 idle and while batches are signed back to back;
 *   rss        the signer's RSS at full load (hot EVM Sign) for --rss-seconds (default 600);
 *   threshold  2-of-3 FROST over three cosigner processes against FROST in this process.
 * Then the profiled pass (--no-profile skips it; bench/profiled.ts): for each point a target
 * rests on, the same load for --profile-seconds against separate, warmed-up processes started with
 * --cpu-prof; their JS threads' busy time by phase says where the time goes for a missed target.
 * Every single-key signer serves --warmup-requests requests before its first point. Each point
 * waits for the machine to be quiet and is measured again if other processes used CPU during it
 * (flagged "!" if that never happened), within --noise-budget seconds per run.
 * Results: tables on stdout, ending with the targets of issue 14 (met or not, and for a miss the
 * profile that says where the time goes), the profiled pass's table and what was tried; JSON in
 * .test/bench-results.json (--out).
 */
import { rmSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { COSIGNER_CLIENTS } from '../harness/cosigners.js';
import { makePki } from '../harness/pki.js';
import { makeToken, tempDir } from '../harness/token.js';
import { planPinning } from './cpu.js';
import { Noise } from './noise.js';
import { parseOptions } from './options.js';
import { ProfileSession } from './profiled.js';
import { profiledSingleKey } from './profiled-single.js';
import { profiledThreshold } from './profiled-threshold.js';
import { machine, type RunResult, report } from './report.js';
import { type BenchContext, type BenchPostgres, startBenchPostgres } from './signers.js';
import { singleKeyRows } from './single-key.js';
import { checkTargets } from './targets.js';
import { thresholdRows } from './threshold.js';

const opts = parseOptions();
// As src/main.ts does for the signer: one libuv thread per session (and two spare), or the raw
// pool could not keep every session busy. The pool starts on first use, which is still to come.
process.env.UV_THREADPOOL_SIZE ??= String(Math.max(4, opts.sessions + 2));
const log = (s: string) => process.stderr.write(`bench: ${s}\n`);
const noise = new Noise({ budgetSeconds: opts.noiseBudget, retries: opts.retries, log });

const result: RunResult = {
  date: new Date().toISOString(),
  machine: machine(),
  argv: process.argv.slice(2),
  options: opts,
  pinning: planPinning(),
  rows: [],
  batches: [],
  priority: [],
  rss: [],
  targets: [],
  profiles: [],
  notes: [],
};
const tmp = await tempDir('bench-');
log(`token, PKI and stores in ${tmp.path}`);
// A signal ends the run through process.exit: every child's 'exit' reaper runs (harness/), then
// the temp dir goes (a listener added now runs after theirs).
for (const [signal, code] of [
  ['SIGINT', 130],
  ['SIGTERM', 143],
] as const) {
  process.once(signal, () => {
    log(`${signal}: stopping`);
    if (!opts.keep) process.once('exit', () => rmSync(tmp.path, { recursive: true, force: true }));
    process.exit(code);
  });
}
let pg: BenchPostgres | undefined;
try {
  const wantPg = opts.sections.includes('evm') && opts.postgres;
  const [pki, token, pgOrError] = await Promise.all([
    makePki(tmp.path, ['payment-engine', 'security-admin', ...COSIGNER_CLIENTS]),
    makeToken(tmp.path, 'bench'),
    wantPg ? startBenchPostgres(noise, log).catch((e: Error) => e) : undefined,
  ]);
  if (pgOrError instanceof Error) result.notes.push(`PostgreSQL skipped: ${pgOrError.message.split('\n')[0]}`);
  else pg = pgOrError;
  if (opts.cpuProf) await mkdir(resolve(opts.cpuProf), { recursive: true });
  const cpuProf = opts.cpuProf ? ['--cpu-prof', `--cpu-prof-dir=${resolve(opts.cpuProf)}`] : [];
  const { sessions, batchItems } = opts;
  const nodeArgs = [...cpuProf, ...opts.childNodeArg];
  const ctx: BenchContext = { dir: tmp.path, pki, token, noise, log, sessions, batchItems, nodeArgs };
  // SoftHSM reads SOFTHSM2_CONF in C_Initialize; the children get the same file via hsm.moduleEnv.
  process.env.SOFTHSM2_CONF = token.conf;

  if (opts.sections.some((s) => s !== 'threshold')) {
    const s = await singleKeyRows(ctx, opts, result.pinning, pg);
    result.rows.push(...s.rows);
    result.batches.push(...s.batches);
    result.priority.push(...s.priority);
    result.rss.push(...s.rss);
    result.notes.push(...s.notes);
  }
  // A failed threshold section is reported, and fails the run, without losing the rows before it.
  if (opts.sections.includes('threshold')) {
    const o = { ...opts, seconds: opts.thresholdSeconds, concurrency: opts.thresholdConcurrency };
    await thresholdRows(ctx, o).then(
      (t) => {
        result.rows.push(...t.rows);
        result.notes.push(...t.notes);
      },
      (e: Error) => {
        log(`threshold section failed: ${e.stack ?? String(e)}`);
        result.notes.push(`threshold section FAILED: ${e.message}`);
        process.exitCode = 1;
      },
    );
  }
  // After every measured point, so that profiling never runs beside a measurement.
  if (opts.profile) {
    const session = new ProfileSession(resolve(tmp.path, 'profiles'), log);
    const threshold = { ...opts, seconds: opts.thresholdSeconds, concurrency: opts.thresholdConcurrency };
    const parts: Array<[string, () => Promise<void>]> = [
      ['single-key', () => profiledSingleKey(ctx, opts, result.pinning, pg, session)],
      ['threshold', () => profiledThreshold(ctx, threshold, opts, session)],
    ];
    for (const [part, go] of parts) {
      if (part === 'threshold' ? !opts.sections.includes('threshold') : !opts.sections.some((s) => s !== 'threshold'))
        continue;
      await go().catch((e: Error) => {
        log(`profiled pass (${part}) failed: ${e.stack ?? String(e)}`);
        result.notes.push(`profiled pass (${part}) FAILED: ${e.message}`);
        process.exitCode = 1;
      });
    }
    result.profiles.push(...session.points);
  }
} finally {
  await pg?.stop().then(() => log('PostgreSQL stopped'));
  if (opts.keep) log(`kept ${tmp.path}`);
  else await tmp.cleanup();
}

result.targets = checkTargets(result);
const { spentSeconds, budgetSeconds } = noise.budget;
result.notes.push(`noise: waiting for quiet and re-measuring took ${spentSeconds}s of the ${budgetSeconds}s budget`);
console.log(report(result));
await mkdir(dirname(opts.out), { recursive: true });
await writeFile(opts.out, `${JSON.stringify({ ...result, noise: noise.budget }, null, 2)}\n`);
log(`results written to ${opts.out}`);
