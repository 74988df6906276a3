import { type Reason, SignerError } from '../errors.js';
import { decodeErc20Call, type Erc20Call } from '../payloads/erc20.js';
import type { EvmIntent } from '../payloads/evm.js';
import type { CompiledEvmRules, CompiledPolicy, PayloadKind } from './schema.js';
import {
  addTokenUsage,
  checkBatchTokenTotals,
  checkTokenVelocity,
  copyTokenUsage,
  type TokenUsage,
  tokenMove,
} from './token-limits.js';

/** What a sign request asks for, as the policy sees it: identity, key, traffic class, payload. */
export interface SignIntent {
  /** Client certificate CN, already authenticated. */
  client: string;
  keyId: string;
  /** Set by the server from the RPC (single sign or batch), never by the client. */
  traffic: 'hot' | 'batch';
  kind: PayloadKind;
  /** Present exactly when kind is 'evm': the decoded transaction. */
  evm?: EvmIntent;
}

/** What is already reserved inside one velocity rule's window, for that rule's scope. */
export interface VelocityUsage {
  count: number;
  /** Native value, wei. */
  value: bigint;
  /** ERC-20 usage per token contract the rule limits (lowercase), when it limits any. */
  tokens?: ReadonlyMap<string, TokenUsage>;
}

export type Decision =
  | { allow: true }
  | {
      allow: false;
      reason: Reason;
      /** For humans: names the rule and the numbers; never contains calldata. */
      message: string;
      /** Always has `policy` and `rule`; more keys per rule (limit, scope, index, ...). */
      metadata: Record<string, string>;
    };

type Deny = Extract<Decision, { allow: false }>;

const ALLOW: Decision = Object.freeze({ allow: true });

function deny(
  p: CompiledPolicy,
  reason: Reason,
  rule: string,
  message: string,
  extra: Record<string, string> = {},
): Deny {
  return {
    allow: false,
    reason,
    message: `${message} (policy "${p.name}", ${rule})`,
    metadata: { policy: p.name, rule, ...extra },
  };
}

const refuse = (p: CompiledPolicy, reason: Reason, rule: string, message: string, extra?: Record<string, string>) =>
  deny(p, reason, rule, message, extra);

function evmOf(intent: SignIntent): EvmIntent {
  // A wiring bug, not a client mistake: the server decodes before it asks the policy.
  if (!intent.evm) throw new Error('policy: an evm intent must carry its decoded transaction');
  return intent.evm;
}

/** Value moved in the native coin, wei: the transaction's value for EVM, 0 for anything else. */
export function nativeValue(intent: SignIntent): bigint {
  return intent.kind === 'evm' ? evmOf(intent).value : 0n;
}

/**
 * Refuses a request whose client timestamp is more than `freshness.maxSkewSeconds` from `now`,
 * either way (exactly at the limit is accepted). This bound is what lets idempotency records
 * older than the window be pruned: a retry that old is refused here before it could be replayed.
 * Pure: the caller MUST pass the server clock as `now`.
 */
export function checkFreshness(p: CompiledPolicy, clientTime: Date, now: Date): Decision {
  const nowMs = now.getTime();
  if (Number.isNaN(nowMs)) throw new Error('checkFreshness: now is not a valid Date');
  const t = clientTime.getTime();
  const rule = 'freshness.maxSkewSeconds';
  // NaN compares false with everything, so it would otherwise pass both checks below.
  if (Number.isNaN(t)) {
    const why = 'client timestamp is not a valid time';
    return deny(p, 'REQUEST_INVALID', rule, why);
  }
  const limitMs = p.maxSkewSeconds * 1000;
  const extra = { maxSkewSeconds: String(p.maxSkewSeconds) };
  const limit = `the limit is ${p.maxSkewSeconds}s`;
  if (t < nowMs - limitMs) {
    return deny(
      p,
      'STALE_REQUEST',
      rule,
      `client timestamp is ${(nowMs - t) / 1000}s behind the server clock; ${limit}`,
      extra,
    );
  }
  if (t > nowMs + limitMs) {
    return deny(
      p,
      'FUTURE_REQUEST',
      rule,
      `client timestamp is ${(t - nowMs) / 1000}s ahead of the server clock; ${limit}`,
      extra,
    );
  }
  return ALLOW;
}

