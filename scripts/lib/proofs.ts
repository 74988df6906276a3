import { call, connect, readTls, type SignerClients } from '../../src/client/client.js';

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
    const r = await call<{ hashes: Buffer[]; entryJson: string }>(this.audit(), 'GetInclusionProof', {
      seq: String(seq),
      treeSize: String(treeSize),
    });
    return { hashes: r.hashes.map((h) => new Uint8Array(h)), entryJson: r.entryJson };
  }

  async consistency(fromSize: number, toSize: number): Promise<Uint8Array[]> {
    const r = await call<{ hashes: Buffer[] }>(this.audit(), 'GetConsistencyProof', {
      fromSize: String(fromSize),
      toSize: String(toSize),
    });
    return r.hashes.map((h) => new Uint8Array(h));
  }

  close(): void {
    this.clients?.close();
  }
}
