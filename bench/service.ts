/**
 * The real signer as a child process (`node --import tsx src/main.ts --config <file>`) and the
 * gRPC channels the bench drives it through.
 */
import { spawn } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { createConnection, createServer } from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { connect, type ClientTls } from '../src/client/client.js';
import { signerV1 } from '../src/infra/grpc/proto.js';
import type { Pki } from '../harness/pki.js';
import { OPEN_POLICY, testConfig } from '../harness/signer.js';
import type { TestToken } from '../harness/token.js';

/** A port that was free a moment ago (the child binds it; a race is possible but unlikely). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

/**
 * Besides the test config's open policy (every key, both traffic classes): `hot-*` keys take hot
 * traffic only (EVM and digests), `payout-*` keys batches only, EVM only, contiguous nonces.
 */
export function benchPolicies(batchItems: number): Record<string, unknown> {
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
 * The test signer's config (harness/signer.ts) on fixed ports, with metrics on, quiet logs,
 * `sessions`, the bench policies and optionally another store; written to `<dir>/<name>.json`.
 */
export async function writeServiceConfig(
  dir: string,
  pki: Pki,
  token: TestToken,
  o: { port: number; metricsPort: number; sessions: number; batchItems: number; name?: string; store?: unknown },
): Promise<string> {
  const file = `${dir}/${o.name ?? 'bench-signer'}.json`;
  const base = testConfig(dir, pki, token);
  const config = testConfig(dir, pki, token, {
    hsm: { ...base.hsm, sessions: o.sessions },
    listen: `127.0.0.1:${o.port}`,
    metrics: { listen: `127.0.0.1:${o.metricsPort}` },
    log: { level: 'warn' },
    policies: { ...base.policies, ...benchPolicies(o.batchItems) },
    ...(o.store ? { store: o.store } : {}),
  });
  await writeFile(file, JSON.stringify(config, null, 2));
  return file;
}

export interface ServiceChild {
  pid: number;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves with the exit code or signal. */
  stop(graceMs?: number): Promise<string>;
}

export async function startServiceChild(o: {
  repoRoot: string;
  configFile: string;
  port: number;
  /** Extra node flags for the child, e.g. --cpu-prof. */
  nodeArgs?: string[];
  readyTimeoutMs?: number;
}): Promise<ServiceChild> {
  const child = spawn(process.execPath, [...(o.nodeArgs ?? []), '--import', 'tsx', 'src/main.ts', '--config', o.configFile], {
    cwd: o.repoRoot,
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  const exited = new Promise<string>((resolve) =>
    child.once('exit', (code, signal) => resolve(signal ? `signal ${signal}` : `code ${code}`)),
  );
  // Never leave a signer running if the bench dies.
  const reap = () => child.exitCode === null && child.signalCode === null && child.kill('SIGKILL');
  process.once('exit', reap);

  const deadline = Date.now() + (o.readyTimeoutMs ?? 30_000);
  let gone: string | undefined;
  void exited.then((how) => (gone = how));
  while (!(await canConnect(o.port))) {
    if (gone) throw new Error(`the signer exited before listening (${gone})`);
    if (Date.now() > deadline) {
      reap();
      throw new Error(`the signer did not listen on port ${o.port} within ${o.readyTimeoutMs ?? 30_000} ms`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    pid: child.pid!,
    async stop(graceMs = 15_000) {
      if (child.exitCode !== null || child.signalCode !== null) return exited;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      const how = await exited;
      clearTimeout(timer);
      process.removeListener('exit', reap);
      return how;
    },
  };
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createConnection({ host: '127.0.0.1', port }, () => {
      s.destroy();
      resolve(true);
    });
    s.on('error', () => resolve(false));
  });
}

export interface Channels {
  signers: grpc.Client[];
  close(): void;
}

/**
 * `n` Signer clients. One is exactly what `connect` from src/client gives a payment engine; more
 * each get their own channel and TCP connection (a local subchannel pool: grpc-js would otherwise
 * share one connection between channels with equal target, credentials and options).
 */
export function signerChannels(address: string, tls: ClientTls, n: number): Channels {
  if (n === 1) {
    const c = connect(address, tls);
    return { signers: [c.signer], close: () => c.close() };
  }
  const creds = grpc.credentials.createSsl(tls.ca, tls.key, tls.cert);
  const options = {
    'grpc.ssl_target_name_override': 'localhost',
    'grpc.default_authority': 'localhost',
    'grpc.use_local_subchannel_pool': 1,
  };
  const signers = Array.from({ length: n }, () => new signerV1.Signer(address, creds, options));
  return { signers, close: () => signers.forEach((s) => s.close()) };
}

/** Resolves once every client has a connected channel (TLS handshake done). */
export function waitForReady(clients: grpc.Client[], timeoutMs = 10_000): Promise<void[]> {
  return Promise.all(
    clients.map(
      (c) => new Promise<void>((resolve, reject) => c.waitForReady(Date.now() + timeoutMs, (e) => (e ? reject(e) : resolve()))),
    ),
  );
}
