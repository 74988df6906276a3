import { createPrivateKey, createPublicKey, type KeyObject, sign, X509Certificate } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import type * as protoLoader from '@grpc/proto-loader';
import {
  type CanonicalPayload,
  type CanonicalRequest,
  canonicalRequestBytes,
} from '../core/request-signing/canonical.js';
import { requestKeyOf } from '../infra/config/request-keys.js';
import { packageDefinition } from '../infra/grpc/proto.js';

/**
 * Signs Sign and SignBatch requests the way the signer checks them (README "How a payment engine
 * signs its requests"; the format is in proto/signer/v1/signer.proto): the canonical request
 * bytes, signed with the client's request-signing key, in `request_signature` and
 * `request_signing_key`.
 */
export interface RequestSigner {
  /** The client certificate's CN: the signer names the client by it, and the bytes do too. */
  client: string;
  /** `spki-sha256:<hex>` of the signing key. */
  signingKey: string;
  sign(message: Uint8Array): Buffer;
}

/**
 * A signer with `key` (PEM private key, P-256 or Ed25519) for the client `client`. P-256 gives
 * DER ECDSA/SHA-256 signatures, Ed25519 pure Ed25519 ones (Node's crypto.sign).
 */
export function requestSigner(client: string, key: string | Buffer | KeyObject): RequestSigner {
  const privateKey = typeof key === 'string' || Buffer.isBuffer(key) ? createPrivateKey(key) : key;
  const pub = requestKeyOf(createPublicKey(privateKey), 'registered');
  const algorithm = pub.algorithm === 'ed25519' ? null : 'sha256';
  return {
    client,
    signingKey: pub.fingerprint,
    sign: (message) => sign(algorithm, message, privateKey),
  };
}

/** The client certificate's CN and its key: what a client signs with by default. */
export function certificateSigner(tls: { cert: Buffer; key: Buffer }): RequestSigner {
  const cn = /(?:^|\n)CN=([^\n]+)/.exec(new X509Certificate(tls.cert).subject)?.[1];
  if (!cn) throw new Error('the client certificate has no subject CN');
  return requestSigner(cn, tls.key);
}

/** A request as proto-loader decodes it (what the signer will read). */
interface DecodedPayload {
  payload?: string;
  digest?: Buffer;
  message?: Buffer;
  evmTransaction?: { unsignedTx: Buffer } | null;
  replayScope?: { chainId: string; accountNonce: string } | null;
}
interface Decoded extends DecodedPayload {
  keyId: string;
  requestId?: string;
  batchId?: string;
  keyVersion?: number;
  clientTime: { seconds: string; nanos: number } | null;
  items?: DecodedPayload[];
}

function payloadLine(p: DecodedPayload): CanonicalPayload {
  const scope = p.replayScope
    ? { scope: { chainId: BigInt(p.replayScope.chainId), nonce: BigInt(p.replayScope.accountNonce) } }
    : {};
  if (p.payload === 'digest') return { kind: 'digest', bytes: p.digest!, ...scope };
  if (p.payload === 'message') return { kind: 'message', bytes: p.message!, ...scope };
  if (p.payload === 'evmTransaction') return { kind: 'evm_transaction', bytes: p.evmTransaction!.unsignedTx, ...scope };
  throw new Error('no payload');
}

/** The canonical request of a decoded Sign ('sign') or SignBatch ('batch') request. */
export function canonicalOf(kind: 'sign' | 'batch', client: string, d: Decoded): CanonicalRequest {
  if (!d.clientTime) throw new Error('no client_time');
  return {
    kind,
    client,
    keyId: d.keyId,
    keyVersion: kind === 'sign' ? (d.keyVersion ?? 0) : 0,
    id: (kind === 'sign' ? d.requestId : d.batchId) ?? '',
    clientTimeMs: Number(d.clientTime.seconds) * 1000 + Math.floor(d.clientTime.nanos / 1e6),
    payloads: kind === 'sign' ? [payloadLine(d)] : (d.items ?? []).map(payloadLine),
  };
}

const METHODS: Record<string, 'sign' | 'batch'> = {
  '/signer.v1.Signer/Sign': 'sign',
  '/signer.v1.Signer/SignBatch': 'batch',
};
const service = packageDefinition['signer.v1.Signer'] as protoLoader.ServiceDefinition;
const definitions = { sign: service.Sign!, batch: service.SignBatch! };

/**
 * `request` with its signature added, read back through the proto serialisation first so the
 * signed bytes are those of what the signer will decode. A request that already carries a
 * signature (or a key) is left alone, and so is one that has no canonical form (no client time,
 * no payload, an id with control characters): the signer refuses it for what is wrong with it.
 */
export function signRequest(kind: 'sign' | 'batch', request: object, signer: RequestSigner): object {
  const r = request as { requestSignature?: Uint8Array; requestSigningKey?: string };
  if ((r.requestSignature && r.requestSignature.length > 0) || r.requestSigningKey) return request;
  const def = definitions[kind];
  let message: Uint8Array;
  try {
    const decoded = def.requestDeserialize(def.requestSerialize(request)) as Decoded;
    message = canonicalRequestBytes(canonicalOf(kind, signer.client, decoded));
  } catch {
    return request;
  }
  return { ...request, requestSignature: signer.sign(message), requestSigningKey: signer.signingKey };
}

/** A client interceptor that signs every Sign and SignBatch call (signRequest). */
export function signingInterceptor(signer: RequestSigner): grpc.Interceptor {
  return (options, nextCall) => {
    const kind = METHODS[options.method_definition.path];
    if (!kind) return new grpc.InterceptingCall(nextCall(options));
    return new grpc.InterceptingCall(nextCall(options), {
      sendMessage: (message, next) => next(signRequest(kind, message as object, signer)),
    });
  };
}
