import { type Reason, SignerError } from '../errors.js';
import { decodeErc20Call } from '../payloads/erc20.js';
import type { EvmIntent } from '../payloads/evm.js';
import type { CompiledPolicy } from './schema.js';
import type { CompiledSweepRule } from './sweep-rule.js';

/**
 * Sweeps: what a retired (verify-only or disabled) version of an EVM key may still sign, so
 * that a rotation never strands the funds at the old address. Exactly two shapes, both paying
 * the key's ACTIVE address and nothing else:
 *
 * - native: a transfer to the active address with empty calldata;
 * - erc20: `transfer(activeAddress, amount)` on a token listed in `sweep.tokens`, with no native
 *   value (value sent to a token contract would land in the contract, not at the active address).
 *
 * The signer cannot see balances: "the whole balance" is the client's job (scripts/sweep-plan.ts
 * computes it from balances the operator supplies); this rule only makes sure whatever is moved
 * goes to the active address, under the sweep rule's chains and fee caps. Pure: no I/O, no clock.
 */

export type SweepKind = 'native' | 'erc20';

export type SweepDecision =
  | { allow: true; kind: SweepKind; rule: CompiledSweepRule }
  | { allow: false; reason: Reason; message: string; metadata: Record<string, string> };

type Deny = Extract<SweepDecision, { allow: false }>;

function deny(p: CompiledPolicy, reason: Reason, rule: string, message: string, extra: Record<string, string> = {}) {
  return {
    allow: false,
    reason,
    message: `${message} (policy "${p.name}", ${rule})`,
    metadata: { policy: p.name, rule, ...extra },
  } satisfies Deny;
}

function checkFees(p: CompiledPolicy, s: CompiledSweepRule, tx: EvmIntent): Deny | null {
  const feeName = tx.type === 'legacy' ? 'gasPrice' : 'maxFeePerGas';
  if (tx.maxFeePerGas > s.maxFeePerGas)
    return deny(
      p,
      'FEE_LIMIT',
      'sweep.maxFeePerGas',
      `${feeName} ${tx.maxFeePerGas} wei exceeds the sweep limit ${s.maxFeePerGas}`,
      {
        limit: String(s.maxFeePerGas),
      },
    );
  const cap = s.maxPriorityFeePerGas;
  if (cap !== null && tx.maxPriorityFeePerGas !== null && tx.maxPriorityFeePerGas > cap)
    return deny(
      p,
      'FEE_LIMIT',
      'sweep.maxPriorityFeePerGas',
      `maxPriorityFeePerGas ${tx.maxPriorityFeePerGas} wei exceeds the sweep limit ${cap}`,
      { limit: String(cap) },
    );
  if (tx.gas > s.maxGas)
    return deny(p, 'FEE_LIMIT', 'sweep.maxGas', `gas limit ${tx.gas} exceeds the sweep limit ${s.maxGas}`, {
      limit: String(s.maxGas),
    });
  return null;
}

/** Whether `tx` is one of the two sweep shapes, to `active` (the key's active EVM address). */
function shapeOf(p: CompiledPolicy, s: CompiledSweepRule, tx: EvmIntent, active: string): SweepKind | Deny {
  const notActive = (what: string, to: string) =>
    deny(
      p,
      'SWEEP_NOT_ALLOWED',
      'sweep.destination',
      `a retired version may only pay the key's active address ${active}; ${what} ${to} is not it`,
      { destination: to, activeAddress: active },
    );
  if (tx.to === null) return deny(p, 'SWEEP_NOT_ALLOWED', 'sweep', 'a retired version cannot create contracts');
  if (tx.data === '0x') return tx.to.toLowerCase() === active.toLowerCase() ? 'native' : notActive('recipient', tx.to);
  if (!s.tokens.has(tx.to.toLowerCase()))
    return deny(
      p,
      'SWEEP_NOT_ALLOWED',
      'sweep.tokens',
      `a retired version may only call ERC-20 transfer on a token in sweep.tokens; ${tx.to} is not listed`,
      { contract: tx.to },
    );
  let call: ReturnType<typeof decodeErc20Call>;
  try {
    call = decodeErc20Call(tx.data);
  } catch (e) {
    if (!(e instanceof SignerError)) throw e;
    return deny(p, e.reason, 'sweep.tokens', e.message);
  }
  if (call?.method !== 'transfer')
    return deny(
      p,
      'SWEEP_NOT_ALLOWED',
      'sweep.tokens',
      `a retired version may only call ERC-20 transfer on ${tx.to}, not ${call ? call.method : 'other calldata'}`,
      { contract: tx.to },
    );
  if (tx.value > 0n)
    return deny(
      p,
      'SWEEP_NOT_ALLOWED',
      'sweep.tokens',
      'a token sweep carries no native value (it would stay in the token contract)',
    );
  return call.recipient.toLowerCase() === active.toLowerCase()
    ? 'erc20'
    : notActive('ERC-20 recipient', call.recipient);
}

