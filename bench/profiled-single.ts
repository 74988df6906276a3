/**
 * The profiled pass of the single-key points (bench/profiled.ts): a profiled SQLite signer of its
 * own, warmed up like the measured one, with the rollback mark on as the measured one has it: on
 * a token of its own (every replica's mark on a token is checked against a signer's database, and
 * the bench token's marks record the measured signer's log), then the one-core
 * points (pinned the same way), SignBatch and hot Sign during batches; and a profiled PostgreSQL
 * signer for the PostgreSQL point. Runs after the measured points, with the same options.
 */
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { makeToken, repoRoot } from '../harness/token.js';
import { type Pinning, pin } from './cpu.js';
import { runCount } from './load.js';
import { evmTransfers, Nonces, signBatch, signEvmOp, signOp } from './ops.js';
import type { Options } from './options.js';
import { startBatchDriver } from './priority.js';
import type { ProfileSession } from './profiled.js';
import { type BenchContext, type BenchPostgres, NO_MARK, signerChannels, startBenchSigner } from './signers.js';
import { POINTS } from './targets.js';

const K1 = 'ECDSA_SECP256K1';
const KEYS = { digest: 'prof-k1', hot: 'hot-prof', payout: 'payout-prof', prioHot: 'hot-prof-prio' };
/** Every key on the shared bench token has its own label: the PostgreSQL signer's too. */
const PG_HOT = 'hot-prof-pg';
const PRIO_PAYOUT = 'payout-prof-prio';

/** Signatures of the batches that overlapped `win`, each counted by its share inside the window. */
export function batchItemsIn(
  batches: Array<{ start: number; end: number; items: number }>,
  win: { start: number; end: number },
): number {
  return batches.reduce((n, b) => {
    const inside = Math.min(b.end, win.end) - Math.max(b.start, win.start);
    return inside > 0 && b.end > b.start ? n + (b.items * inside) / (b.end - b.start) : n;
  }, 0);
}

export async function profiledSingleKey(
  ctx: BenchContext,
  opts: Options,
  pinning: Pinning,
  pg: BenchPostgres | undefined,
  session: ProfileSession,
): Promise<void> {
  const run = (s: Options['sections'][number]) => opts.sections.includes(s);
  const tls = { ca: ctx.pki.caCert, ...ctx.pki.clients['payment-engine']! };
  const top = Math.max(...opts.concurrency);
  const t = { seconds: opts.profileSeconds, warmup: opts.warmup };
  const warmUp = (op: Parameters<typeof runCount>[0], c: number) => runCount(op, opts.warmupRequests, c);
  const withProfile = (name: string) => ({ ...ctx, nodeArgs: [...opts.childNodeArg, ...session.nodeArgs(name)] });

  if (run('one-core') || run('batch') || run('priority')) {
    const name = 'signer-prof';
    const keys: Array<[string, string]> = [...Object.values(KEYS), PRIO_PAYOUT].map((k) => [k, K1]);
    const token = await makeToken(join(ctx.dir, 'prof-token'), 'bench-prof');
    const t0 = session.now();
    const signer = await startBenchSigner({ ...withProfile(name), token }, name, keys);
    session.started(name, signer.pid, t0, 'signer');
    const ch = await signerChannels(signer.address, tls, opts.channels);
    const nonces = new Nonces();
    try {
      ctx.log(`profiled pass: ${name} warm-up, ${opts.warmupRequests} digest and EVM Sign requests`);
      await warmUp(signOp(ch.signers, KEYS.digest, 'digest'), top);
      await warmUp(signEvmOp(ch.signers, KEYS.hot, nonces), opts.evmConcurrency);
      if (run('one-core')) {
        const one = async () => {
          const digest = () => signOp(ch.signers, KEYS.digest, 'digest');
          await session.measure({ point: POINTS.digest, cpus: 'one', concurrency: top }, [name], digest(), t);
          const evm = signEvmOp(ch.signers, KEYS.hot, nonces);
          await session.measure(
            { point: POINTS.evmSqlite, cpus: 'one', concurrency: opts.evmConcurrency },
            [name],
            evm,
            t,
          );
          if (top !== 1)
            await session.measure({ point: POINTS.digest, cpus: 'one', concurrency: 1 }, [name], digest(), t);
        };
        if ('skipped' in pinning) await one();
        else {
          pin(process.pid, pinning.load);
          pin(signer.pid, pinning.signer);
          try {
            await one();
          } finally {
            pin(process.pid, pinning.all);
            pin(signer.pid, pinning.all);
          }
        }
      }
      if (run('batch')) {
        const items = opts.batchItems;
        const id = randomBytes(4).toString('hex');
        const op = (seq: number) =>
          signBatch(ch.signers[0]!, KEYS.payout, `prof-${id}-${seq}`, evmTransfers(nonces.take(items), items));
        await op(-1); // warm-up: the batch path's first run
        const key = { point: POINTS.batch, cpus: 'all' as const, concurrency: 1 };
        await session.measure(key, [name], op, { ...t, minOps: 1 });
      }
      if (run('priority')) {
        const driver = await startBatchDriver(repoRoot, {
          address: signer.address,
          tls: { ca: tls.ca.toString(), cert: tls.cert.toString(), key: tls.key.toString() },
          keyId: PRIO_PAYOUT,
          items: opts.batchItems,
        });
        try {
          driver.go();
          const key = { point: POINTS.priorityBusy, cpus: 'all' as const, concurrency: opts.priorityConcurrency };
          const hot = signEvmOp(ch.signers, KEYS.prioHot, new Nonces());
          const extra = async (win: { start: number; end: number }) =>
            batchItemsIn(
              (await driver.stop()).filter((b) => !b.error),
              win,
            );
          await session.measure(key, [name], hot, { ...t, extra });
        } finally {
          await driver.close();
        }
      }
    } finally {
      ch.close();
      ctx.log(await signer.stop());
      session.finish(name);
    }
  }

  if (run('evm') && pg) {
    const name = 'signer-prof-pg';
    const t0 = session.now();
    const store = { store: { postgres: { url: pg.url } }, ...NO_MARK };
    const signer = await startBenchSigner(withProfile(name), name, [[PG_HOT, K1]], store);
    session.started(name, signer.pid, t0, 'signer');
    const ch = await signerChannels(signer.address, tls, opts.channels);
    try {
      const nonces = new Nonces();
      await warmUp(signEvmOp(ch.signers, PG_HOT, nonces), opts.evmConcurrency);
      const key = { point: POINTS.evmPostgres, cpus: 'all' as const, concurrency: opts.evmConcurrency };
      await session.measure(key, [name], signEvmOp(ch.signers, PG_HOT, nonces), t);
    } finally {
      ch.close();
      ctx.log(await signer.stop());
      session.finish(name);
    }
  }
}
