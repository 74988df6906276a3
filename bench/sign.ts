/**
 * Signing throughput and latency: raw pkcs11js against the whole service (gRPC + mTLS + policy +
 * replay guard + store), in one run on one fresh SoftHSM token.
 *
 *   npx tsx bench/sign.ts [--quick] [--seconds 5] [--warmup 1] [--extra-seconds 3] [--concurrency 1,16,64]
 *                         [--extra ecdsa-p256,ed25519] [--channels 1] [--compare-channels 4] [--batch 16]
 *                         [--evm-concurrency 64] [--no-postgres] [--batch-items 1000] [--batch-runs 5]
 *                         [--priority-concurrency 8] [--priority-seconds 5] [--retries 2] [--noise-budget 60]
 *                         [--cpu-prof <dir>] [--child-node-arg <flag>]... [--out <file>] [--keep]
 *                         [--no-threshold] [--threshold-seconds 5]
 *
 * `raw` keeps c sign loops going straight on pkcs11js (same token, same session count as the
 * service); `service` keeps c calls going against the real signer running as a child process,
 * which always runs the policy and the replay guard. The two never run at once. Scenarios:
 *   1. Sign of secp256k1 digests at each --concurrency (and channels, small batches, other algorithms);
 *   2. hot-wallet Sign of EVM transfers (unique nonces) at --evm-concurrency, SQLite store, then
 *      PostgreSQL (a throwaway cluster and a second signer child);
 *   3. SignBatch of --batch-items EVM payouts (contiguous nonces) against as many raw signs at once;
 *   4. hot Sign p50/p99 at --priority-concurrency, idle and while batches are signed back to back;
 *   5. threshold signing, 2-of-3 FROST over 3 cosigner processes vs in one process (bench/threshold.ts).
 * Each point waits for the machine to be quiet and is measured again if other processes used CPU
 * during it (flagged "!" if that never happened), within --noise-budget seconds per run.
 * Results: tables on stdout, JSON in .test/bench-results.json.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import type * as grpc from '@grpc/grpc-js';
import { call, connect } from '../src/client/client.js';
import { makePki } from '../harness/pki.js';
import { makeToken, repoRoot, tempDir } from '../harness/token.js';
import { measureBatches, type BatchPoint } from './batch.js';
import { sampleCpu } from './cpu.js';
import { measureRaw, measureService, type Service } from './measure.js';
import { Noise } from './noise.js';
import { parseOptions } from './options.js';
import { Nonces, payload, signBatchOp, signEvmOp, signOp } from './ops.js';
import { startBenchPostgres, type BenchPostgres } from './postgres.js';
import { measurePriority, startBatchDriver, type BatchDriver, type PriorityPoint } from './priority.js';
import { RawToken, type Algorithm, type RawKey } from './raw.js';
import { batchTable, cpuTable, machine, priorityTable, throughputTable, type RawPoint, type Row } from './report.js';
import { freePort, signerChannels, startServiceChild, waitForReady, writeServiceConfig, type Channels, type ServiceChild } from './service.js';
import { checkTargets } from './targets.js';
import { thresholdOptions, thresholdSection } from './threshold-run.js';

const WIRE: Record<Algorithm, string> = { 'ecdsa-secp256k1': 'ECDSA_SECP256K1', 'ecdsa-p256': 'ECDSA_P256', ed25519: 'ED25519' };
const KEY_ID: Record<Algorithm, string> = { 'ecdsa-secp256k1': 'bench-k1', 'ecdsa-p256': 'bench-r1', ed25519: 'bench-ed' };
/** Keys of the EVM scenarios: policy `hot` governs hot-*, policy `payout` governs payout-* (bench/service.ts). */
const EVM_KEYS = { hotSqlite: 'hot-evm', hotPostgres: 'hot-evm-pg', payout: 'payout-bench', prioHot: 'hot-prio', prioPayout: 'payout-prio' };

const opts = parseOptions();
const top = Math.max(...opts.concurrency);
// As src/main.ts does for the signer: one libuv thread per session (and two spare), or the raw
// pool could not keep every session busy. The pool starts on first use, which is still to come.
process.env.UV_THREADPOOL_SIZE ??= String(Math.max(4, opts.sessions + 2));
const log = (s: string) => process.stderr.write(`bench: ${s}\n`);
const noise = new Noise({ budgetSeconds: opts.noiseBudget, retries: opts.retries, log });

