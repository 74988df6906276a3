/**
 * PostgreSQL statements. Named, so each connection parses and plans them once. Those on the
 * signing path work on arrays (`unnest`) so that a batch of any size costs the same number of
 * statements.
 */
import type { QueryConfig } from 'pg';

/**
 * The audit chain's lock: pg_advisory_xact_lock(int4, int4). Two-key advisory locks live in
 * another lock space than the one-bigint locks of the schema (migrations/postgres.ts) and of
 * reservation subjects (hashtextextended values), so no subject can ever hash onto it.
 */
export const AUDIT_LOCK = [1752395105, 1969514868] as const; // "hsma", "udit"

export const SQL = {
  /**
   * The reservation's locks: one advisory lock per subject, taken in hash order so that two
   * reservations can never wait for each other in a cycle. Sorted in a subquery that the
   * planner cannot flatten (ORDER BY + DISTINCT), so the locks are taken in that order.
   */
  lock: `SELECT pg_advisory_xact_lock(h) FROM (
      SELECT DISTINCT hashtextextended(s, 0) AS h FROM unnest($1::text[]) AS s ORDER BY h
    ) AS l`,
  // The view. Existing request and nonce rows are also row-locked (in key order), so that a
  // concurrent complete/abandon of the same rows is ordered before or after the whole
  // reservation, exactly as with SQLite's single writer.
  requests: `SELECT q.i, r.payload_hash, r.state, r.result, r.lease_until
    FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS q(client, request_id, i)
    JOIN requests r ON r.client = q.client AND r.request_id = q.request_id
    ORDER BY r.client, r.request_id
    FOR NO KEY UPDATE OF r`,
  nonces: `SELECT q.i, n.payload_hash, n.intent_hash, n.max_fee::text AS max_fee,
      n.max_priority_fee::text AS max_priority_fee, n.state, n.result, n.client, n.request_id, n.lease_until
    FROM unnest($1::text[], $2::bigint[], $3::bigint[]) WITH ORDINALITY AS q(key_id, chain_id, nonce, i)
    JOIN nonces n ON n.key_id = q.key_id AND n.chain_id = q.chain_id AND n.nonce = q.nonce
    ORDER BY n.key_id, n.chain_id, n.nonce
    FOR NO KEY UPDATE OF n`,
  maxNonces: `SELECT q.i, (SELECT max(n.nonce) FROM nonces n WHERE n.key_id = q.key_id AND n.chain_id = q.chain_id) AS n
    FROM unnest($1::text[], $2::bigint[]) WITH ORDINALITY AS q(key_id, chain_id, i)`,
  velocity: `SELECT q.i, coalesce(sum(v.count), 0)::text AS count, coalesce(sum(v.value), 0)::text AS value
    FROM unnest($1::text[], $2::text[], $3::bigint[]) WITH ORDINALITY AS q(scope, subject, since, i)
    LEFT JOIN velocity v ON v.scope = q.scope AND v.subject = q.subject AND v.bucket >= q.since
    GROUP BY q.i`,
  batch: 'SELECT items_hash FROM batches WHERE client = $1 AND batch_id = $2',
  // ERC-20 usage per (query, token): one row per pair asked for, zero when nothing was reserved.
  tokenVelocity: `SELECT q.qi, q.token, coalesce(sum(v.count), 0)::text AS count, coalesce(sum(v.amount), 0)::text AS amount
    FROM unnest($1::int[], $2::text[], $3::text[], $4::text[], $5::bigint[]) AS q(qi, scope, subject, token, since)
    LEFT JOIN token_velocity v
      ON v.scope = q.scope AND v.subject = q.subject AND v.token = q.token AND v.bucket >= q.since
    GROUP BY q.qi, q.token`,
  // The key version's state, share-locked: a state change on any replica waits for this
  // reservation to commit, or commits first and is seen here.
  keyState: 'SELECT state FROM keys WHERE key_id = $1 AND version = $2 FOR SHARE',
  policyEpoch: 'SELECT count(*)::int AS n FROM policies',
  // The writes, in the order sqlite.ts makes them for one item.
  renewRequests: `UPDATE requests r SET lease_until = $3::bigint, attempt = $4::text
    FROM unnest($1::text[], $2::text[]) AS q(client, request_id)
    WHERE r.client = q.client AND r.request_id = q.request_id AND r.state = 'pending'`,
  renewNonces: `UPDATE nonces n SET lease_until = $3::bigint
    FROM unnest($1::text[], $2::text[]) AS q(client, request_id)
    WHERE n.client = q.client AND n.request_id = q.request_id AND n.state = 'pending'`,
  insertRequests: `INSERT INTO requests (client, request_id, key_id, payload_hash, state, lease_until, created_at,
      attempt)
    SELECT client, request_id, key_id, payload_hash, 'pending', $5::bigint, $6::bigint, $7::text
    FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[]) AS q(client, request_id, key_id, payload_hash)`,
  archiveNonces: `INSERT INTO nonce_replacements (key_id, chain_id, nonce, payload_hash, result, replaced_at)
    SELECT n.key_id, n.chain_id, n.nonce, n.payload_hash, n.result, $4::bigint
    FROM unnest($1::text[], $2::bigint[], $3::bigint[]) AS q(key_id, chain_id, nonce)
    JOIN nonces n ON n.key_id = q.key_id AND n.chain_id = q.chain_id AND n.nonce = q.nonce`,
  replaceNonces: `UPDATE nonces n SET payload_hash = q.payload_hash, intent_hash = q.intent_hash, max_fee = q.max_fee,
      max_priority_fee = q.max_priority_fee, client = q.client, request_id = q.request_id, state = 'pending',
      result = NULL, lease_until = $10::bigint
    FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bytea[], $5::bytea[], $6::numeric[], $7::numeric[],
      $8::text[], $9::text[]) AS q(key_id, chain_id, nonce, payload_hash, intent_hash, max_fee, max_priority_fee,
        client, request_id)
    WHERE n.key_id = q.key_id AND n.chain_id = q.chain_id AND n.nonce = q.nonce`,
  insertNonces: `INSERT INTO nonces (key_id, chain_id, nonce, payload_hash, intent_hash, max_fee, max_priority_fee,
      client, request_id, state, lease_until)
    SELECT key_id, chain_id, nonce, payload_hash, intent_hash, max_fee, max_priority_fee, client, request_id,
      'pending', $10::bigint
    FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bytea[], $5::bytea[], $6::numeric[], $7::numeric[],
      $8::text[], $9::text[]) AS q(key_id, chain_id, nonce, payload_hash, intent_hash, max_fee, max_priority_fee,
        client, request_id)`,
  addVelocity: `INSERT INTO velocity (scope, subject, bucket, count, value)
    SELECT scope, subject, $5::bigint, count, value FROM unnest($1::text[], $2::text[], $3::bigint[], $4::numeric[])
      AS q(scope, subject, count, value)
    ON CONFLICT (scope, subject, bucket)
    DO UPDATE SET count = velocity.count + excluded.count, value = velocity.value + excluded.value`,
  addTokenVelocity: `INSERT INTO token_velocity (scope, subject, token, bucket, count, amount)
    SELECT scope, subject, token, $6::bigint, count, amount
    FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::numeric[]) AS q(scope, subject, token, count, amount)
    ON CONFLICT (scope, subject, token, bucket)
    DO UPDATE SET count = token_velocity.count + excluded.count, amount = token_velocity.amount + excluded.amount`,
  insertBatch: 'INSERT INTO batches (client, batch_id, items_hash, created_at) VALUES ($1, $2, $3, $4)',
  // complete/abandon: rows are locked in key order first (the MATERIALIZED CTE; an UPDATE only
  // touches rows the CTE has already returned, i.e. locked), the order a reservation uses too,
  // so the two can never deadlock.
  // Only pending records owned by the completing attempt (any attempt when it is null): a late
  // completion after a lease takeover is dropped. The locked rows' WHERE is re-checked on the
  // newest row version, so a takeover that committed meanwhile is seen. RETURNING: what applied.
  completeRequests: `WITH d AS (
      SELECT * FROM unnest($1::text[], $2::text[], $3::bytea[], $4::text[]) AS q(client, request_id, result, attempt)),
    l AS MATERIALIZED (SELECT r.client, r.request_id, d.result
      FROM requests r JOIN d ON r.client = d.client AND r.request_id = d.request_id
      WHERE r.state = 'pending' AND (d.attempt IS NULL OR r.attempt = d.attempt)
      ORDER BY r.client, r.request_id FOR NO KEY UPDATE OF r)
    UPDATE requests r SET state = 'done', result = l.result
    FROM l WHERE r.client = l.client AND r.request_id = l.request_id
    RETURNING r.client, r.request_id`,
  // The nonce claims of the requests the statement above just finished with this very result.
  completeNonces: `WITH d AS (
      SELECT * FROM unnest($1::text[], $2::text[], $3::bytea[]) AS q(client, request_id, result)),
    l AS MATERIALIZED (SELECT n.key_id, n.chain_id, n.nonce, d.result
      FROM nonces n JOIN d ON n.client = d.client AND n.request_id = d.request_id
      JOIN requests r ON r.client = d.client AND r.request_id = d.request_id AND r.state = 'done'
        AND r.result = d.result
      WHERE n.state = 'pending'
      ORDER BY n.key_id, n.chain_id, n.nonce FOR NO KEY UPDATE OF n)
    UPDATE nonces n SET state = 'done', result = l.result
    FROM l WHERE n.key_id = l.key_id AND n.chain_id = l.chain_id AND n.nonce = l.nonce`,
  abandonRequests: `WITH l AS MATERIALIZED (SELECT r.client, r.request_id FROM requests r
      JOIN unnest($1::text[], $2::text[], $3::text[]) AS q(client, request_id, attempt)
        ON r.client = q.client AND r.request_id = q.request_id
      WHERE r.state = 'pending' AND (q.attempt IS NULL OR r.attempt = q.attempt) ORDER BY r.client, r.request_id FOR NO KEY UPDATE OF r)
    UPDATE requests r SET lease_until = 0
    FROM l WHERE r.client = l.client AND r.request_id = l.request_id AND r.state = 'pending'`,
  // Appending to the audit chain: the lock, then the head in a statement of its own (see audit.ts).
  auditLock: 'SELECT pg_advisory_xact_lock($1::int4, $2::int4)',
  // BIGINT columns come back as decimal strings (node-pg's default for int8). Never alias a
  // cast as `seq`: ORDER BY seq would then sort text ("999" > "1000").
  auditHead: 'SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1',
  insertAudit: `INSERT INTO audit (seq, at, at_ms, kind, client, key_id, key_version, request_id, payload_hash, intent,
      decision, reason, signature_hash, prev_hash, hash, request)
    SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::text[], $7::int4[],
      $8::text[],
      $9::text[], $10::text[], $11::text[], $12::text[], $13::text[], $14::text[], $15::text[], $16::text[])`,
  readAudit: `SELECT seq, at, kind, client, key_id, key_version, request_id, payload_hash, intent, decision, reason,
      signature_hash, prev_hash, hash, request
    FROM audit WHERE seq >= $1::bigint AND seq <= $2::bigint ORDER BY seq LIMIT $3`,
  abandonNonces: `WITH l AS MATERIALIZED (SELECT n.key_id, n.chain_id, n.nonce FROM nonces n
      JOIN unnest($1::text[], $2::text[], $3::text[]) AS q(client, request_id, attempt)
        ON n.client = q.client AND n.request_id = q.request_id
      JOIN requests r ON r.client = q.client AND r.request_id = q.request_id
        AND (q.attempt IS NULL OR r.attempt = q.attempt)
      WHERE n.state = 'pending' ORDER BY n.key_id, n.chain_id, n.nonce FOR NO KEY UPDATE OF n)
    UPDATE nonces n SET lease_until = 0 FROM l
    WHERE n.key_id = l.key_id AND n.chain_id = l.chain_id AND n.nonce = l.nonce AND n.state = 'pending'`,
  // Keys, policies and checkpoints: one row per call, in transactions of their own (see postgres.ts).
  insertKey: `INSERT INTO keys (key_id, version, algorithm, cka_id, public_key, state, created_at, state_changed_at,
      retire_at, threshold) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
  // One statement: the insert happens only if this call moved the active version. A replica
  // rotating at the same time waits for the row; once the first commits, the row is no longer
  // active and this one moves nothing (READ COMMITTED re-checks the WHERE on the new row).
  rotateKey: `WITH moved AS (
      UPDATE keys SET state = 'verify-only', state_changed_at = $11, retire_at = $12
      WHERE key_id = $1 AND version = $13 AND state = 'active' RETURNING 1)
    INSERT INTO keys (key_id, version, algorithm, cka_id, public_key, state, created_at, state_changed_at, retire_at,
      threshold)
    SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10 WHERE EXISTS (SELECT 1 FROM moved)`,
  updateThreshold: 'UPDATE keys SET threshold = $1 WHERE key_id = $2 AND version = $3',
  setKeyState: `UPDATE keys SET state = $1, state_changed_at = $2, retire_at = NULL
    WHERE key_id = $3 AND version = $4 AND state = ANY($5::text[])`,
  listKeys: `SELECT key_id, version, algorithm, cka_id, public_key, state, created_at, state_changed_at, retire_at,
      threshold
    FROM keys ORDER BY key_id, version`,
  // Two replicas setting the same policy at once compute the same version: the primary key
  // refuses the second, which retries and gets the next one.
  /**
   * Taken before a new policy or access version is numbered ($1: "policy:<name>" or "access"):
   * writers of one name queue here instead of racing for max + 1 and retrying on the primary
   * key, which under load let one writer lose every one of its attempts. The insert is a later
   * statement, so its snapshot sees the version the previous holder committed.
   */
  versionLock: "SELECT pg_advisory_xact_lock(hashtextextended('versions:' || $1, 0))",
  putPolicy: `INSERT INTO policies (name, version, document, updated_at, updated_by)
    SELECT $1, coalesce(max(version), 0) + 1, $2, $3, $4 FROM policies WHERE name = $1
    RETURNING version`,
  listPolicies: `SELECT DISTINCT ON (name) name, version, document, updated_at, updated_by FROM policies
    ORDER BY name, version DESC`,
  policyHistory: `SELECT name, version, document, updated_at, updated_by FROM policies
    WHERE name = $1 ORDER BY version`,
  auditRange: 'SELECT min(seq) AS first, max(seq) AS last FROM audit WHERE at_ms >= $1 AND at_ms < $2',
  // A second replica checkpointing the same seq is ignored: the first one stays.
  putCheckpoint: `INSERT INTO audit_checkpoints (seq, head_hash, at, key_id, key_version, signature)
    VALUES ($1, $2, $3, $4, $5, $6)
    ON CONFLICT (seq) DO NOTHING`,
  checkpoints: `SELECT seq, head_hash, at, key_id, key_version, signature FROM audit_checkpoints
    WHERE seq >= $1::bigint AND seq <= $2::bigint ORDER BY seq`,
  putCeremony: `INSERT INTO ceremonies (session_id, key_id, version, kind, participants, step, plan, started_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
    ON CONFLICT (session_id) DO UPDATE SET step = excluded.step, plan = excluded.plan`,
  listCeremonies: `SELECT session_id, key_id, version, kind, participants, step, plan, started_at
    FROM ceremonies ORDER BY started_at, session_id`,
  dropCeremony: 'DELETE FROM ceremonies WHERE session_id = $1',
  pruneVelocity: 'DELETE FROM velocity WHERE bucket < $1',
  pruneTokenVelocity: 'DELETE FROM token_velocity WHERE bucket < $1',
  pruneBatches: 'DELETE FROM batches WHERE created_at < $1',
  // Rows locked in the order reservations and complete() lock them: no lock cycle.
  pruneRequests: `DELETE FROM requests WHERE (client, request_id) IN (
      SELECT client, request_id FROM requests WHERE created_at < $1 ORDER BY client, request_id FOR UPDATE)`,
} as const;

export type Sql = keyof typeof SQL;
export const q = (name: Sql, values: unknown[]): QueryConfig => ({ name: `signer_${name}`, text: SQL[name], values });
