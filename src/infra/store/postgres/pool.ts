import pg from 'pg';

/**
 * A pool of pipelined connections to the store's database. `url` is a libpq-style connection
 * URI (`postgres://user:pass@host:port/db?sslmode=...`).
 */
export function openPool(url: string, size: number): pg.Pool {
  const pool = new pg.Pool({
    connectionString: url,
    max: size,
    pipeline: true,
    keepAlive: true,
    connectionTimeoutMillis: 10_000,
    application_name: 'hsm-signer',
    // A session that dies mid-transaction must not hold its locks for long.
    idle_in_transaction_session_timeout: 30_000,
    // "Durable before the signature leaves": a commit must be flushed before it returns.
    // Raise synchronous_commit if the server or role turned it off; never lower it.
    onConnect: async (client) => {
      // A connection that breaks while checked out fails its queries; without a listener its
      // 'error' event would also crash the process.
      client.on('error', () => {});
      await client.query(
        "SELECT set_config('synchronous_commit', 'on', false) WHERE current_setting('synchronous_commit') = 'off'",
      );
    },
  });
  // An idle connection that breaks (server restart, network) is dropped by the pool; without
  // a listener the 'error' event would crash the process. The next query reconnects.
  pool.on('error', () => {});
  return pool;
}

/**
 * A session-level advisory lock on its own connection, held while `fn` runs; undefined when
 * another session holds it. The connection is not taken from the pool: `fn` uses the pool
 * itself, and with a small pool holding one of its clients for the lock could starve it. If the
 * connection dies, PostgreSQL drops the lock.
 */
export async function withSessionLock<T>(pool: pg.Pool, name: string, fn: () => Promise<T>): Promise<T | undefined> {
  const client = new pg.Client({
    connectionString: pool.options.connectionString,
    keepAlive: true,
    connectionTimeoutMillis: 10_000,
    application_name: 'hsm-signer job lock',
  });
  client.on('error', () => {});
  await client.connect();
  const lock = "SELECT pg_try_advisory_lock(hashtextextended('job:' || $1, 0)) AS ok";
  const unlock = "SELECT pg_advisory_unlock(hashtextextended('job:' || $1, 0))";
  try {
    const { rows } = await client.query<{ ok: boolean }>({ text: lock, values: [name] });
    if (!rows[0]?.ok) return undefined;
    try {
      return await fn();
    } finally {
      await client.query({ text: unlock, values: [name] }).catch(() => undefined);
    }
  } finally {
    await client.end().catch(() => undefined);
  }
}