function checkTraffic(p: CompiledPolicy, intent: SignIntent): Deny | null {
  if (p.traffic === 'both' || p.traffic === intent.traffic) return null;
  return refuse(
    p,
    'TRAFFIC_CLASS_NOT_ALLOWED',
    'traffic',
    `${intent.traffic} traffic is not allowed; this policy allows ${p.traffic} traffic only`,
  );
}

function checkClient(p: CompiledPolicy, intent: SignIntent): Deny | null {
  if (p.clients === null || p.clients.has(intent.client)) return null;
  return refuse(p, 'CLIENT_NOT_ALLOWED', 'clients', `client "${intent.client}" is not listed for this key`);
}

const KIND_NAMES: Record<PayloadKind, string> = {
  evm: 'EVM transaction',
  digest: 'raw digest',
  message: 'raw message',
};

function checkKind(p: CompiledPolicy, intent: SignIntent): Deny | null {
  const kind = intent.kind;
  if (kind === 'digest' || kind === 'message') {
    if (p.payloadKinds.has(kind)) return null;
    const listed = [...p.payloadKinds].join(', ');
    return refuse(
      p,
      'RAW_SIGNING_DISABLED',
      'payloadKinds',
      `${KIND_NAMES[kind]} signing is disabled; payloadKinds lists ${listed}`,
      { kind },
    );
  }
  if (kind === 'evm' && p.payloadKinds.has('evm') && p.evm !== null) return null;
  const why =
    kind !== 'evm'
      ? `payload kind "${String(kind)}" is unknown`
      : p.evm === null
        ? 'EVM transactions are not allowed: the policy has no evm section'
        : 'EVM transactions are not allowed: payloadKinds does not list evm';
  return refuse(p, 'PAYLOAD_KIND_NOT_ALLOWED', p.evm === null ? 'evm' : 'payloadKinds', why, {
    kind: String(kind),
  });
}

function checkDestination(
  p: CompiledPolicy,
  rules: CompiledEvmRules,
  address: `0x${string}`,
  what: string,
): Deny | null {
  const d = rules.destinations;
  const lower = address.toLowerCase();
  if (d.kind === 'allow' && !d.allow.has(lower)) {
    return refuse(
      p,
      'DESTINATION_NOT_ALLOWED',
      'evm.destinations.allow',
      `${what} ${address} is not in the destination allow-list`,
      { destination: address },
    );
  }
  if (d.kind === 'any' && d.deny.has(lower)) {
    return refuse(
      p,
      'DESTINATION_NOT_ALLOWED',
      'evm.destinations.deny',
      `${what} ${address} is on the destination deny-list`,
      { destination: address },
    );
  }
  return null;
}

/** The decoded ERC-20 call, a refusal if its encoding is malformed, or null for other calldata. */
function erc20CallOf(p: CompiledPolicy, data: `0x${string}`): Erc20Call | Deny | null {
  try {
    return decodeErc20Call(data);
  } catch (e) {
    if (!(e instanceof SignerError)) throw e;
    return deny(p, e.reason, 'evm.tokens', e.message);
  }
}

/** Only to word a refusal: which ERC-20 method this calldata is, if it is a well-formed one. */
function erc20MethodOf(data: `0x${string}`): string | null {
  try {
    return decodeErc20Call(data)?.method ?? null;
  } catch {
    return null;
  }
}

function checkFees(p: CompiledPolicy, rules: CompiledEvmRules, tx: EvmIntent): Deny | null {
  const feeName = tx.type === 'legacy' ? 'gasPrice' : 'maxFeePerGas';
  if (tx.maxFeePerGas > rules.maxFeePerGas) {
    return refuse(
      p,
      'FEE_LIMIT',
      'evm.maxFeePerGas',
      `${feeName} ${tx.maxFeePerGas} wei exceeds the policy limit ${rules.maxFeePerGas}`,
      { limit: String(rules.maxFeePerGas) },
    );
  }
  const cap = rules.maxPriorityFeePerGas;
  if (cap !== null && tx.maxPriorityFeePerGas !== null && tx.maxPriorityFeePerGas > cap) {
    return refuse(
      p,
      'FEE_LIMIT',
      'evm.maxPriorityFeePerGas',
      `maxPriorityFeePerGas ${tx.maxPriorityFeePerGas} wei exceeds the policy limit ${cap}`,
      { limit: String(cap) },
    );
  }
  if (tx.gas > rules.maxGas) {
    return refuse(p, 'FEE_LIMIT', 'evm.maxGas', `gas limit ${tx.gas} exceeds the policy limit ${rules.maxGas}`, {
      limit: String(rules.maxGas),
    });
  }
  return null;
}

