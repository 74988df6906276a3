import { getAddress } from 'viem';
import { z } from 'zod';
import { type CompiledSweepRule, compileSweepRule, sweepRuleSchema } from './sweep-rule.js';

/**
 * The signing policy as an operator writes it (JSON). Every object is strict: an unknown or
 * misspelt field is an error, never a silently ignored limit (deny by default). Amounts are
 * decimal strings because JSON numbers lose precision above 2^53; `compilePolicy` turns them
 * into bigints once, so evaluation does no parsing.
 */

const DECIMAL = /^(?:0|[1-9][0-9]*)$/;
const decimal = z.string({ error: 'expected a decimal integer string' }).regex(DECIMAL, 'expected a decimal integer');

const chainId = z
  .string({ error: 'expected a chain id as a decimal string' })
  .regex(/^[1-9][0-9]*$/, 'expected a chain id as a positive decimal integer');

/** Mixed case must be a valid EIP-55 checksum, so a typo in a hand-copied address is caught. */
function isAddressText(a: string): boolean {
  if (!/^0x[0-9a-fA-F]{40}$/.test(a)) return false;
  const hex = a.slice(2);
  return hex === hex.toLowerCase() || hex === hex.toUpperCase() || getAddress(a) === a;
}

const address = z.string({ error: 'expected an address string' }).refine(isAddressText, {
  error: 'expected a 0x-prefixed 20-byte address (EIP-55 checksum if mixed case)',
});

const keyPattern = z
  .string({ error: 'expected a key id or prefix*' })
  .regex(/^(?:[^*]+\*?|\*)$/, 'expected a key id, or a prefix ending in a single trailing *');

const positiveInt = (max?: number) => {
  const n = z.number({ error: 'expected an integer' }).int('expected an integer').min(1, 'expected at least 1');
  return max === undefined ? n : n.max(max, `expected at most ${max}`);
};

/** Velocity usage is kept this long (src/signer/grpc/server.ts prunes by it), so no window may be longer. */
export const MAX_VELOCITY_WINDOW_SECONDS = 7 * 24 * 3600;

export const payloadKinds = ['evm', 'digest', 'message'] as const;
export type PayloadKind = (typeof payloadKinds)[number];

/**
 * Either an allow-list, or any address except a deny-list. Written as one strict object with a
 * check rather than a zod union so an error names the offending field instead of "invalid union".
 */
const destinations = z
  .object({
    allow: z.array(address).optional(),
    any: z.literal(true, { error: 'expected true' }).optional(),
    deny: z.array(address).optional(),
  })
  .strict()
  .superRefine((d, ctx) => {
    if ((d.allow === undefined) === (d.any === undefined)) {
      ctx.addIssue({
        code: 'custom',
        message: 'expected exactly one of "allow" (a list of addresses) or "any": true',
      });
    }
    if (d.allow !== undefined && d.deny !== undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['deny'],
        message: 'only valid with "any": true; an allow-list already refuses everything else',
      });
    }
  })
  .transform((d): { allow: string[] } | { any: true; deny?: string[] } =>
    d.allow !== undefined ? { allow: d.allow } : { any: true, ...(d.deny && { deny: d.deny }) },
  );

const evm = z
  .object({
    chains: z.array(chainId).min(1, 'expected at least one chain id'),
    /** Native value per transaction, wei; "0" allows none. */
    maxValue: decimal,
    destinations,
    /** ERC-20 token contract → per-call limit on transfer, transferFrom and approve. */
    tokens: z.record(address, z.object({ maxAmount: decimal }).strict()).optional(),
    /** Contracts that may receive any other calldata. */
    contracts: z.array(address).optional(),
    allowContractCreation: z.boolean().default(false),
    /** Also caps a legacy transaction's gasPrice. */
    maxFeePerGas: decimal,
    maxPriorityFeePerGas: decimal.optional(),
    maxGas: decimal,
    /** Carried for the replay guard: same to/value/data at a higher fee may reuse a nonce. */
    allowFeeBump: z.boolean().default(false),
  })
  .strict();

