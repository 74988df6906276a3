import { createHash } from 'node:crypto';
import { nativeValue, type SignIntent } from '../../core/policy/evaluate.js';
import { tokenMove } from '../../core/policy/token-limits.js';
import type { NonceClaim, ReserveItem } from '../../core/replay/records.js';
import type { Prepared } from './service.js';

/** A prepared payload as the policy and the replay guard see it (src/signer/signing/flow.ts). */

/** What the policy sees of a prepared payload. */
export function signIntent(client: string, traffic: SignIntent['traffic'], p: Prepared): SignIntent {
  return { client, keyId: p.key.keyId, traffic, kind: p.kind, ...(p.evm ? { evm: p.evm.intent } : {}) };
}

export function reserveItem(client: string, requestId: string, p: Prepared, intent: SignIntent): ReserveItem {
  return {
    client,
    requestId,
    keyId: p.key.keyId,
    payloadHash: p.payloadHash,
    // A sweep moves funds between two addresses of the same key: not counted as value spent.
    value: p.sweep ? 0n : nativeValue(intent),
    ...tokenOf(p),
    ...(p.evm ? { nonce: nonceClaim(p) } : p.scope ? { nonce: scopeClaim(p) } : {}),
  };
}

/** The ERC-20 movement velocity counts per token. */
function tokenOf(p: Prepared): Pick<ReserveItem, 'token'> {
  if (p.sweep) return {};
  const move = tokenMove(p.evm?.intent);
  return move ? { token: move } : {};
}

/**
 * A declared (chain, nonce) of an undecoded payload: no fee bump exists for it (the service
 * cannot tell what the payload keeps), so only the identical payload replays.
 */
function scopeClaim(p: Prepared): NonceClaim {
  return {
    account: `${p.key.keyId}@v${p.key.version}`,
    chainId: p.scope!.chainId,
    nonce: p.scope!.nonce,
    intentHash: p.payloadHash,
    maxFeePerGas: 0n,
    maxPriorityFeePerGas: 0n,
  };
}

/** What a fee bump must keep (recipient, value, data) and what it must raise (fees). */
function nonceClaim(p: Prepared): NonceClaim {
  const t = p.evm!.intent;
  return {
    account: `${p.key.keyId}@v${p.key.version}`,
    chainId: t.chainId,
    nonce: t.nonce,
    intentHash: createHash('sha256')
      .update(`${t.to ?? 'create'}\0${t.value}\0${t.data}`)
      .digest(),
    maxFeePerGas: t.maxFeePerGas,
    maxPriorityFeePerGas: t.maxPriorityFeePerGas ?? t.maxFeePerGas,
  };
}