function checkTokenCall(
  p: CompiledPolicy,
  rules: CompiledEvmRules,
  tx: EvmIntent & { to: `0x${string}` },
  maxAmount: bigint,
  call: Erc20Call,
): Deny | null {
  if (call.amount > maxAmount) {
    return refuse(
      p,
      'VALUE_LIMIT',
      'evm.tokens',
      `ERC-20 ${call.method} amount ${call.amount} exceeds the policy limit ${maxAmount} ` + `for token ${tx.to}`,
      { token: tx.to, limit: String(maxAmount) },
    );
  }
  const who = call.method === 'approve' ? 'ERC-20 approve spender' : 'ERC-20 recipient';
  return (
    checkDestination(p, rules, call.recipient, who) ??
    // Native value sent along with a token call lands in the token contract itself.
    (tx.value > 0n ? checkDestination(p, rules, tx.to, 'native value recipient') : null)
  );
}

/** Where the transaction sends value or tokens, and to which contract it sends calldata. */
function checkCall(p: CompiledPolicy, rules: CompiledEvmRules, tx: EvmIntent): Deny | null {
  const to = tx.to;
  // Contract creation was allowed above; init code is opaque and its value is capped by maxValue.
  if (to === null) return null;
  if (tx.data === '0x') return checkDestination(p, rules, to, 'recipient');

  const contract = to.toLowerCase();
  const token = rules.tokens.get(contract);
  if (token) {
    const call = erc20CallOf(p, tx.data);
    if (call && 'allow' in call) return call;
    if (call) return checkTokenCall(p, rules, { ...tx, to }, token.maxAmount, call);
    // Any other calldata to a token contract is an opaque contract call, like below.
  }

  if (rules.contracts.has(contract)) return null;
  const method = token ? null : erc20MethodOf(tx.data);
  return refuse(
    p,
    'CONTRACT_NOT_ALLOWED',
    'evm.contracts',
    method
      ? `ERC-20 ${method} to ${to}, which is in neither evm.tokens nor evm.contracts, is not allowed`
      : `call to contract ${to}, which is not in evm.contracts, is not allowed`,
    { contract: to },
  );
}

function checkEvm(p: CompiledPolicy, rules: CompiledEvmRules, tx: EvmIntent): Deny | null {
  if (!rules.chains.has(tx.chainId)) {
    const allowed = [...rules.chains].join(', ');
    return refuse(
      p,
      'CHAIN_NOT_ALLOWED',
      'evm.chains',
      `chain ${tx.chainId} is not allowed; the policy allows chains ${allowed}`,
      { chainId: String(tx.chainId) },
    );
  }
  if (tx.to === null && !rules.allowContractCreation) {
    return refuse(p, 'CONTRACT_NOT_ALLOWED', 'evm.allowContractCreation', 'contract creation is not allowed');
  }
  const fees = checkFees(p, rules, tx);
  if (fees) return fees;
  if (tx.value > rules.maxValue) {
    return refuse(
      p,
      'VALUE_LIMIT',
      'evm.maxValue',
      `value ${tx.value} wei exceeds the policy limit ${rules.maxValue}`,
      { limit: String(rules.maxValue) },
    );
  }
  return checkCall(p, rules, tx);
}

function checkVelocity(p: CompiledPolicy, intent: SignIntent, usage: readonly VelocityUsage[]): Deny | null {
  const value = nativeValue(intent);
  for (const [i, rule] of p.velocity.entries()) {
    const used = usage[i]!;
    const where = { scope: rule.scope, windowSeconds: String(rule.windowSeconds) };
    const per = `per ${rule.scope} over ${rule.windowSeconds}s`;
    if (rule.maxCount !== null && used.count + 1 > rule.maxCount) {
      return deny(
        p,
        'VELOCITY_LIMIT',
        `velocity[${i}]`,
        `${used.count} signatures already reserved ${per}; ` + `one more exceeds the limit ${rule.maxCount}`,
        { ...where, limit: String(rule.maxCount) },
      );
    }
    if (rule.maxValue !== null && used.value + value > rule.maxValue) {
      return deny(
        p,
        'VELOCITY_LIMIT',
        `velocity[${i}]`,
        `value ${value} wei on top of ${used.value} wei already reserved ${per} ` +
          `exceeds the limit ${rule.maxValue}`,
        { ...where, limit: String(rule.maxValue) },
      );
    }
  }
  return null;
}

