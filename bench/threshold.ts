/**
 * Threshold points: 2-of-3 FROST (Ed25519 and BIP340) through the signer child and three
 * cosigner processes (each its own SoftHSM token and SQLite file, harness/cosigners.ts), against
 * its baseline: the same FROST computation in this one process, one signature after the other
 * (two `commit`s, two `signShare`s, `aggregate` with its independent verification), through the
 * same wrappers (src/core/frost/participant.ts) and keys made by the same DKG. Both sides run
 * through the one point runner and land in the one report table.
 */
import { performance } from 'node:perf_hooks';
import type { NonceCommitments } from '@noble/curves/abstract/frost.js';
import { startCosigners, thresholdConfig } from '../harness/cosigners.js';
import { frostBackend, setFrostBackend } from '../src/core/frost/backend.js';
import { dkgRound1, dkgRound2, dkgRound3 } from '../src/core/frost/dkg.js';
import { aggregate, commit, type Key, signShare } from '../src/core/frost/participant.js';
import { SUITES, type ThresholdAlgorithm } from '../src/core/frost/suites.js';
import { sampleCpu } from './cpu.js';
import { type Op, runCount } from './load.js';
import { thresholdPayloads, thresholdSignOp, verifies } from './ops.js';
import { measurePoint, type Row } from './point.js';
import { type BenchContext, NO_MARK, signerChannels, startBenchSigner } from './signers.js';

/** Wire names of the suites (KeyAdmin.CreateKey), and what the report calls them. */
export const THRESHOLD_SUITES: Record<ThresholdAlgorithm, { wire: string; point: string }> = {
  'frost-ed25519': { wire: 'FROST_ED25519', point: 'FROST(Ed25519) 2-of-3 Sign' },
  'frost-secp256k1-tr': { wire: 'FROST_SECP256K1_TR', point: 'FROST(secp256k1) BIP340 2-of-3 Sign' },
};

export interface ThresholdOptions {
  suites: ThresholdAlgorithm[];
  /** Service concurrencies for throughput (latency is always measured at c=1). */
  concurrency: number[];
  seconds: number;
  warmup: number;
  /** threshold.poolSize of the signer: nonce commitments fetched ahead per cosigner and key. */
  poolSize: number;
}

type Steps = { commit: number; signShare: number; aggregate: number };

/** A 2-of-3 key of `suite`, made by running the DKG for all three participants here. */
function localKeys(suite: ThresholdAlgorithm): Key[] {
  const s = SUITES[suite];
  const ids = [1, 2, 3].map((n) => s.frost.Identifier.fromNumber(n));
  const r1 = ids.map((id) => dkgRound1(s, id, { min: 2, max: 3 }));
  const others = (i: number) => r1.filter((_, j) => j !== i).map((r) => r.public);
  const r2 = r1.map((r, i) => dkgRound2(s, r.secret, others(i)));
  const sharesFor = (i: number, me: string) => ids.flatMap((_, j) => (j === i ? [] : [r2[j]![me]!]));
  return ids.map((me, i) => dkgRound3(s, r1[i]!.secret, others(i), sharesFor(i, me)));
}

/** One signature by participants `seq % 3` and `(seq + 1) % 3`, each step's time added to `steps`. */
function signLocally(suite: ThresholdAlgorithm, keys: Key[], message: Uint8Array, seq: number, steps: Steps) {
  const s = SUITES[suite];
  const t0 = performance.now();
  const rounds = [keys[seq % 3]!, keys[(seq + 1) % 3]!].map((key) => ({ key, ...commit(s, key.secret) }));
  const t1 = performance.now();
  const byId = (a: NonceCommitments, b: NonceCommitments) => (a.identifier < b.identifier ? -1 : 1);
  const list = rounds.map((r) => r.commitments).sort(byId);
  const shares: Record<string, Uint8Array> = {};
  for (const r of rounds) shares[r.key.secret.identifier] = signShare(s, r.key, r.nonces, list, message);
  const t2 = performance.now();
  const signature = aggregate(s, keys[0]!.public, list, message, shares);
  steps.commit += t1 - t0;
  steps.signShare += t2 - t1;
  steps.aggregate += performance.now() - t2;
  return signature;
}

/**
 * The in-process steps on the other backend, @noble/curves FROST (what signing ran on before the
 * native group operations), over a few signatures: the comparison the native path is judged by.
 */
function nobleSteps(suite: ThresholdAlgorithm, keys: Key[], messages: Uint8Array[], n = 20): string {
  const was = frostBackend();
  setFrostBackend('noble');
  try {
    const steps: Steps = { commit: 0, signShare: 0, aggregate: 0 };
    for (let i = 0; i < 3; i++) signLocally(suite, keys, messages[i]!, i, steps);
    Object.assign(steps, { commit: 0, signShare: 0, aggregate: 0 });
    for (let i = 0; i < n; i++) signLocally(suite, keys, messages[i % messages.length]!, i, steps);
    const ms = (x: number) => (x / n).toFixed(2);
    return `2 x commit ${ms(steps.commit)}, 2 x signShare ${ms(steps.signShare)}, aggregate ${ms(steps.aggregate)}`;
  } finally {
    setFrostBackend(was);
  }
}

/**
 * Waits (at most `maxMs`) until these processes used under 3% of a core for 300 ms: background
 * refills of the nonce-commitment pools are done, the pools are full.
 */
