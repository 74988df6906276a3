/**
 * The threshold bench as one step, for bench/threshold.ts and for the end of bench/sign.ts:
 * 2-of-3 FROST (Ed25519 and BIP340) through the signer and three cosigner processes over gRPC,
 * against the same FROST computation in this one process, in the same run. Every process and
 * the temp dir are gone when it returns or throws (and on SIGINT/SIGTERM).
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { performance } from 'node:perf_hooks';
import type * as grpc from '@grpc/grpc-js';
import { connect } from '../src/client/client.js';
import { SUITES, type ThresholdAlgorithm } from '../src/core/frost/suites.js';
import { COSIGNER_CLIENTS, type CosignerNode } from '../harness/cosigners.js';
import { makePki } from '../harness/pki.js';
import { makeToken, tempDir } from '../harness/token.js';
import { sampleCpu } from './cpu.js';
import { Noise } from './noise.js';
import { machine, type Machine } from './report.js';
import type { ServiceChild } from './service.js';
import { localKeys, measureLocal, payloads, signLocally } from './threshold-local.js';
import { measureThresholdPoint, verifies, type ThresholdServicePoint } from './threshold-point.js';
import { probeCosigner } from './threshold-probe.js';
import { thresholdCpuTable, thresholdTable, thresholdTargets, whereTimeGoes, type SuiteResult, type ThresholdTarget } from './threshold-report.js';
import { Children, defaultPoolSize, emergencyCleanup, startThresholdService, stopService, WIRE_ALGORITHM } from './threshold-service.js';

export interface ThresholdOptions {
  /** Measured seconds per point (in-process and each service concurrency). */
  seconds: number;
  /** Warm-up seconds before each point. */
  warmup: number;
  /** Service concurrencies for throughput (latency is always measured at c=1). */
  concurrency: number[];
  /** threshold.poolSize of the signer: nonce commitments fetched ahead per cosigner and key. */
  poolSize: number;
  suites: ThresholdAlgorithm[];
  keep?: boolean;
}

/** Both suites, c=8 and 16, the config's pool size: what `npm run bench` runs. */
export function thresholdOptions(o: { seconds: number; warmup: number; keep?: boolean | undefined }): ThresholdOptions {
  return {
    seconds: o.seconds,
    warmup: o.warmup,
    concurrency: [8, 16],
    poolSize: defaultPoolSize(),
    suites: Object.keys(WIRE_ALGORITHM) as ThresholdAlgorithm[],
    ...(o.keep ? { keep: true } : {}),
  };
}

export interface ThresholdResult {
  date: string;
  machine: Machine;
  options: ThresholdOptions;
  suites: SuiteResult[];
  targets: ThresholdTarget[];
}

/** SignShare calls of the cosigner probe, per suite. */
const PROBE_SHARES = 200;

const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Waits (at most `maxMs`) until the signer and the cosigners have used under 3% of a core for
 * 300 ms: background refills of the nonce-commitment pools are done, the pools are full.
 */
async function settled(pids: number[], maxMs = 5000): Promise<boolean> {
  const used = () => pids.reduce((s, pid) => s + (sampleCpu(pid).total ?? 0), 0);
  const until = performance.now() + maxMs;
  while (performance.now() < until) {
    const a = used();
    await pause(300);
    if ((used() - a) / 0.3 < 0.03) return true;
  }
  return false;
}