function assertUsage(p: CompiledPolicy, usage: readonly VelocityUsage[]): void {
  if (usage.length !== p.velocity.length) {
    throw new Error(`policy "${p.name}": expected ${p.velocity.length} velocity usages, got ${usage.length}`);
  }
}

/**
 * Decides one sign request against its policy. Checks run in a fixed order (traffic, client,
 * payload kind, chain, contract creation, fees, native value, token contract and amount,
 * destination, other contract calls, velocity) and the first failure is the answer, so a
 * refusal always names the earliest rule broken. Pure and total: no I/O, no clock.
 *
 * `usage` MUST hold one entry per `p.velocity` rule, in order, counting what is already reserved
 * in that rule's window for its scope (the intent's key or client). An allow is only a decision:
 * the caller MUST still reserve the velocity usage and the replay record atomically before
 * signing, and MUST have checked freshness with `checkFreshness`.
 */
export function evaluate(p: CompiledPolicy, intent: SignIntent, usage: readonly VelocityUsage[]): Decision {
  assertUsage(p, usage);
  return (
    checkTraffic(p, intent) ??
    checkClient(p, intent) ??
    checkKind(p, intent) ??
    (intent.kind === 'evm' ? checkEvm(p, p.evm!, evmOf(intent)) : null) ??
    checkVelocity(p, intent, usage) ??
    checkTokenVelocity(p, tokenMove(intent.evm), usage) ??
    ALLOW
  );
}

/**
 * Decides a batch as a whole: all items are allowed or none is. Batch limits (item count, total
 * native value) come first (contiguous nonces need the store's view: src/core/replay/guard.ts); then each item is evaluated in order with
 * `usage` grown by the items before it, so a batch can never exceed a velocity rule that its
 * items would each pass alone. A refusal of an item names it in `metadata.index` (0-based).
 *
 * Every intent MUST have traffic 'batch' and share one client; `usage` is as for `evaluate`.
 * Key-scoped usage is accumulated over all items, which is exact for a single-key batch and
 * errs toward refusal otherwise.
 */
export function evaluateBatch(
  p: CompiledPolicy,
  intents: readonly SignIntent[],
  usage: readonly VelocityUsage[],
): Decision {
  assertUsage(p, usage);
  if (intents.some((i) => i.traffic !== 'batch')) {
    throw new Error('evaluateBatch: every item must have traffic "batch"');
  }
  const limits = p.batch;
  if (p.traffic === 'hot' || limits === null) {
    return refuse(
      p,
      'TRAFFIC_CLASS_NOT_ALLOWED',
      'traffic',
      `batch traffic is not allowed; this policy allows ${p.traffic} traffic only`,
    );
  }
  if (intents.length === 0) {
    return deny(p, 'REQUEST_INVALID', 'batch', 'batch has no items');
  }
  if (intents.length > limits.maxItems) {
    return refuse(
      p,
      'BATCH_LIMIT',
      'batch.maxItems',
      `batch of ${intents.length} items exceeds the policy limit ${limits.maxItems}`,
      { limit: String(limits.maxItems) },
    );
  }
  const total = intents.reduce((sum, i) => sum + nativeValue(i), 0n);
  if (total > limits.maxTotalValue) {
    return refuse(
      p,
      'BATCH_LIMIT',
      'batch.maxTotalValue',
      `batch total value ${total} wei exceeds the policy limit ${limits.maxTotalValue}`,
      { limit: String(limits.maxTotalValue) },
    );
  }
  const moves = intents.map((i) => tokenMove(i.evm));
  const tokenTotals = checkBatchTokenTotals(p, moves);
  if (tokenTotals) return tokenTotals;
  const running = usage.map(copyTokenUsage);
  for (const [i, intent] of intents.entries()) {
    const d = evaluate(p, intent, running);
    if (!d.allow) {
      return {
        ...d,
        message: `batch item ${i}: ${d.message}`,
        metadata: { ...d.metadata, index: String(i) },
      };
    }
    const value = nativeValue(intent);
    for (const u of running) {
      u.count += 1;
      u.value += value;
    }
    addTokenUsage(running, moves[i]);
  }
  return ALLOW;
}
