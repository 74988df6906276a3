import { writeFile } from 'node:fs/promises';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { protoPath as healthProto } from 'grpc-health-check';
import type { Test } from 'tap';
import { call, connect, type SignerClients } from '../src/client/client.js';
import { type DecodedError, decodeError } from '../src/client/errors.js';
import { parseConfig } from '../src/infra/config/load.js';
import type { Config } from '../src/infra/config/schema.js';
import type { Pkcs11 } from '../src/infra/hsm/hsm.js';
import { createLogger, type Logger } from '../src/infra/log.js';
import { type RunningSigner, startSigner } from '../src/signer/grpc/server.js';
import { DEFAULT_CLIENTS, makePki, type Pki } from './pki.js';
import { makeToken, type TestToken, tempDir } from './token.js';

export interface TestSigner {
  signer: RunningSigner;
  pki: Pki;
  token: TestToken;
  config: Config;
  configFile: string;
  dir: string;
  address: string;
  /** mTLS clients for a CN issued by the test CA. */
  as(cn: string): SignerClients;
  /**
   * Stops the signer and starts it again on the same token, database and port (what was in
   * memory is gone; what is in the database and the token stays). Open clients reconnect.
   * `between` runs while it is stopped (e.g. an attacker editing the database).
   */
  restart(between?: () => unknown): Promise<void>;
  close(): Promise<void>;
}

/** A token contract the test policy lets hot keys call. */
export const TEST_TOKEN = '0x00000000000000000000000000000000000a11ce';

/** A wide policy for tests that are not about policy: every kind, both traffic classes. */
export const OPEN_POLICY = {
  keys: ['*'],
  traffic: 'both',
  payloadKinds: ['evm', 'digest', 'message'],
  freshness: { maxSkewSeconds: 300 },
  evm: {
    chains: ['1', '10', '137', '8453', '11155111'],
    maxValue: (10n ** 24n).toString(),
    destinations: { any: true },
    tokens: { [TEST_TOKEN]: { maxAmount: (10n ** 30n).toString() } },
    maxFeePerGas: (10n ** 13n).toString(),
    maxGas: '30000000',
  },
  batch: { maxItems: 5000, maxTotalValue: (10n ** 27n).toString() },
  // Retired versions may sweep to the active address (rotation schedules on EVM keys need it).
  sweep: {
    chains: ['1', '10', '137', '8453', '11155111'],
    tokens: [TEST_TOKEN],
    maxFeePerGas: (10n ** 13n).toString(),
    maxGas: '30000000',
  },
};

/** The config a test signer runs with: every role, keys open to payment-engine. */
export function testConfig(dir: string, pki: Pki, token: TestToken, over: Partial<Record<string, unknown>> = {}) {
  return {
    listen: '127.0.0.1:0',
    tls: { caFile: pki.files.caCert, certFile: pki.files.server.cert, keyFile: pki.files.server.key },
    // A generous session wait: test machines run many signers at once, and a burst of hundreds
    // of requests on 4 sessions must not be shed there; test/hsm-deadline.test.ts sets its own.
    hsm: { uri: token.uri, sessions: 4, moduleEnv: token.env, recoveryIntervalMs: 100, sessionWaitMs: 30_000 },
    store: { sqlite: { path: `${dir}/signer.db` } },
    clients: {
      'payment-engine': { roles: ['signer'] },
      'security-admin': { roles: ['admin'] },
      auditor: { roles: ['auditor'] },
      'other-engine': { roles: ['signer'] },
    },
    keyAccess: { '*': ['payment-engine'], 'shared-*': ['other-engine'] },
    // As scripts/dev-setup.sh writes it: every Sign and SignBatch carries the client's signature.
    requireSignedRequests: true,
    policies: { open: OPEN_POLICY },
    log: { level: 'fatal' },
    ...over,
  };
}

/**
 * A real signer on a fresh SoftHSM token with a fresh PKI, listening on a random port.
 * One per test file: SoftHSM reads its config once per process.
 */
