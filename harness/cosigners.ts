import { X509Certificate } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { certificateSigner } from '../src/client/request-signing.js';
import { canonicalRequestBytes } from '../src/core/request-signing/canonical.js';
import { signerV1 } from '../src/infra/grpc/proto.js';
import type { Pki } from './pki.js';
import { freePort, type SignerProcess, START_TIMEOUT_MS, startSignerProcess } from './process.js';
import { OPEN_POLICY } from './signer.js';
import { makeToken, type TestToken } from './token.js';

/** Client certificates a test PKI needs for a signer with three cosigners. */
export const COSIGNER_CLIENTS = ['coordinator', 'cosigner-1', 'cosigner-2', 'cosigner-3'];

/** Misbehaviour a test cosigner is started with (harness/evil-cosigner.ts). */
export type Fault = 'corrupt-sign-share' | 'bad-proof' | 'bad-share';

export interface CosignerNode {
  id: number;
  dir: string;
  dbPath: string;
  token: TestToken;
  address: string;
  configFile: string;
  proc: SignerProcess;
  /** Stops the process (SIGTERM unless told) and starts it again, honest unless told. */
  restart(fault?: Fault): Promise<void>;
  stop(signal?: NodeJS.Signals): Promise<void>;
}

/** Changes a cosigner's config before it starts (e.g. a CRL, other CAs). */
export type CosignerConfigure = (config: Record<string, any>, id: number) => Record<string, any>;

/**
 * n real cosigner processes on localhost, each with its own SoftHSM token and SQLite file,
 * accepting the `coordinator` client certificate only. The PKI must hold client certificates
 * `cosigner-1`..`cosigner-n` (their ceremony identities): see `COSIGNER_CLIENTS`.
 */
export async function startCosigners(
  dir: string,
  pki: Pki,
  n = 3,
  faults: Record<number, Fault> = {},
  configure: CosignerConfigure = (c) => c,
  /** Logs each cosigner also witnesses (section `witnessing`, name `cosigner-<id>.witness`). */
  witnessLogs?: Array<{ origin: string; publicKey: string }>,
  /** Node flags for cosigner `id`'s process (the bench's profiled pass: --cpu-prof). */
  nodeArgs: (id: number) => string[] = () => [],
): Promise<CosignerNode[]> {
  return Promise.all(
    Array.from({ length: n }, async (_, i) => {
      const id = i + 1;
      const home = join(dir, `cosigner-${id}`);
      const token = await makeToken(home, `cosigner-${id}`);
      const port = await freePort();
      const config = configure(
        {
          role: 'cosigner',
          listen: `127.0.0.1:${port}`,
          tls: { caFile: pki.files.caCert, certFile: pki.files.server.cert, keyFile: pki.files.server.key },
          hsm: { uri: token.uri, sessions: 2, moduleEnv: token.env },
          store: { sqlite: { path: join(home, 'cosigner.db') } },
          clients: {},
          cosigner: {
            id,
            peers: ['coordinator'],
            identity: {
              certFile: pki.files.clients[`cosigner-${id}`]!.cert,
              keyFile: pki.files.clients[`cosigner-${id}`]!.key,
            },
            // What it checks itself before a share: the test signer's signing clients (they sign
            // with their certificates' keys, from the test CA) and its config policy, pinned.
            clients: { 'payment-engine': {}, 'other-engine': {} },
            policies: { open: OPEN_POLICY },
          },
          log: { level: 'info' },
          ...(witnessLogs
            ? {
                witnessing: {
                  name: `cosigner-${id}.witness`,
                  clients: ['coordinator'],
                  logs: witnessLogs,
                  dbPath: join(home, 'witness.db'),
                },
              }
            : {}),
        },
        id,
      );
      const configFile = join(home, 'cosigner.json');
      await writeFile(configFile, JSON.stringify(config, null, 2));
      const spawn = (fault?: Fault) =>
        fault
          ? startSignerProcess(configFile, START_TIMEOUT_MS, {
              nodeArgs: nodeArgs(id),
              entry: 'harness/evil-cosigner.ts',
              ready: 'cosigner started',
              args: ['--fault', fault],
            })
          : startSignerProcess(configFile, START_TIMEOUT_MS, { ready: 'cosigner started', nodeArgs: nodeArgs(id) });
      const node: CosignerNode = {
        id,
        dir: home,
        dbPath: config.store.sqlite.path,
        token,
        address: `127.0.0.1:${port}`,
        configFile,
        proc: await spawn(faults[id]),
        async stop(signal = 'SIGTERM') {
          await node.proc.stop(signal);
        },
        async restart(fault) {
          await node.proc.stop();
          node.proc = await spawn(fault);
        },
      };
      return node;
    }),
  );
}

