import type Database from 'better-sqlite3';

/** SQLite's statements, prepared once per store. Same tables and meaning as PostgreSQL's. */
export function prepareStatements(db: Database.Database) {
  const p = (sql: string) => db.prepare(sql);
  return {
    request: p('SELECT payload_hash, state, result, lease_until FROM requests WHERE client = ? AND request_id = ?'),
    // Chain ids and nonces are read as bigints: they may exceed 2^53.
    nonce: p(
      `SELECT payload_hash, intent_hash, max_fee, max_priority_fee, state, result, client, request_id, lease_until
       FROM nonces WHERE key_id = ? AND chain_id = ? AND nonce = ?`,
    ).safeIntegers(true),
    maxNonce: p('SELECT max(nonce) AS n FROM nonces WHERE key_id = ? AND chain_id = ?').safeIntegers(true),
    velocity: p('SELECT count, value FROM velocity WHERE scope = ? AND subject = ? AND bucket >= ?'),
    batch: p('SELECT items_hash FROM batches WHERE client = ? AND batch_id = ?'),
    insertRequest: p(
      `INSERT INTO requests (client, request_id, key_id, payload_hash, state, lease_until, created_at, attempt)
       VALUES (?, ?, ?, ?, 'pending', ?, ?, ?)`,
    ),
    // A lease takeover: the record now belongs to the attempt that took it over.
    resumeRequest: p(
      "UPDATE requests SET lease_until = ?, attempt = ? WHERE client = ? AND request_id = ? AND state = 'pending'",
    ),
    insertNonce: p(
      `INSERT INTO nonces (key_id, chain_id, nonce, payload_hash, intent_hash, max_fee, max_priority_fee, client,
         request_id, state, lease_until) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?)`,
    ),
    archiveNonce: p(
      `INSERT INTO nonce_replacements (key_id, chain_id, nonce, payload_hash, result, replaced_at)
       SELECT key_id, chain_id, nonce, payload_hash, result, ? FROM nonces
       WHERE key_id = ? AND chain_id = ? AND nonce = ?`,
    ),
    replaceNonce: p(
      `UPDATE nonces SET payload_hash = ?, intent_hash = ?, max_fee = ?, max_priority_fee = ?, client = ?,
         request_id = ?, state = 'pending', result = NULL, lease_until = ?
       WHERE key_id = ? AND chain_id = ? AND nonce = ?`,
    ),
    bucket: p('SELECT value FROM velocity WHERE scope = ? AND subject = ? AND bucket = ?'),
    countBucket: p(
      `INSERT INTO velocity (scope, subject, bucket, count, value) VALUES (?, ?, ?, ?, '0')
       ON CONFLICT (scope, subject, bucket) DO UPDATE SET count = count + excluded.count`,
    ),
    addBucketValue: p('UPDATE velocity SET value = ? WHERE scope = ? AND subject = ? AND bucket = ?'),
    renewRequest: p("UPDATE requests SET lease_until = ? WHERE client = ? AND request_id = ? AND state = 'pending'"),
    renewNonce: p("UPDATE nonces SET lease_until = ? WHERE client = ? AND request_id = ? AND state = 'pending'"),
    insertBatch: p('INSERT INTO batches (client, batch_id, items_hash, created_at) VALUES (?, ?, ?, ?)'),
    // Only a pending record, and only by the attempt that owns it (any attempt when none is given).
    completeRequest: p(
      `UPDATE requests SET state = 'done', result = ?
       WHERE client = ? AND request_id = ? AND state = 'pending' AND (? IS NULL OR attempt IS ?)`,
    ),
    abandonRequest: p(
      `UPDATE requests SET lease_until = 0
       WHERE client = ? AND request_id = ? AND state = 'pending' AND (? IS NULL OR attempt IS ?)`,
    ),
    keyState: p('SELECT state FROM keys WHERE key_id = ? AND version = ?'),
    policyEpoch: p('SELECT count(*) AS n FROM policies'),
    tokenVelocity: p(
      'SELECT count, amount FROM token_velocity WHERE scope = ? AND subject = ? AND token = ? AND bucket >= ?',
    ),
    tokenBucket: p('SELECT amount FROM token_velocity WHERE scope = ? AND subject = ? AND token = ? AND bucket = ?'),
    countTokenBucket: p(
      `INSERT INTO token_velocity (scope, subject, token, bucket, count, amount) VALUES (?, ?, ?, ?, ?, '0')
       ON CONFLICT (scope, subject, token, bucket) DO UPDATE SET count = count + excluded.count`,
    ),
    addTokenAmount: p(
      'UPDATE token_velocity SET amount = ? WHERE scope = ? AND subject = ? AND token = ? AND bucket = ?',
    ),
    pruneTokenVelocity: p('DELETE FROM token_velocity WHERE bucket < ?'),
    completeNonce: p("UPDATE nonces SET state = 'done', result = ? WHERE client = ? AND request_id = ?"),
    pruneVelocity: p('DELETE FROM velocity WHERE bucket < ?'),
    pruneBatches: p('DELETE FROM batches WHERE created_at < ?'),
    pruneRequests: p('DELETE FROM requests WHERE created_at < ?'),
    insertKey: p(
      `INSERT INTO keys (key_id, version, algorithm, cka_id, public_key, state, created_at, state_changed_at, retire_at,
         threshold)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    ),
    retireActive: p(
      `UPDATE keys SET state = 'verify-only', state_changed_at = ?, retire_at = ?
       WHERE key_id = ? AND version = ? AND state = 'active'`,
    ),
    updateThreshold: p('UPDATE keys SET threshold = ? WHERE key_id = ? AND version = ?'),
    listKeys: p('SELECT * FROM keys ORDER BY key_id, version'),
    nextPolicyVersion: p('SELECT coalesce(max(version), 0) + 1 AS v FROM policies WHERE name = ?'),
    insertPolicy: p('INSERT INTO policies (name, version, document, updated_at, updated_by) VALUES (?, ?, ?, ?, ?)'),
    listPolicies: p(
      `SELECT p.* FROM policies p JOIN (SELECT name, max(version) AS v FROM policies GROUP BY name) m
         ON p.name = m.name AND p.version = m.v ORDER BY p.name`,
    ),
    policyHistory: p('SELECT * FROM policies WHERE name = ? ORDER BY version'),
    auditHead: p('SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1'),
    insertAudit: p(
      `INSERT INTO audit (seq, at, at_ms, kind, client, key_id, key_version, request_id, payload_hash, intent, decision,
         reason, signature_hash, prev_hash, hash, request) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    ),
    readAudit: p('SELECT * FROM audit WHERE seq >= ? AND seq <= ? ORDER BY seq LIMIT ?'),
    auditRange: p('SELECT min(seq) AS first, max(seq) AS last FROM audit WHERE at_ms >= ? AND at_ms < ?'),
    putCheckpoint: p(
      `INSERT INTO audit_checkpoints (seq, head_hash, at, key_id, key_version, signature) VALUES (?, ?, ?, ?, ?, ?)
       ON CONFLICT (seq) DO NOTHING`,
    ),
    checkpoints: p('SELECT * FROM audit_checkpoints WHERE seq >= ? AND seq <= ? ORDER BY seq'),
    putCeremony: p(
      `INSERT INTO ceremonies (session_id, key_id, version, kind, participants, step, plan, started_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (session_id) DO UPDATE SET step = excluded.step, plan = excluded.plan`,
    ),
    listCeremonies: p('SELECT * FROM ceremonies ORDER BY started_at, session_id'),
    dropCeremony: p('DELETE FROM ceremonies WHERE session_id = ?'),
  };
}

export type Statements = ReturnType<typeof prepareStatements>;
