import type { Reason } from '../errors.js';
import { decodeErc20Call } from '../payloads/erc20.js';
import type { EvmIntent } from '../payloads/evm.js';
import type { CompiledPolicy } from './schema.js';

/**
 * Per-token limits over time and over a batch (`velocity[].tokens`, `batch.maxTokenTotals`).
 * `evm.tokens.maxAmount` caps one call; without these a token drains at maxCount x maxAmount
 * per window. Every ERC-20 call the policy understands (transfer, transferFrom, approve) counts:
 * an approval lets its spender move the amount, so it is spent as far as the limits go.
 */

/** An ERC-20 amount one request moves or authorises; `contract` is lowercase. */
export interface TokenMove {
  contract: string;
  amount: bigint;
}

/** What is already reserved in a window for one token contract. */
export interface TokenUsage {
  count: number;
  amount: bigint;
}

/** The part of a velocity usage these limits read and grow. */
export interface WithTokens {
  tokens?: ReadonlyMap<string, TokenUsage>;
}

type TokenDeny = { allow: false; reason: Reason; message: string; metadata: Record<string, string> };

/** The token movement of a transaction, if its calldata is a well-formed ERC-20 call. */
export function tokenMove(tx: EvmIntent | undefined): TokenMove | undefined {
  if (!tx || tx.to === null || tx.data === '0x') return undefined;
  let call: ReturnType<typeof decodeErc20Call>;
  try {
    call = decodeErc20Call(tx.data);
  } catch {
    // Malformed ERC-20 calldata is refused by the per-call rules (or is opaque contract data).
    return undefined;
  }
  return call ? { contract: tx.to.toLowerCase(), amount: call.amount } : undefined;
}

/** The token contracts velocity rule `i` limits, for the store to read their usage. */
export const limitedTokens = (p: CompiledPolicy, i: number): string[] => [...(p.velocity[i]?.tokens.keys() ?? [])];

function deny(p: CompiledPolicy, reason: Reason, rule: string, message: string, extra: Record<string, string>) {
  const d: TokenDeny = {
    allow: false,
    reason,
    message: `${message} (policy "${p.name}", ${rule})`,
    metadata: { policy: p.name, rule, ...extra },
  };
  return d;
}

/** Per-token count and amount over each velocity rule's window. */
export function checkTokenVelocity(
  p: CompiledPolicy,
  move: TokenMove | undefined,
  usage: readonly WithTokens[],
): TokenDeny | null {
  if (!move) return null;
  for (const [i, rule] of p.velocity.entries()) {
    const limit = rule.tokens.get(move.contract);
    if (!limit) continue;
    const used = usage[i]?.tokens?.get(move.contract) ?? { count: 0, amount: 0n };
    const where = { scope: rule.scope, windowSeconds: String(rule.windowSeconds), token: move.contract };
    const per = `for token ${move.contract} per ${rule.scope} over ${rule.windowSeconds}s`;
    const name = `velocity[${i}].tokens`;
    if (limit.maxCount !== null && used.count + 1 > limit.maxCount) {
      return deny(
        p,
        'VELOCITY_LIMIT',
        name,
        `${used.count} token calls already reserved ${per}; one more exceeds the limit ${limit.maxCount}`,
        { ...where, limit: String(limit.maxCount) },
      );
    }
    if (limit.maxAmount !== null && used.amount + move.amount > limit.maxAmount) {
      return deny(
        p,
        'VELOCITY_LIMIT',
        name,
        `amount ${move.amount} on top of ${used.amount} already reserved ${per} exceeds the limit ${limit.maxAmount}`,
        { ...where, limit: String(limit.maxAmount) },
      );
    }
  }
  return null;
}

/** Per-token totals over a batch's items (`batch.maxTokenTotals`). */
export function checkBatchTokenTotals(
  p: CompiledPolicy,
  moves: ReadonlyArray<TokenMove | undefined>,
): TokenDeny | null {
  const limits = p.batch?.maxTokenTotals;
  if (!limits || limits.size === 0) return null;
  const totals = new Map<string, bigint>();
  for (const m of moves) if (m) totals.set(m.contract, (totals.get(m.contract) ?? 0n) + m.amount);
  for (const [contract, total] of totals) {
    const limit = limits.get(contract);
    if (limit !== undefined && total > limit) {
      return deny(
        p,
        'BATCH_LIMIT',
        'batch.maxTokenTotals',
        `batch total ${total} of token ${contract} exceeds the policy limit ${limit}`,
        { token: contract, limit: String(limit) },
      );
    }
  }
  return null;
}

/** A usage list with its token maps copied, so a batch can grow it item by item. */
export function copyTokenUsage<T extends WithTokens>(u: T): T {
  return u.tokens ? { ...u, tokens: new Map(u.tokens) } : { ...u };
}

/** Adds one item's movement to every usage that tracks its token (after the item was allowed). */
export function addTokenUsage(running: WithTokens[], move: TokenMove | undefined): void {
  if (!move) return;
  for (const u of running) {
    const tokens = u.tokens as Map<string, TokenUsage> | undefined;
    const cur = tokens?.get(move.contract);
    if (tokens && cur) tokens.set(move.contract, { count: cur.count + 1, amount: cur.amount + move.amount });
    else if (tokens) tokens.set(move.contract, { count: 1, amount: move.amount });
  }
}
