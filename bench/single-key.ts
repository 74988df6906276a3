/**
 * Single-key points: the signer on SQLite (and a second one on PostgreSQL for its row) against
 * raw pkcs11js on the same token, same session count. Sections one-core, sign, evm, batch and
 * priority of bench/bench.ts; every row goes through the one point runner (bench/point.ts).
 */
import { repoRoot } from '../harness/token.js';
import { type BatchPoint, measureBatches } from './batch.js';
import { type Pinning, pin } from './cpu.js';
import { type Op, runCount } from './load.js';
import { Nonces, payload, signEvmOp, signOp } from './ops.js';
import type { Options, Section } from './options.js';
import { measurePoint, type PointOptions, type Row, type Side } from './point.js';
import { measurePriority, type PriorityPoint, startBatchDriver } from './priority.js';
import { type Algorithm, type RawKey, RawToken } from './raw.js';
import { measureRss, type RssPoint } from './rss.js';
import type { BenchContext, BenchPostgres, BenchSigner } from './signers.js';
import { NO_MARK, signerChannels, startBenchSigner } from './signers.js';
import { POINTS } from './targets.js';

const K1 = 'ecdsa-secp256k1';
const WIRE: Record<Algorithm, string> = { [K1]: 'ECDSA_SECP256K1', 'ecdsa-p256': 'ECDSA_P256', ed25519: 'ED25519' };
const KEY_ID: Record<Algorithm, string> = { [K1]: 'bench-k1', 'ecdsa-p256': 'bench-r1', ed25519: 'bench-ed' };
const POINT: Record<Algorithm, string> = {
  [K1]: POINTS.digest,
  'ecdsa-p256': 'P-256 digest Sign',
  ed25519: 'Ed25519 message Sign',
};
/** Keys of the EVM points: policy `hot` governs hot-*, policy `payout` governs payout-* (bench/signers.ts). */
const EVM = {
  hot: 'hot-evm',
  hotPg: 'hot-evm-pg',
  payout: 'payout-bench',
  prioHot: 'hot-prio',
  prioPayout: 'payout-prio',
};
const EVM_NOTE = 'raw: the secp256k1 digest signature';

export interface SingleKeyResult {
  rows: Row[];
  batches: BatchPoint[];
  priority: PriorityPoint[];
  rss: RssPoint[];
  notes: string[];
}

/** A service row to measure; its raw side is measured at the same concurrency and CPUs. */
interface PointSpec {
  point: string;
  alg: Algorithm;
  c: number;
  cpus: Row['cpus'];
  op: () => Op;
  signer?: BenchSigner;
  note?: string;
}

