/**
 * The distributed side of the threshold bench: three real cosigner processes (each its own
 * SoftHSM token and SQLite file, harness/cosigners.ts) and the real signer as a child
 * process (bench/service.ts) coordinating them, with one FROST key per suite made by DKG.
 *
 * The signer runs as a child, not in the bench process as harness/signer.ts would run it,
 * so that the coordinator's JavaScript thread (share verification, aggregation, gRPC, store) is
 * not the thread that also drives the load and times the calls.
 */
import { readdirSync, readFileSync, rmSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { call, connect } from '../src/client/client.js';
import { configSchema } from '../src/infra/config/schema.js';
import type { ThresholdAlgorithm } from '../src/core/frost/suites.js';
import { startCosigners, thresholdConfig, type CosignerNode } from '../harness/cosigners.js';
import type { Pki } from '../harness/pki.js';
import { testConfig } from '../harness/signer.js';
import type { TestToken } from '../harness/token.js';
import { repoRoot } from '../harness/token.js';
import { freePort, startServiceChild, type ServiceChild } from './service.js';

/** Wire names of the suites (KeyAdmin.CreateKey). */
export const WIRE_ALGORITHM: Record<ThresholdAlgorithm, string> = { 'frost-ed25519': 'FROST_ED25519', 'frost-secp256k1-tr': 'FROST_SECP256K1_TR' };

/** threshold.poolSize when a config leaves it out (src/infra/config/schema.ts). */
export function defaultPoolSize(): number {
  try {
    const t = configSchema.shape.threshold.parse({
      minSigners: 2,
      cosigners: [{ id: 1, address: 'a:1' }, { id: 2, address: 'b:1' }],
      tls: { certFile: 'c', keyFile: 'k' },
    });
    return t?.poolSize ?? 32;
  } catch {
    return 32;
  }
}

export interface ThresholdKey {
  keyId: string;
  /** 32 bytes: the Ed25519 key, or the x-only BIP340 key. */
  publicKey: Uint8Array;
}

export interface ThresholdService {
  address: string;
  metricsUrl: string;
  signer: ServiceChild;
  cosigners: CosignerNode[];
  keys: Record<ThresholdAlgorithm, ThresholdKey>;
}

/**
 * Child processes of this process that were not there when it was made: the bench's own
 * cosigners and signer. `reap` SIGKILLs those still alive, by pid; it is synchronous, so it also
 * works from an 'exit' handler, and it catches processes whose handle a failed start never
 * returned (startCosigners rejects as a whole when one of three fails).
 */
export class Children {
  private readonly before = childPids();

  reap(): number[] {
    const left = childPids().filter((pid) => !this.before.includes(pid));
    for (const pid of left) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    return left;
  }
}

function childPids(): number[] {
  let dirs: string[];
  try {
    dirs = readdirSync('/proc').filter((d) => /^\d+$/.test(d));
  } catch {
    return [];
  }
  const out: number[] = [];
  for (const d of dirs) {
    try {
      const s = readFileSync(`/proc/${d}/stat`, 'utf8');
      if (Number(s.slice(s.lastIndexOf(')') + 2).split(' ')[1]) === process.pid) out.push(Number(d));
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

/**
 * Stops the signer, then the cosigners (SIGTERM, SIGKILL after `graceMs`); resolves with how each
 * ended. Never throws.
 */
export async function stopService(s: Pick<ThresholdService, 'signer' | 'cosigners'> | { signer?: ServiceChild; cosigners: CosignerNode[] }, graceMs = 10_000): Promise<string[]> {
  const out: string[] = [];
  if (s.signer) out.push(`signer ${await s.signer.stop(graceMs).catch((e: Error) => e.message)}`);
  await Promise.all(
    s.cosigners.map(async (n) => {
      const timer = setTimeout(() => void n.stop('SIGKILL'), graceMs);
      await n.stop().catch(() => undefined);
      clearTimeout(timer);
      const c = n.proc.child;
      out.push(`cosigner ${n.id} ${c.signalCode ? `signal ${c.signalCode}` : `code ${String(c.exitCode)}`}`);
    }),
  );
  return out;
}

/**
 * Starts three cosigners and a signer child with a `threshold` section for them (the test
 * signer's config: open policy for `payment-engine`, admin `security-admin`), then creates one
 * key per suite as `security-admin`. `started` receives each process as soon as it runs, so a
 * failure later on still leaves the caller able to stop it.
 */
export async function startThresholdService(
  dir: string,
  pki: Pki,
  token: TestToken,
  o: { poolSize: number; deadlineMs?: number; started: (p: { signer?: ServiceChild; cosigners?: CosignerNode[] }) => void; log: (s: string) => void },
): Promise<ThresholdService> {
  const cosigners = await startCosigners(dir, pki, 3);
  o.started({ cosigners });
  o.log(`cosigners ${cosigners.map((c) => `${c.id}: pid ${c.proc.child.pid} on ${c.address}`).join(', ')}`);
  const [port, metricsPort] = [await freePort(), await freePort()];
  const base = testConfig(dir, pki, token);
  const config = testConfig(dir, pki, token, {
    listen: `127.0.0.1:${port}`,
    metrics: { listen: `127.0.0.1:${metricsPort}` },
    log: { level: 'warn' },
    hsm: base.hsm,
    threshold: { ...thresholdConfig(cosigners, pki, 2, o.deadlineMs ?? 3000), poolSize: o.poolSize },
  });
  const configFile = `${dir}/threshold-signer.json`;
  await writeFile(configFile, JSON.stringify(config, null, 2));
  const signer = await startServiceChild({ repoRoot, configFile, port });
  o.started({ signer });
  const address = `127.0.0.1:${port}`;
  o.log(`signer child pid ${signer.pid} on ${address}, metrics :${metricsPort}, threshold.poolSize ${o.poolSize}`);

  const admin = connect(address, { ca: pki.caCert, ...pki.clients['security-admin']! });
  const keys = {} as Record<ThresholdAlgorithm, ThresholdKey>;
  try {
    for (const suite of Object.keys(WIRE_ALGORITHM) as ThresholdAlgorithm[]) {
      const keyId = `bench-${suite}`;
      const k = await call<{ publicKey: Buffer; algorithm: string }>(admin.keyAdmin, 'CreateKey', { keyId, algorithm: WIRE_ALGORITHM[suite] }, 60_000);
      if (k.algorithm !== WIRE_ALGORITHM[suite] || k.publicKey.length !== 32) throw new Error(`CreateKey ${keyId}: unexpected ${k.algorithm} key of ${k.publicKey.length} bytes`);
      keys[suite] = { keyId, publicKey: Uint8Array.from(k.publicKey) };
    }
  } finally {
    admin.close();
  }
  return { address, metricsUrl: `http://127.0.0.1:${metricsPort}/metrics`, signer, cosigners, keys };
}

/** Last resort from an 'exit' or signal handler: kill what is left and remove the temp dir. */
export function emergencyCleanup(children: Children, dir: string | undefined, keep: boolean): void {
  children.reap();
  if (dir && !keep) rmSync(dir, { recursive: true, force: true });
}
