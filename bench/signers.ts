/**
 * The processes the bench measures: real signers as child processes (harness/process.ts) on the
 * test configuration (harness/signer.ts) with metrics on and the bench's policies, a throwaway
 * PostgreSQL cluster, and the gRPC channels the bench drives a signer through. Every process is
 * counted as the bench's own by the noise check while it runs.
 */

import { writeFile } from 'node:fs/promises';
import * as grpc from '@grpc/grpc-js';
import type { Pki } from '../harness/pki.js';
import { startPostgres } from '../harness/postgres.js';
import { freePort, startSignerProcess } from '../harness/process.js';
import { OPEN_POLICY, testConfig } from '../harness/signer.js';
import type { TestToken } from '../harness/token.js';
import { type ClientTls, call, connect } from '../src/client/client.js';
import { certificateSigner, signingInterceptor } from '../src/client/request-signing.js';
import { signerV1 } from '../src/infra/grpc/proto.js';
import { type CpuSource, findPostmaster, sampleCpu, sampleTree } from './cpu.js';
import type { Noise } from './noise.js';

export interface BenchContext {
  dir: string;
  pki: Pki;
  token: TestToken;
  noise: Noise;
  log: (s: string) => void;
  /** hsm.sessions of every single-key signer (the raw pool has as many). */
  sessions: number;
  batchItems: number;
  /** Extra node flags for signer children (--cpu-prof...), passed through NODE_OPTIONS. */
  nodeArgs: string[];
}

export interface BenchSigner {
  name: string;
  pid: number;
  address: string;
  metricsUrl: string;
  /** SIGTERM; resolves with how it ended. Never throws. */
  stop(): Promise<string>;
}

/**
 * Besides the test config's open policy (every key, both traffic classes): `hot-*` keys take hot
 * traffic only (EVM and digests), `payout-*` keys batches only, EVM only, contiguous nonces.
 */
function benchPolicies(batchItems: number): Record<string, unknown> {
  const { batch, ...rules } = OPEN_POLICY;
  return {
    hot: { ...rules, keys: ['hot-*'], traffic: 'hot', payloadKinds: ['evm', 'digest'] },
    payout: {
      ...rules,
      keys: ['payout-*'],
      traffic: 'batch',
      payloadKinds: ['evm'],
      batch: { maxItems: Math.max(1000, batchItems), maxTotalValue: batch.maxTotalValue, contiguousNonces: true },
    },
  };
}

/**
 * A signer child on the bench token (`over` adds to or replaces parts of its config), with
 * `keys` ([id, wire algorithm]) created one after the other by KeyAdmin.CreateKey: SoftHSM 2.6
 * fails on concurrent key generation, across processes too.
 */
/**
 * For every bench signer but the first SQLite one: the HSM rollback mark on the shared bench token
 * records the first signer's log, which another signer's fresh database does not hold (its guard
 * would rightly refuse to sign). The mark's own cost is its row (rollback mark on vs off, SQLite).
 */
export const NO_MARK = { rollback: { mark: false } } as const;

export async function startBenchSigner(
  ctx: BenchContext,
  name: string,
  keys: Array<[string, string]>,
  over: Record<string, unknown> = {},
): Promise<BenchSigner & { keys: Record<string, Buffer> }> {
  const base = testConfig(ctx.dir, ctx.pki, ctx.token);
  // freePort() only finds a port free now: another process (a test running beside the bench)
  // can take it before the signer listens. Then the signer exits with EADDRINUSE; new ports.
  for (let attempt = 1; ; attempt++) {
    try {
      return await startBenchSignerOn(ctx, name, keys, over, base, await freePort(), await freePort());
    } catch (e) {
      if (attempt >= 3 || !String((e as Error).message).includes('EADDRINUSE')) throw e;
      ctx.log(`${name}: its port was taken before it listened; again on new ports`);
    }
  }
}

