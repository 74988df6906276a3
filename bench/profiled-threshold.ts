/**
 * The profiled pass of the threshold points (bench/profiled.ts): three cosigners and a threshold
 * signer of their own, all four started with --cpu-prof, warmed up like the measured set; then
 * each suite's c=1 point for a few seconds, one profile window per process.
 */
import { join } from 'node:path';
import { startCosigners, thresholdConfig } from '../harness/cosigners.js';
import { runCount } from './load.js';
import { thresholdPayloads, thresholdSignOp } from './ops.js';
import type { Options } from './options.js';
import type { ProfileSession } from './profiled.js';
import { type BenchContext, NO_MARK, signerChannels, startBenchSigner } from './signers.js';
import { settled, THRESHOLD_SUITES, type ThresholdOptions } from './threshold.js';

export async function profiledThreshold(
  ctx: BenchContext,
  o: ThresholdOptions,
  opts: Pick<Options, 'childNodeArg' | 'profileSeconds'>,
  session: ProfileSession,
): Promise<void> {
  const names = [1, 2, 3].map((id) => `prof-cosigner-${id}`);
  const t0 = session.now();
  const args = (id: number) => session.nodeArgs(names[id - 1]!);
  const cosigners = await startCosigners(join(ctx.dir, 'prof'), ctx.pki, 3, {}, undefined, undefined, args);
  cosigners.forEach((c, i) => session.started(names[i]!, c.proc.child.pid!, t0, `cosigner-${c.id}`));
  try {
    const keyIds = o.suites.map((suite): [string, string] => [`prof-${suite}`, THRESHOLD_SUITES[suite].wire]);
    const threshold = { ...thresholdConfig(cosigners, ctx.pki, 2, 3000), poolSize: o.poolSize };
    const name = 'signer-prof-threshold';
    const s0 = session.now();
    const nodeArgs = [...opts.childNodeArg, ...session.nodeArgs(name)];
    const signer = await startBenchSigner({ ...ctx, nodeArgs }, name, keyIds, { threshold, ...NO_MARK });
    session.started(name, signer.pid, s0, 'signer');
    const ch = await signerChannels(signer.address, { ca: ctx.pki.caCert, ...ctx.pki.clients['payment-engine']! });
    const pids = [signer.pid, ...cosigners.map((c) => c.proc.child.pid!)];
    try {
      for (const suite of o.suites) {
        const key = { keyId: `prof-${suite}`, publicKey: Uint8Array.from(signer.keys[`prof-${suite}`]!) };
        const messages = thresholdPayloads(suite);
        const top = Math.max(1, ...o.concurrency);
        // As the measured set: the first signatures one at a time (empty pools), then at the top.
        await runCount(thresholdSignOp(ch.signers[0]!, key, suite, messages).op, 5, 1);
        await settled(pids, 30_000);
        await runCount(thresholdSignOp(ch.signers[0]!, key, suite, messages).op, 4 * top, top);
        await settled(pids);
        const signing = thresholdSignOp(ch.signers[0]!, key, suite, messages);
        const point = { point: THRESHOLD_SUITES[suite].point, cpus: 'all' as const, concurrency: 1 };
        await session.measure(point, [name, ...names], signing.op, { seconds: opts.profileSeconds, warmup: o.warmup });
        signing.check();
      }
    } finally {
      ch.close();
      ctx.log(await signer.stop());
      session.finish(name);
    }
  } finally {
    await Promise.all(cosigners.map((c) => c.stop().catch(() => undefined)));
    for (const n of names) session.finish(n);
  }
}