export async function runThreshold(o: ThresholdOptions, noise: Noise, log: (s: string) => void): Promise<ThresholdResult> {
  const started = new Date();
  const mach = machine();
  const children = new Children();
  const tmp = await tempDir('bench-threshold-');
  log(`threshold: PKI, tokens and stores in ${tmp.path}`);
  const running: { signer?: ServiceChild; cosigners: CosignerNode[] } = { cosigners: [] };
  const onExit = () => emergencyCleanup(children, tmp.path, !!o.keep);
  const onSignal = (signal: NodeJS.Signals) => {
    log(`threshold: ${signal}: stopping every child process`);
    onExit();
    process.exit(signal === 'SIGINT' ? 130 : 143);
  };
  process.once('exit', onExit);
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const watched: string[] = [];
  let engine: { close(): void } | undefined;
  const suites: SuiteResult[] = [];
  try {
    const [pki, token] = await Promise.all([makePki(tmp.path, ['payment-engine', 'security-admin', ...COSIGNER_CLIENTS]), makeToken(tmp.path, 'bench-threshold')]);
    const svc = await startThresholdService(tmp.path, pki, token, {
      poolSize: o.poolSize,
      started: (p) => {
        if (p.signer) running.signer = p.signer;
        if (p.cosigners) running.cosigners = p.cosigners;
      },
      log: (s) => log(`threshold: ${s}`),
    });
    const cosignerPids = svc.cosigners.map((c) => c.proc.child.pid!);
    const ours = [svc.signer.pid, ...cosignerPids];
    noise.watch('threshold-signer', () => sampleCpu(svc.signer.pid).total);
    watched.push('threshold-signer');
    for (const [i, pid] of cosignerPids.entries()) {
      noise.watch(`cosigner-${i + 1}`, () => sampleCpu(pid).total);
      watched.push(`cosigner-${i + 1}`);
    }
    const clients = connect(svc.address, { ca: pki.caCert, ...pki.clients['payment-engine']! });
    engine = clients;
    const signers: grpc.Client[] = [clients.signer];

    for (const suite of o.suites) {
      const key = svc.keys[suite];
      const messages = payloads(suite);

      // 1. The same FROST computation, sequential, in this process.
      const keys = localKeys(suite);
      const first = messages[0]!;
      if (!verifies(suite, signLocally(suite, keys, first, 0), first, SUITES[suite].chainPublicKey(keys[0]!.public))) {
        throw new Error(`${suite}: the in-process signature does not verify`);
      }
      const local = await noise.quiet(`threshold ${suite} in-process, sequential (${o.seconds}s)`, () => measureLocal(noise, suite, keys, messages, o));

      // 2. The service: warm up at the top concurrency (JIT, channels, nonce pools), let the
      //    pools refill, then c=1 for latency and each concurrency for throughput.
      const base = { suite, key, signers, payloads: messages, signerPid: svc.signer.pid, cosignerPids, metricsUrl: svc.metricsUrl };
      const top = Math.max(1, ...o.concurrency);
      // A few signatures one at a time first: with every pool empty, each of `top` concurrent
      // first signatures would fetch poolSize commitments from two cosigners itself.
      const prime = await measureThresholdPoint(noise, { ...base, concurrency: 1, seconds: 0.3, warmup: 0 });
      if (prime.errors) throw new Error(`${suite}: first signatures failed: ${prime.firstError}`);
      if (!(await settled(ours, 30_000))) log(`threshold: signer and cosigners still busy after the first signatures`);
      log(`threshold ${suite} service warm-up, c=${top} (${Math.max(2, 2 * o.warmup)}s)`);
      const warm = await measureThresholdPoint(noise, { ...base, concurrency: top, seconds: Math.max(2, 2 * o.warmup), warmup: 0 });
      if (warm.errors) throw new Error(`${suite}: warm-up signing failed: ${warm.firstError}`);
      const service: ThresholdServicePoint[] = [];
      for (const c of [1, ...o.concurrency.filter((x) => x > 1)]) {
        if (!(await settled(ours))) log(`threshold: signer and cosigners still busy before c=${c}; measuring anyway`);
        service.push(
          await noise.quiet(`threshold ${suite} service c=${c} (${o.seconds}s)`, () => measureThresholdPoint(noise, { ...base, concurrency: c, seconds: o.seconds, warmup: o.warmup })),
        );
      }
      // 3. One cosigner alone, SignShare after SignShare: its cost per share, for "where the time goes".
      const [ca, cb] = [svc.cosigners[0]!, svc.cosigners[1]!];
      const probe = await noise.quiet(`threshold ${suite} cosigner ${ca.id} SignShare probe, sequential (${PROBE_SHARES} shares)`, () =>
        probeCosigner(noise, { suite, keyId: key.keyId, pki, a: { id: ca.id, address: ca.address, pid: ca.proc.child.pid! }, b: { id: cb.id, address: cb.address }, payloads: messages, shares: PROBE_SHARES }),
      );
      suites.push({ suite, keyId: key.keyId, local, service, probe, targets: thresholdTargets(suite, local, service) });
    }
  } finally {
    engine?.close();
    for (const name of watched) noise.unwatch(name);
    for (const line of await stopService(running)) log(`threshold: ${line}`);
    const killed = children.reap();
    if (killed.length) log(`threshold: killed leftover child processes ${killed.join(', ')}`);
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
    process.removeListener('exit', onExit);
    if (o.keep) log(`threshold: kept ${tmp.path}`);
    else await tmp.cleanup();
  }
  return { date: started.toISOString(), machine: mach, options: o, suites, targets: suites.flatMap((s) => s.targets) };
}