export async function startTestSigner(
  opts: {
    wrapModule?: (p11: Pkcs11) => Pkcs11;
    config?: Partial<Record<string, unknown>>;
    /** More client certificates to issue (e.g. the coordinator's, for cosigners). */
    clients?: string[];
    /** Runs with the fresh PKI before the signer starts; returns more config (e.g. cosigners). */
    prepare?: (dir: string, pki: Pki) => Promise<Partial<Record<string, unknown>>>;
    /** Fields merged into the hsm section (the token's URI stays). */
    hsm?: Partial<Record<string, unknown>>;
    /** The signer's logger (default: fatal only). */
    log?: Logger;
  } = {},
): Promise<TestSigner> {
  const tmp = await tempDir('signer-');
  const [pki, token] = await Promise.all([
    makePki(tmp.path, [...DEFAULT_CLIENTS, 'other-engine', ...(opts.clients ?? [])]),
    makeToken(tmp.path),
  ]);
  const extra = opts.prepare ? await opts.prepare(tmp.path, pki) : {};
  const raw = testConfig(tmp.path, pki, token, { ...opts.config, ...extra });
  if (opts.hsm) raw.hsm = { ...raw.hsm, ...opts.hsm };
  const configFile = `${tmp.path}/signer.json`;
  await writeFile(configFile, JSON.stringify(raw, null, 2));
  const config = parseConfig(raw);
  let signer = await startSigner(config, opts.log ?? createLogger('fatal'), { wrapModule: opts.wrapModule });
  const address = `127.0.0.1:${signer.port}`;
  const open: SignerClients[] = [];
  const ts: TestSigner = {
    signer,
    pki,
    token,
    config,
    configFile,
    dir: tmp.path,
    address,
    as(cn) {
      const c = pki.clients[cn];
      if (!c) throw new Error(`no test certificate for ${cn}`);
      const clients = connect(address, { ca: pki.caCert, cert: c.cert, key: c.key });
      open.push(clients);
      return clients;
    },
    async restart(between) {
      await signer.close();
      await between?.();
      // The same logger: a test reading the signer's log reads it across restarts.
      signer = await startSigner({ ...config, listen: address }, opts.log ?? createLogger('fatal'), {
        wrapModule: opts.wrapModule,
      });
      ts.signer = signer;
    },
    async close() {
      open.forEach((c) => c.close());
      await signer.close();
      await tmp.cleanup();
    },
  };
  return ts;
}

/** grpc.health.v1 status of a service, asked over mTLS as payment-engine (in-process or a child). */
export async function healthOf(ts: Pick<TestSigner, 'pki' | 'address'>, service = ''): Promise<string> {
  const def = protoLoader.loadSync(healthProto, { enums: String });
  const Health = (grpc.loadPackageDefinition(def) as any).grpc.health.v1.Health as grpc.ServiceClientConstructor;
  const c = ts.pki.clients['payment-engine']!;
  const client = new Health(ts.address, grpc.credentials.createSsl(ts.pki.caCert, c.key, c.cert), {
    'grpc.ssl_target_name_override': 'localhost',
  });
  try {
    return (await call<{ status: string }>(client, 'check', { service })).status;
  } finally {
    client.close();
  }
}

/** Polls `probe` until it returns true or `ms` pass. */
export async function eventually(probe: () => Promise<boolean> | boolean, ms = 5000): Promise<boolean> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    if (await probe()) return true;
    await new Promise((r) => setTimeout(r, 25));
  }
  return probe();
}

/** Asserts a refusal's exact gRPC status and ErrorInfo reason, and that it explains itself. */
export async function refused(t: Test, p: Promise<unknown>, code: grpc.status, reason: string): Promise<DecodedError> {
  const d = decodeError(await refusal(p));
  t.equal(d.code, code, `status ${grpc.status[code]}`);
  t.equal(d.reason, reason, `reason ${reason}`);
  t.ok(d.message.length > 0, 'has a human message');
  return d;
}

/** Resolves to the ServiceError a call failed with; fails the test if it succeeded. */
export async function refusal(p: Promise<unknown>): Promise<grpc.ServiceError> {
  try {
    await p;
  } catch (e) {
    return e as grpc.ServiceError;
  }
  throw new Error('expected the call to be refused, but it succeeded');
}
