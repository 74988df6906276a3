import { writeFile } from 'node:fs/promises';
import { call, connect, type SignerClients } from '../src/client/client.js';
import { makePki, type Pki } from './pki.js';
import { freePort, type SignerProcess, startSignerProcess } from './process.js';
import { eventually, testConfig } from './signer.js';
import { makeToken, type TestToken, tempDir } from './token.js';
import { witnessClient } from './witnesses.js';

/**
 * The witness tests' signer: a real signer child process (its own temp dir, PKI, token and
 * SQLite file) whose audit checkpoints witnesses cosign. Started and restarted with config
 * overrides (`start`); `auditPublicKey` runs it once to learn the audit key the witnesses
 * (or cosigner-witnesses) must be configured with. The caller's teardown stops `proc`, then its
 * witnesses, then removes `tmp`.
 */
export class WitnessedSigner {
  proc: SignerProcess | undefined;
  readonly address: string;
  readonly dbPath: string;
  private readonly configFile: string;

  private constructor(
    readonly tmp: { path: string; cleanup(): Promise<void> },
    readonly pki: Pki,
    readonly token: TestToken,
    port: number,
    readonly origin: string,
    /** Config every start has (over testConfig), before that start's own overrides. */
    private readonly base: Record<string, unknown>,
  ) {
    this.address = `127.0.0.1:${port}`;
    this.dbPath = `${tmp.path}/signer.db`;
    this.configFile = `${tmp.path}/signer.json`;
  }

  static async create(o: {
    prefix: string;
    origin: string;
    clients: string[];
    config?: Record<string, unknown>;
  }): Promise<WitnessedSigner> {
    const tmp = await tempDir(o.prefix);
    const [pki, token] = await Promise.all([makePki(tmp.path, o.clients), makeToken(tmp.path)]);
    return new WitnessedSigner(tmp, pki, token, await freePort(), o.origin, o.config ?? {});
  }

  /** Writes the config (checkpoints every 200 ms under `origin`, then `over`) and starts the process. */
  async start(over: Record<string, unknown> = {}): Promise<void> {
    const raw = {
      ...testConfig(this.tmp.path, this.pki, this.token),
      listen: this.address,
      log: { level: 'info' },
      audit: { origin: this.origin, checkpointEveryMs: 200 },
      ...this.base,
      ...over,
    };
    await writeFile(this.configFile, JSON.stringify(raw));
    this.proc = await startSignerProcess(this.configFile);
  }

  as(cn: string): SignerClients {
    const c = this.pki.clients[cn]!;
    return connect(this.address, { ca: this.pki.caCert, cert: c.cert, key: c.key });
  }

  /**
   * A first run without witnesses: the audit key is generated in the token at start; its first
   * checkpoint's C2SP verifier key (<name>+<key hash>+<base64 of 0x01 || key>, and the base64
   * may hold '+' too) gives the raw Ed25519 public key. The process is stopped again.
   */
  async auditPublicKey(): Promise<Buffer> {
    await this.start();
    const auditor = this.as('auditor');
    let verifierKey = '';
    try {
      await eventually(async () => {
        const r = await call<{ verifierKey: string }>(auditor.audit, 'GetCheckpoint', { treeSize: '0' }).catch(
          () => null,
        );
        verifierKey = r?.verifierKey ?? '';
        return verifierKey !== '';
      }, 60_000);
    } finally {
      auditor.close();
    }
    const logs = this.proc!.logs();
    await this.proc!.stop();
    if (!verifierKey) throw new Error(`the first run signed no checkpoint within 60 s: ${logs.slice(-2000)}`);
    return Buffer.from(verifierKey.split('+').slice(2).join('+'), 'base64').subarray(1);
  }

  /** The latest checkpoint the witness (or cosigner-witness) at `address` cosigned for this log. */
  async latest(address: string): Promise<{ size: string; checkpoint: string }> {
    const c = witnessClient(this.pki, address);
    try {
      return await call<{ size: string; checkpoint: string }>(c, 'GetLatest', { origin: this.origin });
    } finally {
      c.close();
    }
  }
}
