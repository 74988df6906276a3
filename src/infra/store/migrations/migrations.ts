/**
 * Numbered, forward-only schema migrations, one list per dialect (sqlite.ts, postgres.ts).
 * Version N is the N-th entry; a database records each applied version in `schema_version`
 * (applied in one transaction with the migration itself), so its version is max(version).
 * A migration is never edited once released: changes are new entries at the end.
 *
 * Migration 1 is the schema of the releases before versioning, written (as they wrote it) with
 * CREATE ... IF NOT EXISTS: applied to a database those releases made, it creates nothing that
 * exists and adds only what is missing, then checks the tables hold every column it expects.
 * Such a database (no schema_version table) is thus adopted as version 1 with nothing lost.
 */
export interface Migration {
  version: number;
  name: string;
}

/** Tables and columns of schema version 1, in both dialects. */
export const V1_TABLES: Record<string, readonly string[]> = {
  keys: [
    'key_id',
    'version',
    'algorithm',
    'cka_id',
    'public_key',
    'state',
    'created_at',
    'state_changed_at',
    'retire_at',
    'threshold',
  ],
  requests: ['client', 'request_id', 'key_id', 'payload_hash', 'state', 'result', 'lease_until', 'created_at'],
  nonces: [
    'key_id',
    'chain_id',
    'nonce',
    'payload_hash',
    'intent_hash',
    'max_fee',
    'max_priority_fee',
    'client',
    'request_id',
    'state',
    'result',
    'lease_until',
  ],
  nonce_replacements: ['key_id', 'chain_id', 'nonce', 'payload_hash', 'result', 'replaced_at'],
  velocity: ['scope', 'subject', 'bucket', 'count', 'value'],
  policies: ['name', 'version', 'document', 'updated_at', 'updated_by'],
  batches: ['client', 'batch_id', 'items_hash', 'created_at'],
  audit: [
    'seq',
    'at',
    'at_ms',
    'kind',
    'client',
    'key_id',
    'key_version',
    'request_id',
    'payload_hash',
    'intent',
    'decision',
    'reason',
    'signature_hash',
    'prev_hash',
    'hash',
  ],
  audit_checkpoints: ['seq', 'head_hash', 'at', 'key_id', 'key_version', 'signature'],
};

/** Key columns that releases before versioning added with ALTER TABLE, so older databases lack them. */
export const V1_ADDED_KEY_COLUMNS = ['state_changed_at', 'retire_at', 'threshold'] as const;

/**
 * Throws naming what is missing when `columns` (table -> its columns) lacks part of version 1.
 * `before` checks a database before migration 1 runs on it: only the tables it has, and without
 * the columns migration 1 adds to them.
 */
export function requireV1(columns: Map<string, Set<string>>, opts: { before?: boolean } = {}): void {
  const added = new Set<string>(opts.before ? V1_ADDED_KEY_COLUMNS : []);
  const missing: string[] = [];
  for (const [table, cols] of Object.entries(V1_TABLES)) {
    const have = columns.get(table);
    if (opts.before && !have) continue;
    for (const c of cols) if (!have?.has(c) && !(table === 'keys' && added.has(c))) missing.push(`${table}.${c}`);
  }
  if (missing.length > 0) {
    const what = missing.join(', ');
    throw new Error(`the database has tables of another shape than schema version 1 (missing ${what}): not opened`);
  }
}

/**
 * The migrations a database at version `current` still needs, in order. A database newer than
 * this build (a downgrade) is refused: migrations only go forward, and an older build must not
 * write to a schema it does not know.
 */
export function pendingMigrations<M extends Migration>(list: readonly M[], current: number): M[] {
  list.forEach((m, i) => {
    if (m.version !== i + 1) throw new Error(`migration "${m.name}" is number ${m.version} at position ${i + 1}`);
  });
  if (current > list.length) {
    const latest = list.length;
    throw new Error(`the database schema is at version ${current}, newer than this build's ${latest}: not opened`);
  }
  return list.slice(current);
}
