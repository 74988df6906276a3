import { encodeFunctionData, erc20Abi, getAddress, serializeTransaction } from 'viem';
import { z } from 'zod';

/**
 * The planning half of scripts/sweep-plan.ts, apart from the gRPC half so it reads as one
 * computation: balances the operator supplies (the signer sees no chain) + the key versions the
 * signer lists -> what each retired version still holds and the unsigned transactions that move
 * it to the key's active address. Token transfers come first (their gas is paid from the native
 * balance), then one native transfer of what is left after every transaction's maximum fee.
 */

const amount = z.string().regex(/^(?:0|[1-9][0-9]*)$/, 'expected a decimal integer string');
const address = z.string().regex(/^0x[0-9a-fA-F]{40}$/, 'expected a 0x-prefixed 20-byte address');

export const balancesSchema = z.array(
  z
    .object({
      keyId: z.string().min(1),
      version: z.number().int().min(1),
      chainId: z.union([z.number().int().min(1), z.string().regex(/^[1-9][0-9]*$/)]),
      /** Native balance of the version's address, wei. */
      native: amount,
      /** ERC-20 balances: token contract -> amount in the token's smallest unit. */
      tokens: z.record(address, amount).default({}),
      /** The address's next account nonce on that chain. */
      nonce: z.number().int().min(0),
    })
    .strict(),
);
export type Balances = z.output<typeof balancesSchema>;

/** A key version as Signer.ListKeys returns it (wire names). */
export interface ListedVersion {
  keyId: string;
  version: number;
  algorithm: string;
  state: string;
  evmAddress: string;
}

export interface Fees {
  maxFeePerGas: bigint;
  maxPriorityFeePerGas: bigint;
  /** Gas limit of the native transfer (21000 to an ordinary account). */
  nativeGas: bigint;
  /** Gas limit of each ERC-20 transfer. */
  tokenGas: bigint;
}

export interface PlannedTx {
  kind: 'erc20' | 'native';
  nonce: number;
  to: string;
  /** Native value, wei (0 for a token transfer). */
  value: string;
  /** For a token transfer: the token and the amount moved. */
  token?: string;
  amount?: string;
  gas: string;
  /** EIP-1559 unsigned serialization: what to send to Signer.Sign with key_version set. */
  unsignedTx: `0x${string}`;
}

export interface VersionPlan {
  keyId: string;
  version: number;
  chainId: string;
  state: string;
  address: string | null;
  activeVersion: number | null;
  activeAddress: string | null;
  /** sweep: transactions to sign; nothing: holds nothing; active / lost / unknown: not swept. */
  status: 'sweep' | 'nothing' | 'active' | 'lost' | 'unknown' | 'not-evm';
  note: string;
  native: string;
  tokens: Record<string, string>;
  transactions: PlannedTx[];
}

/** One plan per balance entry, in the order given. */
export function planSweeps(balances: Balances, keys: ListedVersion[], fees: Fees): VersionPlan[] {
  return balances.map((b) => planOne(b, keys, fees));
}

function planOne(b: Balances[number], keys: ListedVersion[], fees: Fees): VersionPlan {
  const versions = keys.filter((k) => k.keyId === b.keyId);
  const k = versions.find((v) => v.version === b.version);
  const active = versions.find((v) => v.state === 'ACTIVE');
  const tokens = Object.fromEntries(Object.entries(b.tokens).filter(([, a]) => BigInt(a) > 0n));
  const base: VersionPlan = {
    keyId: b.keyId,
    version: b.version,
    chainId: String(b.chainId),
    state: k?.state ?? 'UNKNOWN',
    address: k?.evmAddress || null,
    activeVersion: active?.version ?? null,
    activeAddress: active?.evmAddress || null,
    status: 'sweep',
    note: '',
    native: b.native,
    tokens,
    transactions: [],
  };
  const holds = BigInt(b.native) > 0n || Object.keys(tokens).length > 0;
  if (!k) return { ...base, status: 'unknown', note: 'the signer lists no such key version' };
  if (k.algorithm !== 'ECDSA_SECP256K1') return { ...base, status: 'not-evm', note: 'not an EVM key' };
  if (k.state === 'ACTIVE') return { ...base, status: 'active', note: 'the active version: nothing to sweep' };
  if (k.state === 'DESTROYED')
    return { ...base, status: 'lost', note: holds ? 'DESTROYED while holding funds: they cannot be moved' : '' };
  if (!holds) return { ...base, status: 'nothing', note: 'holds nothing: may be destroyed (--confirm-swept)' };
  if (!active) return { ...base, status: 'unknown', note: 'the key has no active version to sweep to' };
  return { ...base, ...transactions(b, tokens, getAddress(active.evmAddress), fees) };
}