async function startBenchSignerOn(
  ctx: BenchContext,
  name: string,
  keys: Array<[string, string]>,
  over: Record<string, unknown>,
  base: ReturnType<typeof testConfig>,
  port: number,
  metricsPort: number,
): Promise<BenchSigner & { keys: Record<string, Buffer> }> {
  const config = testConfig(ctx.dir, ctx.pki, ctx.token, {
    hsm: { ...base.hsm, sessions: ctx.sessions },
    store: { sqlite: { path: `${ctx.dir}/${name}.db` } },
    listen: `127.0.0.1:${port}`,
    metrics: { listen: `127.0.0.1:${metricsPort}` },
    // info logs the start and refusals only (signatures are debug): nothing per request.
    log: { level: 'info' },
    policies: { ...base.policies, ...benchPolicies(ctx.batchItems) },
    ...over,
  });
  const configFile = `${ctx.dir}/${name}.json`;
  await writeFile(configFile, JSON.stringify(config, null, 2));
  const starting = startSignerProcess(configFile, 60_000, { nodeArgs: ctx.nodeArgs });
  const proc = await starting;
  const pid = proc.child.pid!;
  ctx.noise.watch(name, () => sampleCpu(pid).total);
  const address = `127.0.0.1:${port}`;
  ctx.log(`${name}: pid ${pid} on ${address}, metrics :${metricsPort}`);
  const stop = async () => {
    const code = await proc.stop().catch((e: Error) => e.message);
    ctx.noise.unwatch(name);
    return `${name} stopped (${proc.child.signalCode ?? `code ${String(code)}`})`;
  };
  const admin = connect(address, { ca: ctx.pki.caCert, ...ctx.pki.clients['security-admin']! });
  const made: Record<string, Buffer> = {};
  try {
    for (const [keyId, algorithm] of keys) {
      const key = await call<{ publicKey: Buffer }>(admin.keyAdmin, 'CreateKey', { keyId, algorithm }, 60_000);
      made[keyId] = key.publicKey;
    }
  } catch (e) {
    await stop();
    throw e;
  } finally {
    admin.close();
  }
  return { name, pid, address, metricsUrl: `http://127.0.0.1:${metricsPort}/metrics`, stop, keys: made };
}

export interface Channels {
  signers: grpc.Client[];
  close(): void;
}

/**
 * `n` Signer clients, connected. One is exactly what `connect` from src/client gives a payment
 * engine; more each get their own channel and TCP connection (a local subchannel pool: grpc-js
 * would otherwise share one connection between channels with equal target and credentials).
 */
export async function signerChannels(address: string, tls: ClientTls, n = 1): Promise<Channels> {
  let ch: Channels;
  if (n === 1) {
    const c = connect(address, tls);
    ch = { signers: [c.signer], close: () => c.close() };
  } else {
    const creds = grpc.credentials.createSsl(tls.ca, tls.key, tls.cert);
    const options = {
      'grpc.ssl_target_name_override': 'localhost',
      'grpc.default_authority': 'localhost',
      'grpc.use_local_subchannel_pool': 1,
      // Each request signed with the client certificate's key, as connect() does.
      interceptors: [signingInterceptor(certificateSigner(tls))],
    };
    const signers = Array.from({ length: n }, () => new signerV1.Signer(address, creds, options));
    ch = { signers, close: () => signers.forEach((s) => s.close()) };
  }
  await waitForReady(ch.signers);
  return ch;
}

/** Resolves once every client has a connected channel (TLS handshake done). */
export function waitForReady(clients: grpc.Client[], timeoutMs = 10_000): Promise<unknown[]> {
  const ready = (c: grpc.Client) =>
    new Promise<void>((resolve, reject) => c.waitForReady(Date.now() + timeoutMs, (e) => (e ? reject(e) : resolve())));
  return Promise.all(clients.map(ready));
}

export interface BenchPostgres {
  url: string;
  /** CPU of the postmaster and its backends; 0 when the postmaster was not found. */
  cpu: CpuSource;
  stop(): Promise<void>;
}

/** A throwaway PostgreSQL cluster (harness/postgres.ts), watched as the bench's own CPU. */
export async function startBenchPostgres(noise: Noise, log: (s: string) => void): Promise<BenchPostgres> {
  const pg = await startPostgres();
  const port = Number(new URL(pg.url).port);
  const pid = findPostmaster(port);
  if (pid === undefined) log(`no postmaster with -p ${port} in /proc: PostgreSQL's CPU counts as other processes`);
  const cpu = pid === undefined ? () => 0 : () => sampleTree(pid);
  noise.watch('postgres', cpu);
  return {
    url: pg.url,
    cpu,
    stop: async () => {
      noise.unwatch('postgres');
      await pg.stop();
    },
  };
}
