/**
 * Stable machine reasons (google.rpc.ErrorInfo.reason). Clients branch on these, so a value
 * once published never changes meaning.
 */
export type Reason =
  | 'KEY_NOT_FOUND'
  | 'KEY_VERSION_NOT_FOUND'
  | 'PAYLOAD_INVALID'
  | 'PAYLOAD_KIND_UNSUPPORTED'
  | 'REQUEST_INVALID'
  | 'NOT_AUTHENTICATED'
  // The peer certificate, checked at every call (src/infra/grpc/peer-trust.ts).
  | 'CERTIFICATE_REVOKED'
  | 'CERTIFICATE_NOT_PINNED'
  | 'CERTIFICATE_EXPIRED'
  // Client-signed requests (src/core/request-signing, proto SignRequest's comments).
  | 'REQUEST_SIGNATURE_INVALID'
  | 'REQUEST_SIGNATURE_REQUIRED'
  | 'NOT_AUTHORIZED'
  | 'HSM_UNAVAILABLE'
  | 'HSM_ERROR'
  | 'SIGNATURE_SELF_CHECK_FAILED'
  | 'KEY_EXISTS'
  | 'INTERNAL'
  // Signing policy (src/policy): freshness, then the policy's rules in evaluation order.
  | 'STALE_REQUEST'
  | 'FUTURE_REQUEST'
  | 'TRAFFIC_CLASS_NOT_ALLOWED'
  | 'CLIENT_NOT_ALLOWED'
  | 'RAW_SIGNING_DISABLED'
  | 'PAYLOAD_KIND_NOT_ALLOWED'
  | 'CHAIN_NOT_ALLOWED'
  | 'CONTRACT_NOT_ALLOWED'
  | 'FEE_LIMIT'
  | 'VALUE_LIMIT'
  | 'DESTINATION_NOT_ALLOWED'
  | 'VELOCITY_LIMIT'
  | 'BATCH_LIMIT'
  | 'REQUEST_ID_REUSED'
  | 'REQUEST_IN_FLIGHT'
  | 'NONCE_ALREADY_SIGNED'
  | 'NONCE_IN_FLIGHT'
  | 'NONCE_GAP'
  | 'BATCH_ID_REUSED'
  | 'BATCH_IN_FLIGHT'
  | 'BATCH_NONCES_NOT_UNIQUE'
  | 'BATCH_EXPIRED'
  | 'NO_POLICY'
  | 'POLICY_INVALID'
  // A stored policy that does not compile governs the key (fail closed), or it changed under the request.
  | 'POLICY_UNAVAILABLE'
  | 'POLICY_NOT_FOUND'
  | 'KEY_VERSION_RETIRED'
  // A retired EVM key version asked to sign something other than a sweep to the active address.
  | 'SWEEP_NOT_ALLOWED'
  | 'KEY_ROTATION_CONFLICT'
  | 'CONFIRMATION_REQUIRED'
  | 'KEY_STATE_INVALID'
  // Threshold keys (src/threshold): cosigners, ceremonies and signing rounds.
  | 'THRESHOLD_NOT_CONFIGURED'
  | 'THRESHOLD_UNAVAILABLE'
  | 'PARTICIPANT_FAULT'
  | 'CEREMONY_NOT_FOUND'
  | 'CEREMONY_FAILED'
  | 'CEREMONY_NOT_PENDING'
  | 'SHARE_NOT_FOUND'
  | 'SHARE_EPOCH_MISMATCH'
  // Share destruction on a cosigner (src/core/admin/share-destroy.ts): the quorum's order, the delay.
  | 'DESTROY_ORDER_INVALID'
  | 'SHARE_DESTROY_SCHEDULED'
  | 'NONCE_UNKNOWN'
  | 'COMMITMENT_MISMATCH'
  // Witnesses of the audit log (src/witness, proto/signer/v1/witness.proto).
  | 'WITNESS_UNKNOWN_ORIGIN'
  | 'CHECKPOINT_SIGNATURE_INVALID'
  | 'WITNESS_CONFLICT'
  | 'WITNESS_ROLLBACK'
  | 'WITNESS_FORK'
  // Resource bounds at the gRPC edge (src/infra/grpc/request-guard.ts, src/signer/grpc/watch.ts).
  | 'MESSAGE_TOO_LARGE'
  | 'CLIENT_OVERLOADED'
  | 'SHUTTING_DOWN'
  // Store rollback (src/core/audit/rollback.ts): the database lost entries signatures were released under.
  | 'STORE_ROLLED_BACK'
  // Audit log (src/signer/audit): the database's log does not extend the last signed checkpoint.
  | 'AUDIT_LOG_INCONSISTENT'
  // Batch results (src/signer/grpc/batch-size.ts, batch-results.ts): a response too large for
  // the client to read, results read back by batch id.
  | 'BATCH_RESPONSE_TOO_LARGE'
  | 'BATCH_NOT_FOUND'
  | 'BATCH_ITEM_UNSIGNED'
  // Admin quorum (src/core/admin, src/signer/policy/proposals.ts): proposals, approvals, freezes.
  | 'QUORUM_REQUIRED'
  | 'PROPOSAL_NOT_FOUND'
  | 'PROPOSAL_CLOSED'
  | 'APPROVAL_INVALID'
  | 'APPROVAL_DUPLICATE'
  | 'KEY_FROZEN'
  | 'POLICY_FROZEN';

/**
 * A refusal or failure that crosses the API boundary. The message is shown to callers and
 * logged, so it MUST NOT contain a PIN, key material or anything read from the HSM's secrets.
 * The transport status is not chosen here: each reason has exactly one, in the table at the
 * gRPC edge (src/infra/grpc/status.ts), so a reason can never travel under two statuses.
 */
export class SignerError extends Error {
  constructor(
    readonly reason: Reason,
    message: string,
    readonly metadata: Record<string, string> = {},
    /** For retryable refusals (in flight, unavailable): when a retry makes sense. */
    readonly retryDelayMs?: number,
  ) {
    super(message);
    this.name = 'SignerError';
  }
}