export async function singleKeyRows(
  ctx: BenchContext,
  opts: Options,
  pinning: Pinning,
  pg: BenchPostgres | undefined,
): Promise<SingleKeyResult> {
  const out: SingleKeyResult = { rows: [], batches: [], priority: [], rss: [], notes: [] };
  const run = (s: Section) => opts.sections.includes(s);
  const top = Math.max(...opts.concurrency);
  const { noise, log } = ctx;
  const algorithms: Algorithm[] = [K1, ...opts.extra.filter((a) => a !== K1)];
  const raw = RawToken.open(ctx.token.modulePath, ctx.token.label, ctx.token.userPin, opts.sessions);
  const tls = { ca: ctx.pki.caCert, ...ctx.pki.clients['payment-engine']! };
  const warmUp = async (op: Op, c: number) => {
    const w = await runCount(op, opts.warmupRequests, c);
    if (w.errors) log(`warm-up: ${w.errors} of ${opts.warmupRequests} requests failed; first: ${w.firstError}`);
  };
  try {
    const rawKeys = {} as Record<Algorithm, RawKey>;
    for (const alg of algorithms) rawKeys[alg] = await raw.generateKey(alg);
    const sqlite = await startBenchSigner(ctx, 'signer-sqlite', [
      ...algorithms.map((alg): [string, string] => [KEY_ID[alg], WIRE[alg]]),
      ...[EVM.hot, EVM.payout, EVM.prioHot, EVM.prioPayout].map((k): [string, string] => [k, WIRE[K1]]),
    ]);
    const primary = await signerChannels(sqlite.address, tls, opts.channels);
    const nonces = new Nonces();
    try {
      log(`warm-up: ${opts.warmupRequests} digest and ${opts.warmupRequests} EVM Sign requests`);
      await warmUp(signOp(primary.signers, KEY_ID[K1], 'digest'), top);
      await warmUp(signEvmOp(primary.signers, EVM.hot, nonces), opts.evmConcurrency);

      // Raw at (algorithm, c, cpus), measured once per run and shared by the rows that compare with it.
      const raws = new Map<string, Promise<Side>>();
      const rawSide = (alg: Algorithm, c: number, cpus: Row['cpus'], seconds: number) => {
        const key = `${alg}/${c}/${cpus}`;
        if (!raws.has(key)) {
          const op = (): Op => (seq) => raw.sign(rawKeys[alg], payload(seq)).then(() => 1);
          const o = { ...opts, seconds, concurrency: c, watch: { raw: process.pid } };
          const measure = () => measurePoint(noise, `${alg} raw (${cpus} cpus)`, op, o);
          // Raw on one CPU: this process moves to the signer's CPU for the point, and back.
          const one = cpus === 'one' && !('skipped' in pinning);
          raws.set(key, one ? pinned(process.pid, pinning.signer, pinning.load, measure) : measure());
        }
        return raws.get(key)!;
      };
      const point = async (p: PointSpec) => {
        const seconds = p.alg === K1 ? opts.seconds : opts.extraSeconds;
        const base = { name: 'raw', ...(await rawSide(p.alg, p.c, p.cpus, seconds)) };
        const signer = p.signer ?? sqlite;
        const store: PointOptions['watch'] = signer !== sqlite && pg ? { postgres: pg.cpu } : {};
        const watch: PointOptions['watch'] = { signer: signer.pid, client: process.pid, ...store };
        const o = { ...opts, seconds, concurrency: p.c, watch, metrics: { url: signer.metricsUrl, algorithm: p.alg } };
        const service = await measurePoint(noise, `${p.point} service`, p.op, o);
        const note = p.note ? { note: p.note } : {};
        out.rows.push({ point: p.point, cpus: p.cpus, concurrency: p.c, base, service, ...note });
      };
      const digest = (alg: Algorithm, c: number, cpus: Row['cpus']) => {
        const kind = alg === 'ed25519' ? 'message' : 'digest';
        return point({ point: POINT[alg], alg, c, cpus, op: () => signOp(primary.signers, KEY_ID[alg], kind) });
      };
      const evm = (cpus: Row['cpus']) => {
        const op = () => signEvmOp(primary.signers, EVM.hot, nonces);
        return point({ point: POINTS.evmSqlite, alg: K1, c: opts.evmConcurrency, cpus, op, note: EVM_NOTE });
      };

      if (run('one-core')) {
        const headline = async () => {
          await digest(K1, top, 'one');
          await evm('one');
          if (top !== 1) await digest(K1, 1, 'one');
        };
        if ('skipped' in pinning) {
          out.notes.push(`one-core rows NOT pinned: ${pinning.skipped}; they ran on every CPU like the others`);
          await headline();
        } else {
          // The signer moves to its CPU and this process (the load generator) to the other.
          pin(process.pid, pinning.load);
          await pinned(sqlite.pid, pinning.signer, pinning.all, headline).finally(() => pin(process.pid, pinning.all));
        }
      }
      if (run('sign')) {
        for (const c of opts.concurrency) await digest(K1, c, 'all');
        for (const alg of algorithms.slice(1)) await digest(alg, top, 'all');
      }
      if (run('evm')) {
        await evm('all');
        await markRow();
        if (pg) await postgresRow();
      }
      if (run('batch')) {
        const o = { raw, rawKey: rawKeys[K1], signer: primary.signers[0]!, svcPid: sqlite.pid, keyId: EVM.payout };
        const n = { nonces: new Nonces(), items: opts.batchItems, runs: opts.batchRuns };
        out.batches.push(await measureBatches(noise, { ...o, ...n }));
      }
      if (run('priority')) {
        const driver = await startBatchDriver(repoRoot, {
          address: sqlite.address,
          tls: { ca: tls.ca.toString(), cert: tls.cert.toString(), key: tls.key.toString() },
          keyId: EVM.prioPayout,
          items: opts.batchItems,
        });
        try {
          const o = { signers: primary.signers, signer: sqlite, hotKey: EVM.prioHot, hotNonces: new Nonces(), driver };
          const p = { batchKey: EVM.prioPayout, batchItems: opts.batchItems, concurrency: opts.priorityConcurrency };
          const t = { seconds: opts.prioritySeconds, warmup: opts.warmup };
          out.priority.push(await measurePriority(noise, { ...o, ...p, ...t }));
        } finally {
          await driver.close();
        }
      }
      if (run('rss')) {
        const seconds = opts.rssSeconds;
        log(`rss: hot EVM Sign at c=${opts.evmConcurrency} for ${seconds}s, the signer's RSS sampled`);
        const op = signEvmOp(primary.signers, EVM.hot, nonces);
        const o = { pid: sqlite.pid, op, seconds, concurrency: opts.evmConcurrency, warmup: opts.warmup };
        out.rss.push(await measureRss(noise, o));
      }

      /**
       * The cost of the rollback mark: hot EVM Sign on a signer with rollback.mark off (the base)
       * and on the SQLite signer (mark on, the default), same run, same concurrency.
       */
      async function markRow(): Promise<void> {
        const off = await startBenchSigner(ctx, 'signer-nomark', [[EVM.hot, WIRE[K1]]], NO_MARK);
        const ch = await signerChannels(off.address, tls, opts.channels);
        try {
          const offNonces = new Nonces();
          const c = opts.evmConcurrency;
          await warmUp(signEvmOp(ch.signers, EVM.hot, offNonces), c);
          const o = { ...opts, concurrency: c, watch: { signer: off.pid, client: process.pid } };
          const base = {
            name: 'mark off',
            ...(await measurePoint(noise, 'rollback mark off', () => signEvmOp(ch.signers, EVM.hot, offNonces), o)),
          };
          const on = {
            ...o,
            watch: { signer: sqlite.pid, client: process.pid },
            metrics: { url: sqlite.metricsUrl, algorithm: K1 },
          };
          const service = await measurePoint(
            noise,
            'rollback mark on',
            () => signEvmOp(primary.signers, EVM.hot, nonces),
            on,
          );
          out.rows.push({
            point: POINTS.evmMark,
            cpus: 'all',
            concurrency: c,
            base,
            service,
            note: 'base: the same signer with rollback.mark off',
          });
        } finally {
          ch.close();
          log(await off.stop());
        }
      }

      /** Hot EVM Sign on a second signer whose store is the PostgreSQL cluster, warmed up like the first. */
      async function postgresRow(): Promise<void> {
        const store = { store: { postgres: { url: pg!.url } }, ...NO_MARK };
        const starting = startBenchSigner(ctx, 'signer-postgres', [[EVM.hotPg, WIRE[K1]]], store);
        const signer = await starting.catch((e: Error) => {
          out.notes.push(`PostgreSQL row skipped: its signer did not start: ${e.message.split('\n')[0]}`);
          return undefined;
        });
        if (!signer) return;
        const ch = await signerChannels(signer.address, tls, opts.channels);
        try {
          const pgNonces = new Nonces();
          await warmUp(signEvmOp(ch.signers, EVM.hotPg, pgNonces), opts.evmConcurrency);
          const op = () => signEvmOp(ch.signers, EVM.hotPg, pgNonces);
          const c = opts.evmConcurrency;
          await point({ point: POINTS.evmPostgres, alg: K1, c, cpus: 'all', op, signer, note: EVM_NOTE });
        } finally {
          ch.close();
          log(await signer.stop());
        }
      }
    } finally {
      primary.close();
      log(await sqlite.stop());
    }
  } finally {
    raw.close();
  }
  return out;
}

/** Runs `fn` with `pid` on `cpus`, then moves it to `after`. */
async function pinned<T>(pid: number, cpus: string, after: string, fn: () => Promise<T>): Promise<T> {
  pin(pid, cpus);
  try {
    return await fn();
  } finally {
    pin(pid, after);
  }
}
