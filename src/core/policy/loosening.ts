import type { CompiledEvmRules, CompiledPolicy } from './schema.js';

/**
 * Every way `next` allows something `current` did not. An empty list means `next` only
 * tightens (or changes nothing) and may apply as soon as the admin quorum approves it; anything
 * else waits for the deployment's delay, during which any single admin can cancel. When a change
 * cannot be shown to be a tightening it is listed (deny by default): a different key pattern, a
 * velocity rule with another window, a new policy.
 */
export function loosenings(current: CompiledPolicy | null, next: CompiledPolicy): string[] {
  if (!current) return ['a new policy: keys it governs get a policy where they had none'];
  const out: string[] = [];
  const added = <T>(what: string, before: ReadonlySet<T>, after: ReadonlySet<T>) => {
    for (const x of after) if (!before.has(x)) out.push(`${what}: adds ${String(x)}`);
  };
  const raised = (what: string, before: bigint | number, after: bigint | number) => {
    if (after > before) out.push(`${what}: raised from ${before} to ${after}`);
  };

  // A key moving between policies may land on a looser one: any change of the patterns counts.
  added('keys', new Set(current.keys), new Set(next.keys));
  for (const k of current.keys)
    if (!next.keys.includes(k)) out.push(`keys: removes ${k} (it may fall to another policy)`);
  const traffic = (t: CompiledPolicy['traffic']) => new Set(t === 'both' ? ['hot', 'batch'] : [t]);
  added('traffic', traffic(current.traffic), traffic(next.traffic));
  if (next.clients === null && current.clients !== null) out.push('clients: any client with key access');
  else if (next.clients && current.clients) added('clients', current.clients, next.clients);
  added('payloadKinds', current.payloadKinds, next.payloadKinds);
  raised('freshness.maxSkewSeconds', current.maxSkewSeconds, next.maxSkewSeconds);
  if (next.evm && !current.evm) out.push('evm: EVM transactions allowed');
  else if (next.evm && current.evm) evm(current.evm, next.evm, added, raised, out);
  velocity(current, next, out);
  if (next.batch && !current.batch) out.push('batch: batches allowed');
  else if (next.batch && current.batch) {
    raised('batch.maxItems', current.batch.maxItems, next.batch.maxItems);
    raised('batch.maxTotalValue', current.batch.maxTotalValue, next.batch.maxTotalValue);
    if (current.batch.contiguousNonces && !next.batch.contiguousNonces) out.push('batch.contiguousNonces: turned off');
  }
  return out;
}

function evm(
  a: CompiledEvmRules,
  b: CompiledEvmRules,
  added: <T>(what: string, before: ReadonlySet<T>, after: ReadonlySet<T>) => void,
  raised: (what: string, before: bigint | number, after: bigint | number) => void,
  out: string[],
): void {
  added('evm.chains', a.chains, b.chains);
  raised('evm.maxValue', a.maxValue, b.maxValue);
  const da = a.destinations;
  const db = b.destinations;
  if (da.kind === 'allow' && db.kind === 'any') out.push('evm.destinations: any address (was an allow-list)');
  else if (da.kind === 'allow' && db.kind === 'allow') added('evm.destinations.allow', da.allow, db.allow);
  else if (da.kind === 'any' && db.kind === 'any')
    for (const x of da.deny) if (!db.deny.has(x)) out.push(`evm.destinations.deny: removes ${x}`);
  added('evm.tokens', new Set(a.tokens.keys()), new Set(b.tokens.keys()));
  for (const [t, lim] of b.tokens) {
    const was = a.tokens.get(t);
    if (was) raised(`evm.tokens.${t}.maxAmount`, was.maxAmount, lim.maxAmount);
  }
  added('evm.contracts', a.contracts, b.contracts);
  if (b.allowContractCreation && !a.allowContractCreation) out.push('evm.allowContractCreation: turned on');
  raised('evm.maxFeePerGas', a.maxFeePerGas, b.maxFeePerGas);
  if (a.maxPriorityFeePerGas !== null && b.maxPriorityFeePerGas === null)
    out.push('evm.maxPriorityFeePerGas: limit removed');
  else if (a.maxPriorityFeePerGas !== null && b.maxPriorityFeePerGas !== null)
    raised('evm.maxPriorityFeePerGas', a.maxPriorityFeePerGas, b.maxPriorityFeePerGas);
  raised('evm.maxGas', a.maxGas, b.maxGas);
  if (b.allowFeeBump && !a.allowFeeBump) out.push('evm.allowFeeBump: turned on');
}

/** Each current rule must survive as a rule of the same scope and window with limits no higher. */
function velocity(a: CompiledPolicy, b: CompiledPolicy, out: string[]): void {
  const atMost = (x: bigint | number | null, y: bigint | number | null) => y === null || (x !== null && x <= y);
  for (const r of a.velocity) {
    const kept = b.velocity.some(
      (n) =>
        n.scope === r.scope &&
        n.windowSeconds === r.windowSeconds &&
        atMost(n.maxCount, r.maxCount) &&
        atMost(n.maxValue, r.maxValue),
    );
    if (!kept) out.push(`velocity: the ${r.scope} rule over ${r.windowSeconds}s is removed or relaxed`);
  }
}
