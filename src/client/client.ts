import { readFileSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import { signerV1 } from '../infra/grpc/proto.js';
import { certificateSigner, type RequestSigner, signingInterceptor } from './request-signing.js';

export interface ClientTls {
  ca: Buffer;
  cert: Buffer;
  key: Buffer;
}

export interface SignerClients {
  signer: grpc.Client;
  keyAdmin: grpc.Client;
  audit: grpc.Client;
  close(): void;
}

export function readTls(files: { caFile: string; certFile: string; keyFile: string }): ClientTls {
  return { ca: readFileSync(files.caFile), cert: readFileSync(files.certFile), key: readFileSync(files.keyFile) };
}

/**
 * mTLS clients for the Signer, KeyAdmin and Audit services, sharing one channel. Sign and
 * SignBatch requests are signed (src/client/request-signing.ts) with the client certificate's
 * key unless `signRequests` names another signer, or is false (a request sent as given).
 */
export function connect(
  address: string,
  tls: ClientTls,
  serverName = 'localhost',
  opts: { signRequests?: RequestSigner | false } = {},
): SignerClients {
  const creds = grpc.credentials.createSsl(tls.ca, tls.key, tls.cert);
  const options = { 'grpc.ssl_target_name_override': serverName, 'grpc.default_authority': serverName };
  const signing = opts.signRequests === false ? undefined : (opts.signRequests ?? defaultSigner(tls));
  const interceptors = signing ? [signingInterceptor(signing)] : [];
  const signer = new signerV1.Signer(address, creds, { ...options, interceptors });
  const keyAdmin = new signerV1.KeyAdmin(address, creds, { ...options, channelOverride: signer.getChannel() });
  const audit = new signerV1.Audit(address, creds, { ...options, channelOverride: signer.getChannel() });
  return { signer, keyAdmin, audit, close: () => signer.close() };
}

/** The certificate's key when it can sign requests (P-256, Ed25519); none for another kind of key. */
function defaultSigner(tls: ClientTls): RequestSigner | undefined {
  try {
    return certificateSigner(tls);
  } catch {
    return undefined;
  }
}

/** Calls a unary method; rejects with the grpc ServiceError (decode it with decodeError). */
export function call<Res = Record<string, unknown>>(
  client: grpc.Client,
  method: string,
  request: object,
  timeoutMs = 30_000,
): Promise<Res> {
  const fn = (client as unknown as Record<string, (...args: unknown[]) => unknown>)[method];
  if (typeof fn !== 'function') throw new Error(`no method ${method}`);
  return new Promise((resolve, reject) =>
    fn.call(client, request, { deadline: Date.now() + timeoutMs }, (err: grpc.ServiceError | null, res: Res) =>
      err ? reject(err) : resolve(res),
    ),
  );
}

export function nowTimestamp() {
  const ms = Date.now();
  return { seconds: String(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1e6 };
}
