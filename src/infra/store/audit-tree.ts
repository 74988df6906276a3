import type { NodeReader } from '../../core/audit/merkle.js';

/**
 * The audit log's Merkle tree as the store keeps it (RFC 9162; core/audit/merkle.ts): the hash of
 * every perfect subtree, written by the one audit-append function in the SAME transaction as the
 * entries, over their canonical leaf bytes (core/audit/leaf.ts). Each head or proof is one
 * batched read of O(log n) nodes. Sizes count entries: the tree of size N holds seq 1..N.
 *
 * The store cannot vouch for its own nodes (whoever writes the database can write nodes): the
 * checkpointer recomputes leaves from entry content and checks the head before signing one.
 */
export interface AuditTreeStore extends NodeReader {
  /** RFC 9162 head of the first `size` entries; refuses a size beyond the log. */
  treeHead(size: number): Promise<Uint8Array>;
  /** Audit path of entry `seq` in the tree of `size` entries (seq <= size). */
  inclusionProof(seq: number, size: number): Promise<Uint8Array[]>;
  /** Consistency proof from the tree of `fromSize` entries to the tree of `toSize`. */
  consistencyProof(fromSize: number, toSize: number): Promise<Uint8Array[]>;
  /** Records a signed checkpoint note; a second one for the same size (another replica) is ignored. */
  putCheckpointNote(c: StoredNote): Promise<void>;
  /** The signed note of the largest size; undefined when none was signed. */
  latestCheckpointNote(): Promise<StoredNote | undefined>;
  /** The signed note at exactly `size`, or the smallest one above it when `atLeast`. */
  checkpointNote(size: number, atLeast?: boolean): Promise<StoredNote | undefined>;
  /**
   * Replaces the note at `size` with `note`, the same signed text with more signature lines
   * (witness cosignatures). The caller MUST have checked that the text is unchanged.
   */
  replaceCheckpointNote(size: number, note: string): Promise<void>;
}

/** A C2SP signed checkpoint note as stored. */
export interface StoredNote {
  /** Tree size (number of entries) the note signs. */
  size: number;
  /** The whole signed note (text, blank line, signature lines). */
  note: string;
  /** When it was signed, ISO 8601 UTC. */
  at: string;
}
