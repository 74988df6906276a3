import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import { call, connect, readTls, type SignerClients } from '../../src/client/client.js';

const DEV_PKI = fileURLToPath(new URL('../../.dev/pki/', import.meta.url));

/** The connection options of a tool that fetches proofs from Audit (auditor role), lazily. */
export function proofOptions(cmd: Command): Command {
  return cmd
    .option('--address <host:port>', 'signer address (to fetch proofs)', process.env.SIGNER_ADDRESS ?? '127.0.0.1:50051')
    .option('--ca <file>', 'CA certificate', `${DEV_PKI}ca.crt`)
    .option('--cert <file>', 'auditor client certificate', `${DEV_PKI}auditor.crt`)
    .option('--key <file>', 'auditor client private key', `${DEV_PKI}auditor.key`);
}

/** Fetches checkpoints and proofs from the Audit service; connects on first use. */
export class ProofSource {
  private clients: SignerClients | undefined;
  constructor(private readonly opts: Record<string, unknown>) {}

  private audit() {
    const s = (k: string) => String(this.opts[k]);
    this.clients ??= connect(s('address'), readTls({ caFile: s('ca'), certFile: s('cert'), keyFile: s('key') }));
    return this.clients.audit;
  }

  async checkpoint(treeSize = 0): Promise<string> {
    return (await call<{ note: string }>(this.audit(), 'GetCheckpoint', { treeSize: String(treeSize) })).note;
  }

  async inclusion(seq: number, treeSize: number): Promise<{ hashes: Uint8Array[]; entryJson: string }> {
    const r = await call<{ hashes: Buffer[]; entryJson: string }>(this.audit(), 'GetInclusionProof', { seq: String(seq), treeSize: String(treeSize) });
    return { hashes: r.hashes.map((h) => new Uint8Array(h)), entryJson: r.entryJson };
  }

  async consistency(fromSize: number, toSize: number): Promise<Uint8Array[]> {
    const r = await call<{ hashes: Buffer[] }>(this.audit(), 'GetConsistencyProof', { fromSize: String(fromSize), toSize: String(toSize) });
    return r.hashes.map((h) => new Uint8Array(h));
  }

  close(): void {
    this.clients?.close();
  }
}

/** A note file as saved by a tool or an auditor (a signed note ends in a newline; keep it). */
export function readNote(file: string): string {
  return readFileSync(file, 'utf8');
}
