import { randomBytes } from 'node:crypto';
import type { GenNonce } from '@noble/curves/abstract/frost.js';

/**
 * Pre-generated signing nonces of one cosigner, in memory only: never written anywhere, gone at
 * restart (the coordinator then fetches new commitments). `take` removes a nonce whatever happens
 * next, so no nonce can sign twice. Per key version the pool is capped; the oldest go first.
 */
export class NoncePool {
  private readonly pools = new Map<string, Map<string, { nonce: GenNonce; epoch: number }>>();

  constructor(private readonly maxPerKey: number) {}

  add(keyRef: string, epoch: number, nonce: GenNonce): string {
    let pool = this.pools.get(keyRef);
    if (!pool) {
      pool = new Map();
      this.pools.set(keyRef, pool);
    }
    const id = randomBytes(12).toString('base64url');
    pool.set(id, { nonce, epoch });
    for (const [old, entry] of pool) {
      if (pool.size <= this.maxPerKey) break;
      wipe(entry.nonce);
      pool.delete(old);
    }
    return id;
  }

  take(keyRef: string, id: string): { nonce: GenNonce; epoch: number } | undefined {
    const pool = this.pools.get(keyRef);
    const entry = pool?.get(id);
    pool?.delete(id);
    return entry;
  }

  /** Drops every nonce of a key version (its shares were refreshed or destroyed). */
  clear(keyRef: string): void {
    for (const entry of this.pools.get(keyRef)?.values() ?? []) wipe(entry.nonce);
    this.pools.delete(keyRef);
  }

  size(keyRef: string): number {
    return this.pools.get(keyRef)?.size ?? 0;
  }
}

function wipe(n: GenNonce): void {
  n.nonces.hiding.fill(0);
  n.nonces.binding.fill(0);
}