export async function settled(pids: number[], maxMs = 5000): Promise<boolean> {
  const used = () => pids.reduce((s, pid) => s + (sampleCpu(pid).total ?? 0), 0);
  for (const until = performance.now() + maxMs; performance.now() < until; ) {
    const a = used();
    await new Promise((r) => setTimeout(r, 300));
    if ((used() - a) / 0.3 < 0.03) return true;
  }
  return false;
}

/** The threshold rows, and one note per suite with the in-process steps. */
export async function thresholdRows(ctx: BenchContext, o: ThresholdOptions): Promise<{ rows: Row[]; notes: string[] }> {
  const rows: Row[] = [];
  const notes: string[] = [];
  const cosigners = await startCosigners(ctx.dir, ctx.pki, 3, {}, undefined, undefined, () => ctx.nodeArgs);
  const cosignerPids = cosigners.map((c) => c.proc.child.pid!);
  cosignerPids.forEach((pid, i) => ctx.noise.watch(`cosigner-${i + 1}`, () => sampleCpu(pid).total));
  ctx.log(`cosigners: pids ${cosignerPids.join(', ')}`);
  try {
    const keyIds = o.suites.map((suite): [string, string] => [`bench-${suite}`, THRESHOLD_SUITES[suite].wire]);
    const threshold = { ...thresholdConfig(cosigners, ctx.pki, 2, 3000), poolSize: o.poolSize };
    const signer = await startBenchSigner(ctx, 'signer-threshold', keyIds, { threshold, ...NO_MARK });
    const ch = await signerChannels(signer.address, { ca: ctx.pki.caCert, ...ctx.pki.clients['payment-engine']! });
    const ours = [signer.pid, ...cosignerPids];
    const cosignerCpu = Object.fromEntries(cosignerPids.map((p, i) => [`cosigner-${i + 1}`, p]));
    const watch = { client: process.pid, signer: signer.pid, ...cosignerCpu };
    try {
      for (const suite of o.suites) {
        const { point } = THRESHOLD_SUITES[suite];
        const messages = thresholdPayloads(suite);
        const key = { keyId: `bench-${suite}`, publicKey: Uint8Array.from(signer.keys[`bench-${suite}`]!) };

        // 1. The baseline: JIT-warm, one signature checked, then the point with its steps timed.
        const keys = localKeys(suite);
        const steps: Steps = { commit: 0, signShare: 0, aggregate: 0 };
        const chain = SUITES[suite].chainPublicKey(keys[0]!.public);
        for (let i = 0; i < 10; i++) {
          const sig = signLocally(suite, keys, messages[i]!, i, steps);
          if (!verifies(suite, sig, messages[i]!, chain)) throw new Error(`${suite}: in-process signature invalid`);
        }
        Object.assign(steps, { commit: 0, signShare: 0, aggregate: 0 });
        let made = 0;
        // Yields to the event loop before each signature, so that the window's timers run.
        const local: Op = async (seq) => {
          await new Promise((r) => setImmediate(r));
          signLocally(suite, keys, messages[seq % messages.length]!, seq, steps);
          made++;
          return 1;
        };
        const inProcess = { ...o, concurrency: 1, watch: { 'in-process': process.pid } };
        const base = await measurePoint(ctx.noise, `${suite} in-process`, () => local, inProcess);
        const ms = (x: number) => (x / made).toFixed(2);
        notes.push(
          `${point}: in-process steps per signature (ms, ${frostBackend()} group operations): 2 x commit ${ms(steps.commit)},` +
            ` 2 x signShare ${ms(steps.signShare)}, aggregate (with independent verification) ${ms(steps.aggregate)}`,
        );
        notes.push(`${point}: the same steps on noble's FROST (ms): ${nobleSteps(suite, keys, messages)}`);

        // 2. The service: the first signatures one at a time (with every pool empty, each of
        //    `top` concurrent first signatures would fetch the pools itself), then a warm-up at
        //    the top concurrency, then c=1 for latency and each concurrency for throughput.
        const top = Math.max(1, ...o.concurrency);
        const warm = async (n: number, c: number) => {
          const w = await runCount(thresholdSignOp(ch.signers[0]!, key, suite, messages).op, n, c);
          if (w.errors) ctx.log(`${suite}: ${w.errors} of ${n} warm-up signatures failed; first: ${w.firstError}`);
        };
        await warm(5, 1);
        if (!(await settled(ours, 30_000))) ctx.log(`${suite}: signer and cosigners still busy after first signatures`);
        await warm(4 * top, top);
        for (const c of [1, ...o.concurrency.filter((x) => x > 1)]) {
          if (!(await settled(ours))) ctx.log(`${suite}: signer and cosigners still busy before c=${c}; measuring`);
          // Every attempt's sampled signatures are checked, the kept one's among them.
          const checks: Array<() => number> = [];
          const signing = () => {
            const s = thresholdSignOp(ch.signers[0]!, key, suite, messages);
            checks.push(s.check);
            return s.op;
          };
          const metrics = { url: signer.metricsUrl, algorithm: suite };
          const at = { ...o, concurrency: c, watch, metrics };
          const service = await measurePoint(ctx.noise, `${suite} service`, signing, at);
          const note = `${checks.reduce((n, check) => n + check(), 0)} sampled signatures verified`;
          rows.push({ point, cpus: 'all', concurrency: c, base: { name: 'in-process', ...base }, service, note });
        }
      }
    } finally {
      ch.close();
      ctx.log(await signer.stop());
    }
  } finally {
    await Promise.all(cosigners.map((c) => c.stop().catch(() => undefined)));
    cosignerPids.forEach((_, i) => ctx.noise.unwatch(`cosigner-${i + 1}`));
  }
  return { rows, notes };
}
