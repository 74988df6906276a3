import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type * as grpc from '@grpc/grpc-js';
import { Command } from 'commander';
import { connect, readTls, type SignerClients } from '../../src/client/client.js';
import { decodeError } from '../../src/client/errors.js';
import { certificateSigner, requestSigner } from '../../src/client/request-signing.js';

const DEV_PKI = fileURLToPath(new URL('../../.dev/pki/', import.meta.url));

/** A command with the connection options every script shares; defaults point at the dev setup. */
export function command(name: string, description: string, identity: string): Command {
  return new Command()
    .name(name)
    .description(description)
    .option('--address <host:port>', 'signer address', process.env.SIGNER_ADDRESS ?? '127.0.0.1:50051')
    .option('--ca <file>', 'CA certificate', `${DEV_PKI}ca.crt`)
    .option('--cert <file>', 'client certificate', `${DEV_PKI}${identity}.crt`)
    .option('--key <file>', 'client private key', `${DEV_PKI}${identity}.key`)
    .option('--json', 'print JSON for programs instead of text for people');
}

export function clientsFrom(opts: Record<string, unknown>): SignerClients {
  const s = (k: string) => String(opts[k]);
  const tls = readTls({ caFile: s('ca'), certFile: s('cert'), keyFile: s('key') });
  // Requests are signed with the certificate's key, or with a registered key (--request-key).
  const signing =
    opts.requestKey === undefined
      ? {}
      : { signRequests: requestSigner(certificateSigner(tls).client, readFileSync(s('requestKey'))) };
  return connect(s('address'), tls, 'localhost', signing);
}

/** JSON with bytes as hex, for people and programs alike. */
export function toJson(v: unknown): string {
  return JSON.stringify(
    v,
    (_k, x) => (x && x.type === 'Buffer' && Array.isArray(x.data) ? Buffer.from(x.data).toString('hex') : x),
    2,
  );
}

/** Prints a refusal with its status and reason and exits non-zero. */
export function fail(e: unknown, json: boolean): never {
  const se = e as grpc.ServiceError;
  if (typeof se?.code === 'number') {
    const d = decodeError(se);
    if (json) process.stdout.write(`${JSON.stringify({ error: d })}\n`);
    else process.stderr.write(`refused: status ${d.code} reason ${d.reason ?? '-'}: ${d.message}\n`);
  } else process.stderr.write(`error: ${(e as Error)?.message ?? e}\n`);
  process.exit(1);
}

/**
 * Runs one script body with connected clients: prints refusals with their status and reason,
 * exits non-zero on failure, and always closes the channel.
 */
export async function runWithClients(
  opts: Record<string, unknown>,
  body: (clients: SignerClients) => Promise<void>,
): Promise<void> {
  const clients = clientsFrom(opts);
  try {
    await body(clients);
  } catch (e) {
    fail(e, !!opts.json);
  } finally {
    clients.close();
  }
}
