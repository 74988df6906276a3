/**
 * The bytes of an audit entry that the Merkle tree commits to (its leaf data), defined once for
 * the store (which writes the tree nodes), the checkpointer (which recomputes leaves from stored
 * entry content before it signs) and offline verifiers (which recompute them from an export).
 *
 * Leaf data = utf8(canonicalJson(entry without `hash`)): every field an auditor sees, including
 * the chain link `prevHash` and the optional fields an entry has (chain.ts OPTIONAL_FIELDS), but not `hash`, which is derived from the others (entryHash) and
 * would only repeat them. Changing this changes every tree head: it needs a new export format.
 */
import { utf8ToBytes } from '@noble/hashes/utils.js';
import { type AuditEntry, canonicalJson, HASHED_FIELDS, OPTIONAL_FIELDS } from './chain.js';
import { leafHash } from './merkle.js';

const LEAF_FIELDS: readonly string[] = [...HASHED_FIELDS, 'prevHash'];

/**
 * The canonical leaf bytes of an entry. `e` MUST hold exactly the AuditEntry fields (`hash` and
 * an export record's `type` are ignored); an unknown or missing field throws, so a field can
 * neither go unhashed nor be dropped silently.
 */
export function entryBytes(e: Omit<AuditEntry, 'hash'> & { hash?: string; type?: string }): Uint8Array {
  const o = e as unknown as Record<string, unknown>;
  const body: Record<string, unknown> = {};
  for (const k of Object.keys(o)) {
    if (k === 'hash' || k === 'type') continue;
    if (!LEAF_FIELDS.includes(k) && !(OPTIONAL_FIELDS as readonly string[]).includes(k))
      throw new TypeError(`entryBytes: unknown field ${JSON.stringify(k)}`);
  }
  for (const k of LEAF_FIELDS) {
    if (!Object.hasOwn(o, k) || o[k] === undefined)
      throw new TypeError(`entryBytes: missing field ${JSON.stringify(k)}`);
    body[k] = o[k];
  }
  // Present only in entries that have them: older leaves keep their bytes.
  for (const k of OPTIONAL_FIELDS) if (o[k] !== undefined) body[k] = o[k];
  return utf8ToBytes(canonicalJson(body));
}

/** The RFC 9162 leaf hash of an entry: SHA-256(0x00 || entryBytes(e)). */
export function entryLeafHash(e: Parameters<typeof entryBytes>[0]): Uint8Array {
  return leafHash(entryBytes(e));
}

/** Tree size and leaf index of entry `seq`: seq 1 is leaf 0, and a log of head seq N has N leaves. */
export const leafIndexOf = (seq: number): number => seq - 1;