const velocityRule = z
  .object({
    scope: z.enum(['key', 'client']),
    windowSeconds: positiveInt(MAX_VELOCITY_WINDOW_SECONDS),
    maxCount: positiveInt().optional(),
    /** Native value, wei, summed over the window. */
    maxValue: decimal.optional(),
    /** ERC-20 token contract → count of calls and amount summed over the window (src/core/policy/token-limits.ts). */
    tokens: z
      .record(
        address,
        z
          .object({ maxCount: positiveInt().optional(), maxAmount: decimal.optional() })
          .strict()
          .refine((t) => t.maxCount !== undefined || t.maxAmount !== undefined, {
            error: 'a token limit needs maxCount, maxAmount or both',
          }),
      )
      .optional(),
  })
  .strict()
  .refine((r) => r.maxCount !== undefined || r.maxValue !== undefined || r.tokens !== undefined, {
    error: 'a velocity rule needs maxCount, maxValue, tokens or several',
  });

const batch = z
  .object({
    maxItems: positiveInt(10_000),
    /** Sum of native value over the batch, wei. */
    maxTotalValue: decimal,
    /** ERC-20 token contract → sum of amounts over the batch's items. */
    maxTokenTotals: z.record(address, decimal).optional(),
    /** Each EVM item's nonce is the previous item's (same key and chain) plus one. */
    contiguousNonces: z.boolean().default(false),
  })
  .strict();

export const policySchema = z
  .object({
    /** Key ids, or prefixes ending in `*`, that this policy governs. */
    keys: z.array(keyPattern).min(1, 'expected at least one key id or prefix'),
    traffic: z.enum(['hot', 'batch', 'both']),
    /** Client certificate CNs; absent means any client that has key access. */
    clients: z.array(z.string().min(1)).optional(),
    payloadKinds: z.array(z.enum(payloadKinds)).min(1, 'expected at least one payload kind').default(['evm']),
    freshness: z.object({ maxSkewSeconds: positiveInt(3600) }).strict(),
    /** Absent: no EVM transaction is allowed. */
    evm: evm.optional(),
    velocity: z.array(velocityRule).optional(),
    batch: batch.optional(),
    /** What retired versions of the key may still sign: sweeps to the active address (sweep-rule.ts). */
    sweep: sweepRuleSchema.optional(),
  })
  .strict()
  .superRefine((p, ctx) => {
    const batchTraffic = p.traffic !== 'hot';
    if (batchTraffic && p.batch === undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['batch'],
        message: `required when traffic is "${p.traffic}"`,
      });
    }
    if (!batchTraffic && p.batch !== undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['batch'],
        message: 'only valid when traffic is "batch" or "both"',
      });
    }
  });

/** A policy as written, after validation and defaults. */
export type Policy = z.output<typeof policySchema>;

/** A policy file or config section is refused as a whole; the message lists every problem. */
export class PolicyError extends Error {
  override name = 'PolicyError';
  constructor(
    message: string,
    /** One line per problem, each starting with the field path. */
    readonly issues: readonly string[] = [],
  ) {
    super(message);
  }
}

/** `a.b[0].c: message`, and one line per unknown key so each names its own field. */
function describeIssues(error: z.ZodError): string[] {
  const path = (p: readonly PropertyKey[]) =>
    p.reduce<string>((s, k) => (typeof k === 'number' ? `${s}[${k}]` : s ? `${s}.${String(k)}` : String(k)), '') ||
    '(root)';
  return error.issues.flatMap((i) => {
    if (i.code === 'unrecognized_keys') {
      return i.keys.map((k) => `${path([...i.path, k])}: unknown field`);
    }
    // A bad record key (a token address) carries the key schema's own message underneath.
    if (i.code === 'invalid_key') {
      return i.issues.map((sub) => `${path(i.path)}: ${sub.message}`);
    }
    return [`${path(i.path)}: ${i.message}`];
  });
}

export interface CompiledEvmRules {
  readonly chains: ReadonlySet<bigint>;
  readonly maxValue: bigint;
  /** Addresses are lowercase; compare with `address.toLowerCase()`. */
  readonly destinations:
    | { readonly kind: 'allow'; readonly allow: ReadonlySet<string> }
    | { readonly kind: 'any'; readonly deny: ReadonlySet<string> };
  /** Lowercase token contract → per-call ERC-20 amount cap. */
  readonly tokens: ReadonlyMap<string, { readonly maxAmount: bigint }>;
  /** Lowercase addresses that may receive arbitrary calldata. */
  readonly contracts: ReadonlySet<string>;
  readonly allowContractCreation: boolean;
  readonly maxFeePerGas: bigint;
  readonly maxPriorityFeePerGas: bigint | null;
  readonly maxGas: bigint;
  readonly allowFeeBump: boolean;
}

