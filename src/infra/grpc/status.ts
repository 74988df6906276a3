import * as grpc from '@grpc/grpc-js';
import { type Reason, SignerError } from '../../core/errors.js';
import type { Logger } from '../log.js';
import { ErrorInfo, RetryInfo, RpcStatus } from './proto.js';

export const ERROR_DOMAIN = 'signer.v1';

const S = grpc.status;

/**
 * Each reason's one gRPC status. Clients branch on (status, reason), so a pair once published
 * never changes; the record type makes a new reason without a status a compile error.
 */
export const REASON_STATUS: Readonly<Record<Reason, grpc.status>> = {
  KEY_NOT_FOUND: S.NOT_FOUND,
  KEY_VERSION_NOT_FOUND: S.NOT_FOUND,
  POLICY_NOT_FOUND: S.NOT_FOUND,
  CEREMONY_NOT_FOUND: S.NOT_FOUND,
  SHARE_NOT_FOUND: S.NOT_FOUND,
  PROPOSAL_NOT_FOUND: S.NOT_FOUND,
  WITNESS_UNKNOWN_ORIGIN: S.NOT_FOUND,
  // Unknown, pruned, or another client's: the same answer, so existence does not leak.
  BATCH_NOT_FOUND: S.NOT_FOUND,
  CHECKPOINT_SIGNATURE_INVALID: S.INVALID_ARGUMENT,
  PAYLOAD_INVALID: S.INVALID_ARGUMENT,
  PAYLOAD_KIND_UNSUPPORTED: S.INVALID_ARGUMENT,
  REQUEST_INVALID: S.INVALID_ARGUMENT,
  POLICY_INVALID: S.INVALID_ARGUMENT,
  CONFIRMATION_REQUIRED: S.INVALID_ARGUMENT,
  BATCH_NONCES_NOT_UNIQUE: S.INVALID_ARGUMENT,
  NOT_AUTHENTICATED: S.UNAUTHENTICATED,
  CERTIFICATE_REVOKED: S.UNAUTHENTICATED,
  CERTIFICATE_NOT_PINNED: S.UNAUTHENTICATED,
  CERTIFICATE_EXPIRED: S.UNAUTHENTICATED,
  REQUEST_SIGNATURE_INVALID: S.UNAUTHENTICATED,
  REQUEST_SIGNATURE_REQUIRED: S.UNAUTHENTICATED,
  NOT_AUTHORIZED: S.PERMISSION_DENIED,
  APPROVAL_INVALID: S.PERMISSION_DENIED,
  DESTROY_ORDER_INVALID: S.PERMISSION_DENIED,
  NO_POLICY: S.PERMISSION_DENIED,
  TRAFFIC_CLASS_NOT_ALLOWED: S.PERMISSION_DENIED,
  CLIENT_NOT_ALLOWED: S.PERMISSION_DENIED,
  RAW_SIGNING_DISABLED: S.PERMISSION_DENIED,
  PAYLOAD_KIND_NOT_ALLOWED: S.PERMISSION_DENIED,
  CHAIN_NOT_ALLOWED: S.PERMISSION_DENIED,
  CONTRACT_NOT_ALLOWED: S.PERMISSION_DENIED,
  FEE_LIMIT: S.PERMISSION_DENIED,
  VALUE_LIMIT: S.PERMISSION_DENIED,
  DESTINATION_NOT_ALLOWED: S.PERMISSION_DENIED,
  SWEEP_NOT_ALLOWED: S.PERMISSION_DENIED,
  BATCH_LIMIT: S.PERMISSION_DENIED,
  VELOCITY_LIMIT: S.RESOURCE_EXHAUSTED,
  MESSAGE_TOO_LARGE: S.RESOURCE_EXHAUSTED,
  CLIENT_OVERLOADED: S.RESOURCE_EXHAUSTED,
  // A size bound, like MESSAGE_TOO_LARGE: the response, not the request (metadata maxItems).
  BATCH_RESPONSE_TOO_LARGE: S.RESOURCE_EXHAUSTED,
  STALE_REQUEST: S.FAILED_PRECONDITION,
  FUTURE_REQUEST: S.FAILED_PRECONDITION,
  NONCE_GAP: S.FAILED_PRECONDITION,
  BATCH_EXPIRED: S.FAILED_PRECONDITION,
  KEY_VERSION_RETIRED: S.FAILED_PRECONDITION,
  KEY_STATE_INVALID: S.FAILED_PRECONDITION,
  POLICY_UNAVAILABLE: S.FAILED_PRECONDITION,
  THRESHOLD_NOT_CONFIGURED: S.FAILED_PRECONDITION,
  PARTICIPANT_FAULT: S.FAILED_PRECONDITION,
  CEREMONY_FAILED: S.FAILED_PRECONDITION,
  CEREMONY_NOT_PENDING: S.FAILED_PRECONDITION,
  SHARE_EPOCH_MISMATCH: S.FAILED_PRECONDITION,
  SHARE_DESTROY_SCHEDULED: S.FAILED_PRECONDITION,
  NONCE_UNKNOWN: S.FAILED_PRECONDITION,
  COMMITMENT_MISMATCH: S.FAILED_PRECONDITION,
  WITNESS_ROLLBACK: S.FAILED_PRECONDITION,
  WITNESS_FORK: S.FAILED_PRECONDITION,
  STORE_ROLLED_BACK: S.FAILED_PRECONDITION,
  AUDIT_LOG_INCONSISTENT: S.FAILED_PRECONDITION,
  QUORUM_REQUIRED: S.FAILED_PRECONDITION,
  PROPOSAL_CLOSED: S.FAILED_PRECONDITION,
  KEY_FROZEN: S.FAILED_PRECONDITION,
  POLICY_FROZEN: S.FAILED_PRECONDITION,
  KEY_EXISTS: S.ALREADY_EXISTS,
  APPROVAL_DUPLICATE: S.ALREADY_EXISTS,
  REQUEST_ID_REUSED: S.ALREADY_EXISTS,
  NONCE_ALREADY_SIGNED: S.ALREADY_EXISTS,
  BATCH_ID_REUSED: S.ALREADY_EXISTS,
  REQUEST_IN_FLIGHT: S.ABORTED,
  NONCE_IN_FLIGHT: S.ABORTED,
  BATCH_IN_FLIGHT: S.ABORTED,
  // A batch item reserved but not signed (its signing failed): retrying the batch signs it.
  BATCH_ITEM_UNSIGNED: S.ABORTED,
  KEY_ROTATION_CONFLICT: S.ABORTED,
  // Retry with a consistency proof from the witness's latest size (ErrorInfo metadata latest_size).
  WITNESS_CONFLICT: S.ABORTED,
  HSM_UNAVAILABLE: S.UNAVAILABLE,
  THRESHOLD_UNAVAILABLE: S.UNAVAILABLE,
  SHUTTING_DOWN: S.UNAVAILABLE,
  HSM_ERROR: S.INTERNAL,
  SIGNATURE_SELF_CHECK_FAILED: S.INTERNAL,
  INTERNAL: S.INTERNAL,
};

