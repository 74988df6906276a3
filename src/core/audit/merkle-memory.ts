/**
 * An in-memory node store for the audit Merkle tree: the reference the database stores are
 * tested against, and what an offline tool can build from an export. It keeps every node
 * {@link appendLeaves} yields (about two per leaf), so it is for tests and bounded exports.
 */
import {
  appendLeaves,
  EMPTY_FRONTIER,
  type Frontier,
  frontierRoot,
  type MerkleNode,
  type NodeId,
  type NodeReader,
  nodeKey,
} from './merkle.js';

export class MemoryTree implements NodeReader {
  private readonly nodes = new Map<string, Uint8Array>();
  private front: Frontier = EMPTY_FRONTIER;
  /** How many nodes readNodes has been asked for, for tests of read costs. */
  nodesRead = 0;
  /** How many readNodes calls were made. */
  reads = 0;

  get size(): number {
    return this.front.size;
  }

  get frontier(): Frontier {
    return this.front;
  }

  /** The head of the whole tree, from its frontier (no reads). */
  root(): Uint8Array {
    return frontierRoot(this.front);
  }

  /** Appends leaf hashes; returns the nodes a store would write. */
  append(leaves: readonly Uint8Array[]): MerkleNode[] {
    const { nodes, frontier } = appendLeaves(this.front, leaves);
    for (const n of nodes) this.nodes.set(nodeKey(n), n.hash);
    this.front = frontier;
    return nodes;
  }

  /** Number of stored nodes. */
  get stored(): number {
    return this.nodes.size;
  }

  async readNodes(ids: readonly NodeId[]): Promise<readonly Uint8Array[]> {
    this.reads++;
    this.nodesRead += ids.length;
    return ids.map((id) => {
      const h = this.nodes.get(nodeKey(id));
      if (!h) throw new Error(`merkle: no node ${nodeKey(id)} in a tree of ${this.front.size} leaves`);
      return h;
    });
  }
}