function transactions(
  b: Balances[number],
  tokens: Record<string, string>,
  to: `0x${string}`,
  fees: Fees,
): Pick<VersionPlan, 'transactions' | 'note'> {
  const chainId = Number(b.chainId);
  const common = { chainId, maxFeePerGas: fees.maxFeePerGas, maxPriorityFeePerGas: fees.maxPriorityFeePerGas };
  const out: PlannedTx[] = [];
  let nonce = b.nonce;
  for (const [token, amount] of Object.entries(tokens)) {
    const data = encodeFunctionData({ abi: erc20Abi, functionName: 'transfer', args: [to, BigInt(amount)] });
    const tx = {
      ...common,
      type: 'eip1559' as const,
      nonce,
      to: getAddress(token),
      value: 0n,
      data,
      gas: fees.tokenGas,
    };
    out.push({
      kind: 'erc20',
      nonce: nonce++,
      to: tx.to,
      value: '0',
      token: tx.to,
      amount,
      gas: String(fees.tokenGas),
      unsignedTx: serializeTransaction(tx),
    });
  }
  // Every transaction may cost up to gas x maxFeePerGas; what the chain charges less stays behind
  // (dust): run the plan again with the new balance to move it.
  const reserve = (fees.tokenGas * BigInt(out.length) + fees.nativeGas) * fees.maxFeePerGas;
  const value = BigInt(b.native) - reserve;
  let note = '';
  if (value > 0n) {
    const tx = { ...common, type: 'eip1559' as const, nonce, to, value, gas: fees.nativeGas };
    out.push({
      kind: 'native',
      nonce: nonce++,
      to,
      value: String(value),
      gas: String(fees.nativeGas),
      unsignedTx: serializeTransaction(tx),
    });
  } else note = `native balance ${b.native} wei does not cover the fees (${reserve} wei): not swept`;
  const tokenGas = fees.tokenGas * BigInt(Object.keys(tokens).length) * fees.maxFeePerGas;
  if (tokenGas > BigInt(b.native))
    note = `native balance ${b.native} wei cannot pay the token transfers' gas (${tokenGas} wei): fund the address first`;
  return { transactions: out, note };
}

/** The table for people: one block per balance entry. */
export function formatPlans(plans: VersionPlan[]): string {
  const lines: string[] = [];
  for (const p of plans) {
    const head = `${p.keyId} v${p.version} ${p.state} chain ${p.chainId} ${p.address ?? '-'}`;
    const holds = [`native ${p.native}`, ...Object.entries(p.tokens).map(([t, a]) => `${t} ${a}`)].join(', ');
    lines.push(`${head}: ${p.status}${p.note ? ` (${p.note})` : ''}`);
    lines.push(`  holds ${holds}`);
    if (p.transactions.length) lines.push(`  to v${p.activeVersion} ${p.activeAddress}:`);
    for (const t of p.transactions) {
      const what = t.kind === 'erc20' ? `erc20 ${t.token} amount ${t.amount}` : `native value ${t.value}`;
      lines.push(`  nonce ${t.nonce}\t${what}\tgas ${t.gas}\t${t.unsignedTx}`);
    }
  }
  return lines.join('\n');
}