/** The stdout report of a run. */
export function thresholdReport(r: ThresholdResult): string {
  const m = r.machine;
  return [
    `hsm-signer threshold bench, ${r.date}`,
    `machine: ${m.cpuModel}, nproc ${m.nproc}, ${m.memGiB} GiB, Linux ${m.kernel}, node ${m.node}, SoftHSM ${m.softhsm}`,
    `setup: 2-of-3 FROST (${r.options.suites.map((s) => `${s} = ${WIRE_ALGORITHM[s]}`).join(', ')}); in-process = two commits, two signShares and aggregate` +
      ` (with noble's independent verification) one after the other on this thread; service = Signer.Sign over mTLS to the signer child` +
      ` (policy, replay guard, SQLite store, audit) coordinating 3 cosigner processes (own SoftHSM token and SQLite each), threshold.poolSize ${r.options.poolSize};` +
      ` ${r.options.warmup}s warm-up and ${r.options.seconds}s per point; client, signer and cosigners share the machine's CPUs`,
    '',
    thresholdTable(r.suites),
    '',
    ...r.targets.map((t) => t.text),
    '',
    'CPU per signature by process (µs), cores busy in all, JS-thread busy share, the signer\'s own Sign latency (mean):',
    thresholdCpuTable(r.suites),
    '',
    'Where the time goes:',
    ...r.suites.flatMap(whereTimeGoes),
  ].join('\n');
}

export async function writeThresholdJson(file: string, r: ThresholdResult, extra: Record<string, unknown> = {}): Promise<void> {
  await mkdir(dirname(file), { recursive: true });
  await writeFile(file, `${JSON.stringify({ ...r, ...extra }, null, 2)}\n`);
}

/**
 * The threshold step of `npm run bench` (bench/sign.ts): runs, prints the report, writes
 * `jsonFile`, and returns what goes under the `threshold` key of bench-results.json. It keeps its
 * own noise budget: the processes bench/sign.ts watched are gone by now, and a source that no
 * longer answers would blind every noise check. A failure is reported (and sets the exit code),
 * not thrown, so the rest of the run keeps its results.
 */
export async function thresholdSection(
  o: ThresholdOptions,
  n: { budgetSeconds: number; retries: number },
  log: (s: string) => void,
  jsonFile: string,
): Promise<(ThresholdResult & { noise: Noise['budget'] }) | { error: string }> {
  const noise = new Noise({ ...n, log });
  try {
    const r = { ...(await runThreshold(o, noise, log)), noise: noise.budget };
    console.log(`\n${thresholdReport(r)}`);
    console.log(`threshold noise: waiting for quiet and re-measuring took ${noise.budget.spentSeconds}s of the ${n.budgetSeconds}s budget`);
    await writeThresholdJson(jsonFile, r);
    log(`threshold results written to ${jsonFile}`);
    return r;
  } catch (e) {
    log(`threshold bench failed: ${(e as Error).stack ?? String(e)}`);
    process.exitCode = 1;
    return { error: (e as Error).message ?? String(e) };
  }
}
