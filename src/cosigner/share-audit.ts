import type { AuditDraft } from '../core/audit/draft.js';
import type { SignerError } from '../core/errors.js';
import type { PolicyUse } from './records.js';
import type { VerifiedRequest } from './request-check.js';
import type { SignShareRequest } from './share-request.js';

/**
 * The cosigner's audit entries for share requests, in the signer's entry format
 * (core/audit/chain.ts) so the same chain code hashes them. Hashes and names only: never a
 * payload, a nonce or a share. Values a coordinator sent are cut and stripped of control
 * characters, so a refused request cannot put an unbounded or line-breaking string in the log.
 */
// biome-ignore lint/suspicious/noControlCharactersInRegex: stripping control characters is the point
const CONTROL = /[\u0000-\u001f\u007f]/g;
const clean = (s: string | null | undefined, max = 200): string | null =>
  s ? s.slice(0, max).replace(CONTROL, '?') : null;

/** A share released: who asked (the verified client), under which policy version, for what. */
export function grantedDraft(
  cosigner: number,
  r: SignShareRequest,
  payloadHash: Uint8Array,
  verified: VerifiedRequest,
  policy: PolicyUse,
  at: Date,
): AuditDraft {
  const scope: Record<string, string> = r.replayScope
    ? { scope: `${r.replayScope.chainId}/${r.replayScope.accountNonce}` }
    : {};
  return {
    kind: 'share.granted',
    at,
    client: verified.client,
    keyId: r.keyId,
    keyVersion: r.keyVersion,
    requestId: clean(r.requestId),
    payloadHash,
    intent: {
      cosigner: String(cosigner),
      kind: clean(r.payloadKind)!,
      traffic: verified.traffic,
      policy: policy.name,
      policyVersion: String(policy.version),
      epoch: String(r.epoch),
      ...scope,
    },
    decision: 'allowed',
    reason: null,
    signatureHash: null,
    request: verified.audit,
  };
}

/** A share refused, with the reason and the refusal's metadata (policy, rule, why...). */
export function refusedDraft(
  cosigner: number,
  r: SignShareRequest,
  payloadHash: Uint8Array,
  e: SignerError,
  at: Date,
): AuditDraft {
  const intent: Record<string, string> = { cosigner: String(cosigner) };
  for (const [k, v] of Object.entries(e.metadata)) intent[clean(k, 64)!] = clean(v) ?? '';
  intent.cosigner = String(cosigner);
  if (r.signedRequest?.length) intent.signingKey = clean(r.requestSigningKey) ?? '';
  return {
    kind: 'share.refused',
    at,
    client: clean(r.client),
    keyId: clean(r.keyId),
    keyVersion: Number.isSafeInteger(r.keyVersion) ? r.keyVersion : null,
    requestId: clean(r.requestId),
    payloadHash,
    intent,
    decision: 'refused',
    reason: e.reason,
    signatureHash: null,
  };
}
