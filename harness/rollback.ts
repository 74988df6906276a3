import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { promisify } from 'node:util';
import { call, connect, nowTimestamp, type SignerClients } from '../src/client/client.js';
import { parseConfig } from '../src/infra/config/load.js';
import type { Config } from '../src/infra/config/schema.js';
import { createLogger } from '../src/infra/log.js';
import { type RunningSigner, startSigner } from '../src/signer/grpc/server.js';
import { transfer } from './evm.js';
import type { Pki } from './pki.js';
import { tsx } from './process.js';
import { repoRoot } from './token.js';

const run = promisify(execFile);

/** A signer that can be stopped and started again on the same token, PKI and database. */
export class RestartableSigner {
  signer: RunningSigner | undefined;
  engine: SignerClients | undefined;
  admin: SignerClients | undefined;
  readonly config: Config;

  constructor(
    readonly pki: Pki,
    raw: object,
    readonly configFile: string,
  ) {
    this.config = parseConfig(raw);
  }

  get address(): string {
    return `127.0.0.1:${this.signer!.port}`;
  }

  async start(): Promise<void> {
    this.signer = await startSigner(this.config, createLogger('fatal'));
    const as = (cn: string) =>
      connect(this.address, { ca: this.pki.caCert, cert: this.pki.clients[cn]!.cert, key: this.pki.clients[cn]!.key });
    this.engine = as('payment-engine');
    this.admin = as('security-admin');
  }

  async stop(): Promise<void> {
    this.engine?.close();
    this.admin?.close();
    await this.signer?.close();
    this.signer = undefined;
  }

  /** Signs an EIP-1559 transfer with this nonce and value (the value tells payloads apart). */
  sign(keyId: string, nonce: number, value: bigint, requestId = randomUUID()) {
    return call<{ signature: Buffer }>(this.engine!.signer, 'Sign', {
      keyId,
      requestId,
      clientTime: nowTimestamp(),
      ...transfer({ nonce, value }).payload,
    });
  }
}

/** Runs scripts/reconcile-rollback.ts; resolves with its exit code and output. */
export async function reconcile(
  configFile: string,
  args: string[],
): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await run(tsx, ['scripts/reconcile-rollback.ts', '--config', configFile, ...args], {
      cwd: repoRoot,
      timeout: 60_000,
    });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, stdout: err.stdout, stderr: err.stderr };
  }
}
