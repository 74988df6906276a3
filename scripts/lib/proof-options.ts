import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';

// Kept apart from proofs.ts (gRPC client, protos): verify-audit loads those only when it needs
// proofs, so a plain verification starts small (it runs with a capped heap in tests).
const DEV_PKI = fileURLToPath(new URL('../../.dev/pki/', import.meta.url));

/** The connection options of a tool that fetches proofs from Audit (auditor role), lazily. */
export function proofOptions(cmd: Command): Command {
  return cmd
    .option(
      '--address <host:port>',
      'signer address (to fetch proofs)',
      process.env.SIGNER_ADDRESS ?? '127.0.0.1:50051',
    )
    .option('--ca <file>', 'CA certificate', `${DEV_PKI}ca.crt`)
    .option('--cert <file>', 'auditor client certificate', `${DEV_PKI}auditor.crt`)
    .option('--key <file>', 'auditor client private key', `${DEV_PKI}auditor.key`);
}

/** A note file as saved by a tool or an auditor (a signed note ends in a newline; keep it). */
export function readNote(file: string): string {
  return readFileSync(file, 'utf8');
}
