/**
 * What both dialects share of the audit Merkle tree's storage (audit-tree.ts): the frontier row,
 * the nodes an append writes, and proofs over a dialect's node reads. The frontier (compact
 * range of the whole log) is kept in one row so an append reads it with the head, under the same
 * lock, without depending on the head's value: O(log n) bytes per append, whatever the size.
 */
import type { AuditEntry } from '../../core/audit/chain.js';
import { entryLeafHash } from '../../core/audit/leaf.js';
import {
  appendLeaves,
  consistencyProof,
  EMPTY_FRONTIER,
  type Frontier,
  frontierNodes,
  HASH_SIZE,
  inclusionProof,
  type MerkleNode,
  type NodeReader,
  treeHead,
} from '../../core/audit/merkle.js';

/** The frontier's hashes concatenated, as stored. */
export function encodeFrontier(f: Frontier): Buffer {
  return Buffer.concat(f.hashes.map((h) => Buffer.from(h)));
}

/** The stored frontier row back to a frontier; throws when it cannot be one of `size`. */
export function decodeFrontier(size: number, bytes: Uint8Array): Frontier {
  const n = frontierNodes(size).length;
  if (bytes.length !== n * HASH_SIZE)
    throw new Error(`audit tree: the stored frontier of size ${size} is not ${n} hashes`);
  const hashes = Array.from(
    { length: n },
    (_, i) => new Uint8Array(bytes.subarray(i * HASH_SIZE, (i + 1) * HASH_SIZE)),
  );
  return { size, hashes };
}

/**
 * The tree rows of appending `entries` (already chained, seq frontier.size+1...) to a tree: the
 * nodes to insert and the new frontier. The caller MUST write them in the entries' transaction,
 * with plain INSERTs (a node that exists is a conflict: the tree and the log disagree). `leaves`:
 * the entries' leaf hashes when the caller has them already (chainDrafts computes them with the
 * chain hash); otherwise they are computed here.
 */
export function treeAppend(
  frontier: Frontier,
  entries: readonly AuditEntry[],
  leaves?: readonly Uint8Array[],
): { nodes: MerkleNode[]; frontier: Frontier } {
  const first = entries[0];
  if (first && first.seq !== frontier.size + 1) {
    throw new Error(`audit tree: the tree has ${frontier.size} leaves but the next entry is ${first.seq}`);
  }
  if (leaves && leaves.length !== entries.length) throw new Error('audit tree: one leaf hash per entry');
  return appendLeaves(frontier, leaves ?? entries.map(entryLeafHash));
}

export { EMPTY_FRONTIER };

/** Heads and proofs over a dialect's node reads; sizes count entries, seq 1 is leaf 0. */
export function treeReads(reader: NodeReader) {
  return {
    treeHead: (size: number) => treeHead(reader, size),
    inclusionProof: (seq: number, size: number) => inclusionProof(reader, seq - 1, size),
    consistencyProof: (fromSize: number, toSize: number) => consistencyProof(reader, fromSize, toSize),
  };
}
