/**
 * CosignerPolicy (cosigner.proto) as proto-loader carries it: the policy version that governs a
 * key, with the approvals of the proposal that made it (empty for a config-set version). The
 * coordinator builds it and every cosigner verifies it itself; one shape for both programs.
 */
export interface WirePolicy {
  name: string;
  version: number;
  document: string;
  proposalId: string;
  approvals: Array<{ admin: string; signature: Buffer; atMs: string }>;
}