export const statusOf = (reason: Reason): grpc.status => REASON_STATUS[reason];

/**
 * The one place where errors become gRPC statuses. A SignerError keeps its reason and
 * message and gets its reason's status; anything else is logged and reported as INTERNAL without its text, which could
 * carry data from a library or the HSM.
 */
export function toServiceError(e: unknown, log?: Logger): Partial<grpc.ServiceError> {
  const err = e instanceof SignerError ? e : new SignerError('INTERNAL', 'internal error; see the signer log');
  if (!(e instanceof SignerError)) log?.error({ err: e }, 'unexpected error');
  const message = bounded(err.message, MAX_MESSAGE_BYTES);
  const metadata = Object.fromEntries(
    Object.entries(err.metadata)
      .slice(0, MAX_METADATA_ENTRIES)
      .map(([k, v]) => [k, bounded(v, MAX_METADATA_BYTES)]),
  );
  const info = ErrorInfo.encode(ErrorInfo.create({ reason: err.reason, domain: ERROR_DOMAIN, metadata })).finish();
  const details = [{ type_url: 'type.googleapis.com/google.rpc.ErrorInfo', value: info }];
  if (err.retryDelayMs !== undefined) {
    const delay = { seconds: Math.floor(err.retryDelayMs / 1000), nanos: (err.retryDelayMs % 1000) * 1e6 };
    details.push({
      type_url: 'type.googleapis.com/google.rpc.RetryInfo',
      value: RetryInfo.encode(RetryInfo.create({ retryDelay: delay })).finish(),
    });
  }
  const code = statusOf(err.reason);
  const encoded = RpcStatus.encode(RpcStatus.create({ code, message, details })).finish();
  const trailers = new grpc.Metadata();
  trailers.set('grpc-status-details-bin', Buffer.from(encoded));
  return { code, details: message, metadata: trailers };
}

/**
 * Bounds on what a refusal carries, in UTF-8 bytes. A message may quote the caller's own input
 * (a viem decoding error, a policy document's bad field); capped like this, grpc-message
 * (percent-encoded: at most 3 bytes per byte) plus grpc-status-details-bin (base64) stay near
 * 6 KiB, under the 8 KiB metadata limit of default gRPC clients. Ids are cut to 64 characters
 * before they reach a message (src/signer/grpc/ids.ts).
 */
export const MAX_MESSAGE_BYTES = 768;
const MAX_METADATA_BYTES = 128;
const MAX_METADATA_ENTRIES = 12;

/** Unpaired surrogates would make grpc-js's encodeURI of the message throw while sending. */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

/** `s` as well-formed UTF-16 of at most `maxBytes` UTF-8 bytes, "…" marking a cut. */
export function bounded(s: string, maxBytes: number): string {
  const text = s.replace(LONE_SURROGATE, '\uFFFD');
  if (Buffer.byteLength(text) <= maxBytes) return text;
  let out = '';
  let bytes = 3; // the ellipsis
  for (const ch of text) {
    bytes += Buffer.byteLength(ch);
    if (bytes > maxBytes) break;
    out += ch;
  }
  return `${out}…`;
}