async function main() {
  const started = new Date();
  const mach = machine();
  const tmp = await tempDir('bench-');
  log(`token and PKI in ${tmp.path}`);
  let raw: RawToken | undefined;
  const children: ServiceChild[] = [];
  let pg: BenchPostgres | undefined;
  let driver: BatchDriver | undefined;
  const open: Array<{ close(): void }> = [];
  const rows: Row[] = [];
  const batches: BatchPoint[] = [];
  const priority: PriorityPoint[] = [];
  const notes: string[] = [];
  try {
    const wantPg = opts.postgres && opts.evmConcurrency > 0;
    const [pki, token, pgOrError] = await Promise.all([
      makePki(tmp.path, ['payment-engine', 'security-admin']),
      makeToken(tmp.path, 'bench'),
      wantPg ? startBenchPostgres(log).catch((e: Error) => e) : undefined,
    ]);
    if (pgOrError instanceof Error) notes.push(`PostgreSQL skipped: ${pgOrError.message.split('\n')[0]}`);
    else pg = pgOrError;
    // SoftHSM reads SOFTHSM2_CONF in C_Initialize; the children get the same file via hsm.moduleEnv.
    process.env.SOFTHSM2_CONF = token.conf;

    raw = RawToken.open(token.modulePath, token.label, token.userPin, opts.sessions);
    const rawKeys = {} as Record<Algorithm, RawKey>;
    for (const alg of Object.keys(WIRE) as Algorithm[]) rawKeys[alg] = await raw.generateKey(alg);

    const nodeArgs = [...(opts.cpuProf ? ['--cpu-prof', '--cpu-prof-dir', resolve(opts.cpuProf)] : []), ...opts.childNodeArg];
    if (opts.cpuProf) await mkdir(resolve(opts.cpuProf), { recursive: true });
    /** A signer child on this token, with its admin-created keys; watched as the bench's own CPU. */
    const startSigner = async (name: string, keys: Array<[string, string]>, store?: unknown, storeCpu?: Service['storeCpu']) => {
      const [port, metricsPort] = [await freePort(), await freePort()];
      const configFile = await writeServiceConfig(tmp.path, pki, token, { port, metricsPort, sessions: opts.sessions, batchItems: opts.batchItems, name, store });
      const child = await startServiceChild({ repoRoot, configFile, port, nodeArgs });
      children.push(child);
      noise.watch(name, () => sampleCpu(child.pid).total);
      const address = `127.0.0.1:${port}`;
      log(`${name} child pid ${child.pid} on ${address}, metrics :${metricsPort}`);
      const admin = connect(address, { ca: pki.caCert, ...pki.clients['security-admin']! });
      try {
        for (const [keyId, algorithm] of keys) await call(admin.keyAdmin, 'CreateKey', { keyId, algorithm });
      } finally {
        admin.close();
      }
      const svc: Service = { pid: child.pid, metricsUrl: `http://127.0.0.1:${metricsPort}/metrics`, ...(storeCpu ? { storeCpu } : {}) };
      return { svc, address };
    };
    if (pg) noise.watch('postgres', pg.cpu);
    const k1 = WIRE['ecdsa-secp256k1'];
    // One after the other: SoftHSM 2.6 fails on concurrent key generation, across processes too.
    const sqlite = await startSigner('signer-sqlite', [
      ...(Object.keys(WIRE) as Algorithm[]).map((alg): [string, string] => [KEY_ID[alg], WIRE[alg]]),
      ...[EVM_KEYS.hotSqlite, EVM_KEYS.payout, EVM_KEYS.prioHot, EVM_KEYS.prioPayout].map((k): [string, string] => [k, k1]),
    ]);
    const postgres = pg
      ? await startSigner('signer-postgres', [[EVM_KEYS.hotPostgres, k1]], { postgres: { url: pg.url } }, pg.cpu).catch((e: Error) => {
          notes.push(`PostgreSQL row skipped: the signer on PostgreSQL did not start: ${e.message.split('\n')[0]}`);
          return undefined;
        })
      : undefined;

    const engineTls = { ca: pki.caCert, ...pki.clients['payment-engine']! };
    const channels = async (address: string, n: number) => {
      const ch = signerChannels(address, engineTls, n);
      open.push(ch);
      await waitForReady(ch.signers as grpc.Client[]);
      return ch;
    };
    const primary = await channels(sqlite.address, opts.channels);

    const measure = { warmup: opts.warmup };
    const rawPoint = (algorithm: Algorithm, c: number, seconds: number) =>
      noise.quiet(`${algorithm} c=${c} raw (${seconds}s)`, () => measureRaw(noise, raw!, rawKeys[algorithm], payload, { ...measure, concurrency: c, seconds }));
    const rawAt = (algorithm: Algorithm, c: number) => rows.find((x) => x.algorithm === algorithm && x.concurrency === c && x.raw)?.raw;

    /** A service row; raw measured alongside, or taken from an earlier row at the same concurrency. */
    const point = async (
      algorithm: Algorithm,
      c: number,
      seconds: number,
      o: { svc?: Service; ch?: Channels; op?: () => (seq: number) => Promise<number>; what?: string; withRaw?: boolean; label?: string; note?: string; batch?: number } = {},
    ) => {
      const { svc = sqlite.svc, ch = primary, withRaw = true, batch } = o;
      const kind = algorithm === 'ed25519' ? 'message' : 'digest';
      const r: RawPoint | undefined = withRaw ? await rawPoint(algorithm, c, seconds) : undefined;
      const inFlight = batch ? Math.ceil(c / batch) : c;
      // A new op per attempt: a re-measured point must not replay the request ids of the first.
      const op = o.op ?? (() => (batch ? signBatchOp(ch.signers, KEY_ID[algorithm], kind, batch) : signOp(ch.signers, KEY_ID[algorithm], kind)));
      const what = o.what ?? (batch ? `SignBatch of ${batch}, ${inFlight} in flight` : `${ch.signers.length} channel(s)`);
      const s = await noise.quiet(`${o.label ?? algorithm} c=${c} service, ${what} (${seconds}s)`, () =>
        measureService(noise, svc, op(), { ...measure, concurrency: inFlight, seconds, algorithm, channels: ch.signers.length, batch }),
      );
      const ref = r ?? rawAt(algorithm, c);
      const row: Row = { algorithm, ...(o.label ? { label: o.label } : {}), concurrency: c, raw: r, service: s, ratio: ref ? s.unitsPerSec / ref.unitsPerSec : undefined, note: o.note };
      rows.push(row);
      return row;
    };

    // 1. secp256k1 digests (the policy and replay guard run on every call)
    for (const c of opts.concurrency) await point('ecdsa-secp256k1', c, opts.seconds);
    if (opts.compareChannels > 0 && opts.compareChannels !== opts.channels) {
      const other = await channels(sqlite.address, opts.compareChannels);
      await point('ecdsa-secp256k1', top, opts.seconds, { ch: other, withRaw: false, note: `${opts.compareChannels} channels; raw from the c=${top} row` });
      other.close();
    }
    if (opts.batch > 0) {
      const note = `SignBatch: ${Math.ceil(top / opts.batch)} batch(es) of ${opts.batch} in flight, latency per batch; raw from the c=${top} row`;
      await point('ecdsa-secp256k1', top, opts.seconds, { withRaw: false, note, batch: opts.batch });
    }
    for (const alg of opts.extra) await point(alg, top, opts.extraSeconds);

    // 2. hot wallet: EVM transfers with unique nonces, SQLite then PostgreSQL
    if (opts.evmConcurrency > 0) {
      const c = opts.evmConcurrency;
      const nonces = { hotSqlite: new Nonces(), hotPostgres: new Nonces() };
      const withRaw = !rawAt('ecdsa-secp256k1', c);
      const rawNote = withRaw ? '' : `; raw from the c=${c} row`;
      await point('ecdsa-secp256k1', c, opts.seconds, {
        withRaw,
        label: 'evm-tx sqlite',
        what: 'EVM transfers',
        op: () => signEvmOp(primary.signers, EVM_KEYS.hotSqlite, nonces.hotSqlite),
        note: `hot Sign of EIP-1559 transfers, SQLite store${rawNote}`,
      });
      if (postgres) {
        const ch = await channels(postgres.address, opts.channels);
        const row = await point('ecdsa-secp256k1', c, opts.seconds, {
          svc: postgres.svc,
          ch,
          withRaw: false,
          label: 'evm-tx postgres',
          what: 'EVM transfers',
          op: () => signEvmOp(ch.signers, EVM_KEYS.hotPostgres, nonces.hotPostgres),
        });
        const store = row.service.store;
        row.note = `hot Sign of EIP-1559 transfers, PostgreSQL store (postgres: ${fmt(store?.cores, 2)} cores, ${fmt(store?.usPerSign, 0)} µs/sign); raw from the c=${c} row`;
        ch.close();
      }
    }

    // 3. large batches of EVM payouts
    if (opts.batchItems > 0) {
      batches.push(
        await measureBatches(noise, {
          raw,
          rawKey: rawKeys['ecdsa-secp256k1'],
          signer: primary.signers[0]!,
          svcPid: sqlite.svc.pid,
          keyId: EVM_KEYS.payout,
          nonces: new Nonces(),
          items: opts.batchItems,
          runs: opts.batchRuns,
        }),
      );
    }

    // 4. hot p99 idle vs while batches are signed on another key of the same signer
    if (opts.batchItems > 0 && opts.priorityConcurrency > 0) {
      const tls = pki.clients['payment-engine']!;
      driver = await startBatchDriver(repoRoot, {
        address: sqlite.address,
        tls: { ca: pki.caCert.toString(), cert: tls.cert.toString(), key: tls.key.toString() },
        keyId: EVM_KEYS.prioPayout,
        items: opts.batchItems,
      });
      priority.push(
        await measurePriority(noise, {
          signers: primary.signers,
          metricsUrl: sqlite.svc.metricsUrl,
          hotKey: EVM_KEYS.prioHot,
          hotNonces: new Nonces(),
          driver,
          batchKey: EVM_KEYS.prioPayout,
          batchItems: opts.batchItems,
          concurrency: opts.priorityConcurrency,
          seconds: opts.prioritySeconds,
          warmup: opts.warmup,
        }),
      );
    }
  } finally {
    open.forEach((c) => c.close());
    await driver?.close();
    for (const [i, child] of children.entries()) log(`signer child ${i + 1} stopped (${await child.stop()})`);
    await pg?.stop().then(() => log('PostgreSQL stopped'));
    raw?.close();
    if (opts.keep) log(`kept ${tmp.path}`);
    else await tmp.cleanup();
  }

  const targets = checkTargets(rows, batches, priority, { top, channels: opts.channels, evmConcurrency: opts.evmConcurrency });
  const out = [
    header(started, mach),
    '',
    throughputTable(rows),
    ...(batches.length ? ['', `SignBatch of ${opts.batchItems} EVM payouts vs ${opts.batchItems} raw signs issued at once (medians of ${opts.batchRuns} runs each, alternating):`, batchTable(batches)] : []),
    ...(priority.length ? ['', `Hot Sign latency, signer idle vs ${opts.batchItems}-item batches signed back to back on another key (loop: interval of the signer's 10 ms event-loop delay timer, 10 = no delay; in-flight: share of the window with a batch running):`, priorityTable(priority)] : []),
    '',
    ...targets.map((t) => t.text),
    ...notes,
    `noise: waiting for quiet and re-measuring took ${noise.budget.spentSeconds}s of the ${opts.noiseBudget}s budget`,
    '',
    'CPU per sign (µs, whole process), cores busy, JS thread busy; server-side handler and HSM-session-held means (ms):',
    cpuTable(rows),
  ].join('\n');
  console.log(out);

  const threshold = opts.threshold
    ? await thresholdSection(thresholdOptions({ seconds: opts.thresholdSeconds, warmup: opts.warmup, keep: opts.keep }), { budgetSeconds: opts.noiseBudget, retries: opts.retries }, log, resolve(opts.out, '..', 'bench-threshold.json'))
    : undefined;
  await mkdir(resolve(opts.out, '..'), { recursive: true });
  const json = { date: started.toISOString(), machine: mach, argv: process.argv.slice(2), options: opts, rows, batches, priority, targets, noise: noise.budget, ...(threshold ? { threshold } : {}) };
  await writeFile(opts.out, `${JSON.stringify(json, null, 2)}\n`);
  log(`results written to ${opts.out}`);
}

