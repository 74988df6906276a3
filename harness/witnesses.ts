import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { signerV1 } from '../src/infra/grpc/proto.js';
import type { Pki } from './pki.js';
import { freePort, type SignerProcess, START_TIMEOUT_MS, startSignerProcess } from './process.js';
import { makeToken, type TestToken } from './token.js';

export interface WitnessNode {
  name: string;
  dir: string;
  dbPath: string;
  token: TestToken;
  address: string;
  /** Its Ed25519 cosigning public key, base64, from its "witness key" log line. */
  publicKey: string;
  proc: SignerProcess;
  restart(): Promise<void>;
  stop(signal?: NodeJS.Signals): Promise<void>;
}

/** The cosigning key a witness (or cosigner) process logged at start. */
export function loggedWitnessKey(logs: string): string {
  const line = logs.split('\n').find((l) => l.includes('"witness key"'));
  if (!line) throw new Error('the process logged no witness key');
  return (JSON.parse(line) as { publicKey: string }).publicKey;
}

/** The `witnessing` section for a node named `name` that witnesses `logs` for the given client CNs. */
export function witnessingConfig(
  name: string,
  logs: Array<{ origin: string; publicKey: string }>,
  clients: string[],
  dbPath?: string,
) {
  return { name, clients, logs, ...(dbPath ? { dbPath } : {}) };
}

/**
 * n real witness processes (role "witness") on localhost, each with its own SoftHSM token (its
 * cosigning key is generated there at first start) and its own SQLite file, admitting `clients`.
 */
export async function startWitnesses(
  dir: string,
  pki: Pki,
  logs: Array<{ origin: string; publicKey: string }>,
  opts: { n?: number; clients?: string[] } = {},
): Promise<WitnessNode[]> {
  const n = opts.n ?? 2;
  return Promise.all(
    Array.from({ length: n }, async (_, i) => {
      const name = `witness-${i + 1}.test`;
      const home = join(dir, `witness-${i + 1}`);
      const token = await makeToken(home, `witness-${i + 1}`);
      const port = await freePort();
      const dbPath = join(home, 'witness.db');
      const config = {
        role: 'witness',
        listen: `127.0.0.1:${port}`,
        tls: { caFile: pki.files.caCert, certFile: pki.files.server.cert, keyFile: pki.files.server.key },
        hsm: { uri: token.uri, sessions: 2, moduleEnv: token.env },
        store: { sqlite: { path: dbPath } },
        clients: {},
        witnessing: witnessingConfig(name, logs, opts.clients ?? ['coordinator']),
        log: { level: 'info' },
      };
      const configFile = join(home, 'witness.json');
      await writeFile(configFile, JSON.stringify(config, null, 2));
      const spawn = () => startSignerProcess(configFile, START_TIMEOUT_MS, { ready: 'witness started' });
      const proc = await spawn();
      const node: WitnessNode = {
        name,
        dir: home,
        dbPath,
        token,
        address: `127.0.0.1:${port}`,
        publicKey: loggedWitnessKey(proc.logs()),
        proc,
        async stop(signal = 'SIGTERM') {
          await node.proc.stop(signal);
        },
        async restart() {
          await node.proc.stop();
          node.proc = await spawn();
        },
      };
      return node;
    }),
  );
}

/** The signer's `witness` section for these nodes. */
export function witnessConfig(
  nodes: Array<Pick<WitnessNode, 'name' | 'address' | 'publicKey'>>,
  pki: Pki,
  required: number,
  cn = 'coordinator',
) {
  return {
    endpoints: nodes.map((w) => ({
      name: w.name,
      address: w.address,
      publicKey: w.publicKey,
      serverName: 'localhost',
    })),
    required,
    tls: { certFile: pki.files.clients[cn]!.cert, keyFile: pki.files.clients[cn]!.key },
    deadlineMs: 5000,
  };
}

/** A Witness API client at `address` with the test PKI's certificate for `cn` (or the foreign CA's). */
export function witnessClient(pki: Pki, address: string, cn: string | 'foreign' = 'coordinator'): grpc.Client {
  const c = cn === 'foreign' ? pki.foreign.client : pki.clients[cn];
  if (!c) throw new Error(`no test certificate for ${cn}`);
  const creds = grpc.credentials.createSsl(pki.caCert, c.key, c.cert);
  return new signerV1.Witness(address, creds, {
    'grpc.ssl_target_name_override': 'localhost',
    'grpc.default_authority': 'localhost',
  });
}