export interface CompiledVelocityRule {
  readonly scope: 'key' | 'client';
  readonly windowSeconds: number;
  readonly maxCount: number | null;
  readonly maxValue: bigint | null;
  /** Lowercase token contract → limits over the window; empty when none. */
  readonly tokens: ReadonlyMap<string, { readonly maxCount: number | null; readonly maxAmount: bigint | null }>;
}

export interface CompiledBatchLimits {
  readonly maxItems: number;
  readonly maxTotalValue: bigint;
  readonly contiguousNonces: boolean;
  /** Lowercase token contract → sum of amounts over a batch; empty when none. */
  readonly maxTokenTotals: ReadonlyMap<string, bigint>;
}

/** A validated policy in the form evaluation reads: bigints and lowercase address sets. */
export interface CompiledPolicy {
  readonly name: string;
  readonly keys: readonly string[];
  readonly traffic: 'hot' | 'batch' | 'both';
  /** null: any client that has key access. */
  readonly clients: ReadonlySet<string> | null;
  readonly payloadKinds: ReadonlySet<PayloadKind>;
  readonly maxSkewSeconds: number;
  /** null: no EVM transaction is allowed. */
  readonly evm: CompiledEvmRules | null;
  readonly velocity: readonly CompiledVelocityRule[];
  /** Present exactly when traffic is 'batch' or 'both'. */
  readonly batch: CompiledBatchLimits | null;
  /** Absent or null: retired versions sign nothing (src/core/policy/sweep.ts). */
  readonly sweep?: CompiledSweepRule | null;
}

const lowerSet = (list: readonly string[] | undefined) => new Set((list ?? []).map((a) => a.toLowerCase()));

function compileEvm(e: NonNullable<Policy['evm']>, issues: string[]): CompiledEvmRules {
  const tokens = new Map<string, { maxAmount: bigint }>();
  for (const [addr, t] of Object.entries(e.tokens ?? {})) {
    const key = addr.toLowerCase();
    // Two spellings of one address would make the effective limit depend on key order.
    if (tokens.has(key)) issues.push(`evm.tokens.${addr}: listed twice (addresses ignore case)`);
    tokens.set(key, { maxAmount: BigInt(t.maxAmount) });
  }
  const d = e.destinations;
  return {
    chains: new Set(e.chains.map((c) => BigInt(c))),
    maxValue: BigInt(e.maxValue),
    destinations: 'allow' in d ? { kind: 'allow', allow: lowerSet(d.allow) } : { kind: 'any', deny: lowerSet(d.deny) },
    tokens,
    contracts: lowerSet(e.contracts),
    allowContractCreation: e.allowContractCreation,
    maxFeePerGas: BigInt(e.maxFeePerGas),
    maxPriorityFeePerGas: e.maxPriorityFeePerGas === undefined ? null : BigInt(e.maxPriorityFeePerGas),
    maxGas: BigInt(e.maxGas),
    allowFeeBump: e.allowFeeBump,
  };
}

/**
 * Validates a policy and converts it to the form `evaluate` reads. Throws PolicyError naming
 * every offending field path (e.g. `evm.maxValue: expected a decimal integer`); nothing is
 * defaulted to a permissive value.
 */