/**
 * Decides whether a retired version of a key may sign `tx` for `client` as a sweep to
 * `activeAddress`. A client the policy does not list learns nothing more (CLIENT_NOT_ALLOWED);
 * without a sweep rule in the key's policy the answer is KEY_VERSION_RETIRED, as for any other
 * payload; then, in order: chain, shape and destination, fees.
 */
export function decideSweep(p: CompiledPolicy, tx: EvmIntent, activeAddress: string, client: string): SweepDecision {
  if (p.clients !== null && !p.clients.has(client))
    return deny(p, 'CLIENT_NOT_ALLOWED', 'clients', `client "${client}" is not listed for this key`);
  const s = p.sweep;
  if (!s)
    return deny(
      p,
      'KEY_VERSION_RETIRED',
      'sweep',
      'this version is retired and the policy has no sweep rule, so it signs nothing',
    );
  if (!s.chains.has(tx.chainId))
    return deny(p, 'CHAIN_NOT_ALLOWED', 'sweep.chains', `chain ${tx.chainId} is not in sweep.chains`, {
      chainId: String(tx.chainId),
    });
  const shape = shapeOf(p, s, tx, activeAddress);
  if (typeof shape !== 'string') return shape;
  return checkFees(p, s, tx) ?? { allow: true, kind: shape, rule: s };
}

/** 2^256 - 1: a sweep's amount is not limited (it can only reach the active address). */
const UNLIMITED = (1n << 256n) - 1n;

/**
 * The policy the replay guard evaluates a sweep allowed by `decideSweep` against: the key's own
 * client list and freshness, and otherwise only the sweep rule, so the guard's second look
 * (inside the reservation) agrees with the first: the active address as the only destination,
 * the sweep tokens, the sweep fee caps; no velocity (a sweep moves funds between two addresses
 * of the same key, and its whole balance would not fit a velocity limit), hot traffic only.
 */
export function sweepPolicy(p: CompiledPolicy, rule: CompiledSweepRule, activeAddress: string): CompiledPolicy {
  return {
    name: p.name,
    keys: p.keys,
    traffic: 'hot',
    clients: p.clients,
    payloadKinds: new Set(['evm']),
    maxSkewSeconds: p.maxSkewSeconds,
    evm: {
      chains: rule.chains,
      maxValue: UNLIMITED,
      destinations: { kind: 'allow', allow: new Set([activeAddress.toLowerCase()]) },
      tokens: new Map([...rule.tokens].map((t) => [t, { maxAmount: UNLIMITED }])),
      contracts: new Set(),
      allowContractCreation: false,
      maxFeePerGas: rule.maxFeePerGas,
      maxPriorityFeePerGas: rule.maxPriorityFeePerGas,
      maxGas: rule.maxGas,
      allowFeeBump: rule.allowFeeBump,
    },
    velocity: [],
    batch: null,
    sweep: rule,
  };
}

/** True when rotating a key governed by `p` strands nothing: it signs no EVM, or it has a sweep rule. */
export function rotationSafe(p: CompiledPolicy): boolean {
  return !(p.evm !== null && p.payloadKinds.has('evm')) || !!p.sweep;
}