/** Test admins (client certificates of the test PKI) and the names they approve under. */
export const ADMIN_CLIENTS = { alice: 'admin-a', bob: 'admin-b', carol: 'admin-c' } as const;

/**
 * The `admins` section for the test admins, k of n with their certificates' P-256 keys: the same
 * on the signer and, pinned in their own configs, on the cosigners (README "Destroying threshold
 * shares").
 */
export function adminsConfig(pki: Pki, quorum = 2, policyDelaySeconds = 1) {
  const members = Object.fromEntries(
    Object.entries(ADMIN_CLIENTS).map(([name, cn]) => [name, { certificateFile: pki.files.clients[cn]!.cert }]),
  );
  return { quorum, policyDelaySeconds, members };
}

/** Cosigners that pin these admins and overwrite ordered-destroyed shares `delaySeconds` later. */
export function withAdmins(admins: ReturnType<typeof adminsConfig>, delaySeconds: number): CosignerConfigure {
  return (c) => ({ ...c, admins, cosigner: { ...c.cosigner, shareDestroyDelaySeconds: delaySeconds } });
}

/**
 * The signer's `threshold` config section for these cosigners. The per-call deadline is a
 * loaded machine's: at load 20 on two cores, the first signature after a rotation's DKG saw two
 * cosigners miss 3 s ("left out: 2 (deadline), 3 (deadline)"), so a healthy cosigner is never
 * named for being slow; a hung one (SIGSTOP) still misses it.
 */
export function thresholdConfig(nodes: CosignerNode[], pki: Pki, minSigners = 2, deadlineMs = 10_000) {
  return {
    minSigners,
    cosigners: nodes.map((c) => ({ id: c.id, address: c.address, serverName: 'localhost' })),
    tls: { certFile: pki.files.clients.coordinator!.cert, keyFile: pki.files.clients.coordinator!.key },
    deadlineMs,
    poolSize: 8,
  };
}

/** A Cosigner API client at `address`, calling with the test PKI's certificate for `cn`. */
export function cosignerClient(pki: Pki, address: string, cn = 'coordinator'): grpc.Client {
  const c = pki.clients[cn];
  if (!c) throw new Error(`no test certificate for ${cn}`);
  const creds = grpc.credentials.createSsl(pki.caCert, c.key, c.cert);
  return new signerV1.Cosigner(address, creds, {
    'grpc.ssl_target_name_override': 'localhost',
    'grpc.default_authority': 'localhost',
  });
}

/** The open test policy as a signer forwards its config-set version 1 (SignShareRequest.policy). */
export const OPEN_POLICY_V1 = {
  name: 'open',
  version: 1,
  document: JSON.stringify(OPEN_POLICY),
  proposalId: '',
  approvals: [],
};

/**
 * SignShareRequest fields 40-45 for a Sign request that `client` (a test PKI certificate) signed
 * with its certificate's key, as the coordinator forwards it: what a legitimate request carries,
 * or what an attacker holding the coordinator's certificate replays after capturing one.
 */
export function clientSignedFields(
  pki: Pki,
  r: {
    client?: string;
    keyId: string;
    requestId: string;
    kind: 'message' | 'digest';
    payload: Uint8Array;
    scope?: { chainId: bigint; nonce: bigint };
    clientTimeMs?: number;
    keyVersion?: number;
    policy?: object;
  },
) {
  const cn = r.client ?? 'payment-engine';
  const tls = pki.clients[cn];
  if (!tls) throw new Error(`no test certificate for ${cn}`);
  const signer = certificateSigner(tls);
  const message = canonicalRequestBytes({
    kind: 'sign',
    client: cn,
    keyId: r.keyId,
    keyVersion: r.keyVersion ?? 0,
    id: r.requestId,
    clientTimeMs: r.clientTimeMs ?? Date.now(),
    payloads: [{ kind: r.kind, bytes: r.payload, scope: r.scope }],
  });
  return {
    signedRequest: Buffer.from(message),
    requestSignature: signer.sign(message),
    requestSigningKey: signer.signingKey,
    clientCertificate: new X509Certificate(tls.cert).raw,
    payloadIndex: 0,
    policy: r.policy ?? OPEN_POLICY_V1,
  };
}
