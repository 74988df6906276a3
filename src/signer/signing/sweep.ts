import { SignerError } from '../../core/errors.js';
import type { CompiledPolicy } from '../../core/policy/schema.js';
import { decideSweep, sweepPolicy } from '../../core/policy/sweep.js';
import type { Prepared } from './service.js';

/**
 * The sweep path of the sign flow: a request that names a retired version (Prepared.sweep) is
 * decided by the key policy's sweep rule (src/core/policy/sweep.ts), then reserved under the
 * policy that rule implies (its chains, the active address, its fee caps), so nonce claims,
 * replays and the audit work as for any EVM payload. A refusal is returned, not thrown: the flow
 * audits it inside the reservation's transaction with the request's sweep intent.
 */
export function sweepDecision(
  policy: CompiledPolicy,
  p: Prepared & { sweep: NonNullable<Prepared['sweep']> },
  client: string,
): { policy: CompiledPolicy; refusal?: SignerError } {
  const d = decideSweep(policy, p.evm!.intent, p.sweep.activeAddress, client);
  if (!d.allow) {
    const metadata = { ...d.metadata, keyId: p.key.keyId, version: String(p.key.version), state: p.key.state };
    return { policy, refusal: new SignerError(d.reason, d.message, metadata) };
  }
  return { policy: sweepPolicy(policy, d.rule, p.sweep.activeAddress) };
}
