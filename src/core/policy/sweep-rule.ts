import { getAddress } from 'viem';
import { z } from 'zod';

/**
 * The `sweep` rule of a policy, as an operator writes it: what a RETIRED version of an EVM key
 * (verify-only or disabled, after a rotation) may still sign, so funds at its address are never
 * stranded. Apart from schema.ts so the sweep work stays in its own files.
 *
 * There is no amount limit: a sweep can only pay the key's own active address (src/core/policy/
 * sweep.ts), so the amount is the client's business (its whole balance); fees are capped here
 * because they are the one thing a sweep pays to someone else.
 */

const DECIMAL = /^(?:0|[1-9][0-9]*)$/;
const decimal = z.string({ error: 'expected a decimal integer string' }).regex(DECIMAL, 'expected a decimal integer');

/** Mixed case must be a valid EIP-55 checksum, as everywhere in a policy. */
function isAddressText(a: string): boolean {
  if (!/^0x[0-9a-fA-F]{40}$/.test(a)) return false;
  const hex = a.slice(2);
  return hex === hex.toLowerCase() || hex === hex.toUpperCase() || getAddress(a) === a;
}

export const sweepRuleSchema = z
  .object({
    /** Chains a retired version may sweep on. */
    chains: z
      .array(
        z
          .string({ error: 'expected a chain id as a decimal string' })
          .regex(/^[1-9][0-9]*$/, 'expected a chain id as a positive decimal integer'),
      )
      .min(1, 'expected at least one chain id'),
    /** ERC-20 contracts whose `transfer` to the active address a retired version may sign. */
    tokens: z
      .array(
        z.string({ error: 'expected an address string' }).refine(isAddressText, {
          error: 'expected a 0x-prefixed 20-byte address (EIP-55 checksum if mixed case)',
        }),
      )
      .default([]),
    /** Also caps a legacy transaction's gasPrice. */
    maxFeePerGas: decimal,
    maxPriorityFeePerGas: decimal.optional(),
    maxGas: decimal,
    /** A stuck sweep may be re-signed at a higher fee with the same nonce, recipient, value and data. */
    allowFeeBump: z.boolean().default(false),
  })
  .strict();

export type SweepRuleInput = z.output<typeof sweepRuleSchema>;

export interface CompiledSweepRule {
  readonly chains: ReadonlySet<bigint>;
  /** Lowercase token contracts. */
  readonly tokens: ReadonlySet<string>;
  readonly maxFeePerGas: bigint;
  readonly maxPriorityFeePerGas: bigint | null;
  readonly maxGas: bigint;
  readonly allowFeeBump: boolean;
}

/** Bigints and lowercase sets; a token listed twice (in two spellings) is reported in `issues`. */
export function compileSweepRule(s: SweepRuleInput, issues: string[]): CompiledSweepRule {
  const tokens = new Set<string>();
  for (const t of s.tokens) {
    if (tokens.has(t.toLowerCase())) issues.push(`sweep.tokens: ${t} listed twice (addresses ignore case)`);
    tokens.add(t.toLowerCase());
  }
  return {
    chains: new Set(s.chains.map((c) => BigInt(c))),
    tokens,
    maxFeePerGas: BigInt(s.maxFeePerGas),
    maxPriorityFeePerGas: s.maxPriorityFeePerGas === undefined ? null : BigInt(s.maxPriorityFeePerGas),
    maxGas: BigInt(s.maxGas),
    allowFeeBump: s.allowFeeBump,
  };
}
