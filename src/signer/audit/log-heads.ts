import { EMPTY_ROOT } from '../../core/audit/merkle.js';
import type { AuditStore } from '../../infra/store/audit.js';
import type { LogHeads } from './rollback-guard.js';

/**
 * The log's heads read from the hash chain: the head at size n is the hash of entry n, which
 * commits to every entry before it. A seam: once the store keeps the Merkle tree (branch
 * `audit`), this becomes its tree head at a size, and the mark holds Merkle roots.
 */
export function chainHeads(store: AuditStore): LogHeads {
  const bytes = (hex: string) => new Uint8Array(Buffer.from(hex, 'hex'));
  return {
    async head() {
      const h = await store.auditHead();
      return h ? { size: h.seq, root: bytes(h.hash) } : { size: 0, root: EMPTY_ROOT };
    },
    async rootAt(size) {
      if (size === 0) return EMPTY_ROOT;
      for await (const e of store.readAudit(size, size)) return bytes(e.hash);
      return undefined;
    },
  };
}
