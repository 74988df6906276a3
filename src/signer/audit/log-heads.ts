import { entryHash } from '../../core/audit/chain.js';
import { EMPTY_ROOT } from '../../core/audit/merkle.js';
import type { AuditStore } from '../../infra/store/audit.js';
import type { AuditTreeStore } from '../../infra/store/audit-tree.js';
import type { LogHeads } from './rollback-guard.js';

/**
 * The log's heads as the rollback mark, the checkpoints and the witnesses all speak them: the
 * RFC 9162 tree head of the store's Merkle tree at a size (one batched read of O(log n) nodes).
 *
 * A mark written by the previous release holds the hash-chain hash of entry `size` instead
 * (`chainHash`): it is checked the way that release checked it, with the entry's hash
 * recomputed from its stored content, and the next release rewrites it as a tree head. Refusing
 * it would stop every replica at upgrade until an operator reconciled a rollback that did not
 * happen; reading it keeps exactly the protection it was written for (a shorter or different log
 * at that size is refused).
 */
export function treeHeads(store: AuditStore & AuditTreeStore): LogHeads {
  return {
    async head() {
      const size = (await store.auditHead())?.seq ?? 0;
      return { size, root: size === 0 ? EMPTY_ROOT : await store.treeHead(size) };
    },
    async rootAt(size, opts) {
      if (size === 0) return EMPTY_ROOT;
      if (opts?.chainHash) {
        for await (const e of store.readAudit(size, size)) {
          const { hash, ...body } = e;
          // A stored hash that its content does not give is not the entry the mark vouched for.
          return entryHash(body) === hash ? new Uint8Array(Buffer.from(hash, 'hex')) : new Uint8Array(32);
        }
        return undefined;
      }
      const logSize = (await store.auditHead())?.seq ?? 0;
      return size <= logSize ? store.treeHead(size) : undefined;
    },
  };
}