export function compilePolicy(raw: unknown, name: string): CompiledPolicy {
  const parsed = policySchema.safeParse(raw);
  const issues = parsed.success ? [] : describeIssues(parsed.error);
  if (!parsed.success) throw policyError(name, issues);
  const p = parsed.data;
  const evm = p.evm ? compileEvm(p.evm, issues) : null;
  const sweep = p.sweep ? compileSweepRule(p.sweep, issues) : null;
  const compiled: CompiledPolicy = {
    name,
    keys: [...p.keys],
    traffic: p.traffic,
    clients: p.clients ? new Set(p.clients) : null,
    payloadKinds: new Set(p.payloadKinds),
    maxSkewSeconds: p.freshness.maxSkewSeconds,
    evm,
    velocity: (p.velocity ?? []).map((r, i) => ({
      scope: r.scope,
      windowSeconds: r.windowSeconds,
      maxCount: r.maxCount ?? null,
      maxValue: r.maxValue === undefined ? null : BigInt(r.maxValue),
      tokens: lowerMap(r.tokens, `velocity[${i}].tokens`, issues, (t) => ({
        maxCount: t.maxCount ?? null,
        maxAmount: t.maxAmount === undefined ? null : BigInt(t.maxAmount),
      })),
    })),
    batch: p.batch
      ? {
          maxItems: p.batch.maxItems,
          maxTotalValue: BigInt(p.batch.maxTotalValue),
          contiguousNonces: p.batch.contiguousNonces,
          maxTokenTotals: lowerMap(p.batch.maxTokenTotals, 'batch.maxTokenTotals', issues, (v) => BigInt(v)),
        }
      : null,
    sweep,
  };
  if (issues.length > 0) throw policyError(name, issues);
  return compiled;
}

/** A token-address record keyed by lowercase address; two spellings of one address are an issue. */
function lowerMap<V, W>(
  rec: Record<string, V> | undefined,
  path: string,
  issues: string[],
  f: (v: V) => W,
): ReadonlyMap<string, W> {
  const out = new Map<string, W>();
  for (const [addr, v] of Object.entries(rec ?? {})) {
    if (out.has(addr.toLowerCase())) issues.push(`${path}.${addr}: listed twice (addresses ignore case)`);
    out.set(addr.toLowerCase(), f(v));
  }
  return out;
}

function policyError(name: string, issues: string[]): PolicyError {
  return new PolicyError(`invalid policy "${name}":\n${issues.map((l) => `  ${l}`).join('\n')}`, issues);
}

/**
 * Whether a policy key pattern covers a key id: `*`-terminated patterns match by prefix (a lone
 * `*` matches every key), anything else only the identical id.
 */
export function policyMatches(keyPattern: string, keyId: string): boolean {
  return keyPattern.endsWith('*') ? keyId.startsWith(keyPattern.slice(0, -1)) : keyPattern === keyId;
}

/** Higher is more specific: an exact id beats any prefix, a longer prefix beats a shorter one. */
function specificity(keyPattern: string): number {
  return keyPattern.endsWith('*') ? keyPattern.length - 1 : Number.MAX_SAFE_INTEGER;
}

/**
 * The policy governing `keyId`: the one whose most specific matching pattern is the most
 * specific overall (exact id, then longest prefix). Returns undefined when no policy matches, and
 * also when two policies tie, so an ambiguous config can never pick the more permissive one by
 * accident; `findAmbiguities` MUST be run at load so a tie is reported rather than silently
 * denying. The caller MUST refuse to sign when this returns undefined (deny by default).
 */
export function selectPolicy<P extends Pick<CompiledPolicy, 'keys'>>(
  policies: readonly P[],
  keyId: string,
): P | undefined {
  let best: P | undefined;
  let bestRank = -1;
  let tied = false;
  for (const p of policies) {
    const rank = Math.max(-1, ...p.keys.filter((k) => policyMatches(k, keyId)).map(specificity));
    if (rank < 0) continue;
    if (rank > bestRank) {
      best = p;
      bestRank = rank;
      tied = false;
    } else if (rank === bestRank) {
      tied = true;
    }
  }
  return tied ? undefined : best;
}

export interface PolicyAmbiguity {
  /** A key pattern claimed by more than one policy. */
  readonly pattern: string;
  /** Names of the policies that list it, in config order. */
  readonly policies: readonly string[];
}

/**
 * Key patterns listed by two or more policies. Two patterns can only tie for a key when they are
 * the same pattern, so this finds every key for which `selectPolicy` would have no single answer.
 * A config with any ambiguity MUST be refused at load.
 */
export function findAmbiguities(policies: readonly CompiledPolicy[]): PolicyAmbiguity[] {
  const owners = new Map<string, string[]>();
  for (const p of policies) {
    for (const k of new Set(p.keys)) owners.set(k, [...(owners.get(k) ?? []), p.name]);
  }
  return [...owners].filter(([, names]) => names.length > 1).map(([pattern, names]) => ({ pattern, policies: names }));
}
