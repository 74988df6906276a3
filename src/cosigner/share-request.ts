/**
 * The SignShare request as the cosigner reads it (cosigner.proto), apart from the code that
 * checks it, so the checks and the signing import it without importing each other.
 */

import type { WirePolicy } from '../core/admin/wire-policy.js';

export type { WirePolicy };

/** SignShareRequest as proto-loader decodes it. */
export interface SignShareRequest {
  keyId: string;
  keyVersion: number;
  epoch: number;
  client: string;
  requestId: string;
  payloadKind: string;
  payload: Buffer;
  replayScope: { chainId: string; accountNonce: string } | null;
  nonceId: string;
  commitments: Array<{ cosignerId: number; hiding: Buffer; binding: Buffer }>;
  /** The client's signed request (fields 40-44), checked by this cosigner itself. */
  signedRequest?: Buffer | null;
  requestSignature?: Buffer | null;
  requestSigningKey?: string | null;
  clientCertificate?: Buffer | null;
  payloadIndex?: number | null;
  /** The policy version that governs the key, with its approvals (field 45). */
  policy?: WirePolicy | null;
}