const fmt = (n: number | undefined, digits: number) => (n === undefined ? '-' : n.toFixed(digits));

function header(started: Date, mach: ReturnType<typeof machine>): string {
  const threadpool = Number(process.env.UV_THREADPOOL_SIZE) || 4;
  return [
    `hsm-signer sign bench, ${started.toISOString()}`,
    `machine: ${mach.cpuModel}, nproc ${mach.nproc}, ${mach.memGiB} GiB, Linux ${mach.kernel}, node ${mach.node}, SoftHSM ${mach.softhsm}`,
    `setup: one fresh SoftHSM token; raw pool and every signer ${opts.sessions} sessions; UV_THREADPOOL_SIZE ${mach.uvThreadpoolSize};` +
      ` ${opts.warmup}s warm-up, ${opts.seconds}s per point (P-256/Ed25519 ${opts.extraSeconds}s)`,
    `service: signer child process (policy + replay guard on every call; SQLite store unless noted), Signer.Sign over mTLS with 32-byte digest` +
      ` (Ed25519: 32-byte message) or EIP-1559 transfer payloads, driven from this process over ${opts.channels} gRPC channel(s) (ch column);` +
      ` the client shares the machine's CPUs with the signer and SoftHSM`,
    ...(opts.sessions > threadpool
      ? [`note: ${opts.sessions} sessions but a libuv threadpool of ${threadpool}: at most ${threadpool} C_SignAsync run at once (set UV_THREADPOOL_SIZE)`]
      : []),
  ].join('\n');
}

await main();
