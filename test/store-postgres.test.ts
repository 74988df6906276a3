import t from 'tap';
import { startSchemaServer } from '../harness/postgres.js';
import { POSTGRES_MIGRATIONS } from '../src/infra/store/migrations/postgres.js';
import { PostgresStore } from '../src/infra/store/postgres.js';
import { checkAuditRace, checkRace, raceProcesses, readChain, storeSuite, type TestStore } from './store.suite.js';

// Each fresh store gets a schema of its own in the test database (cheaper than a database).
const { admin, freshSchema: freshUrl } = await startSchemaServer(t);
const schemas = new WeakMap<TestStore, string>();
async function open(url: string, schema: string, poolSize?: number) {
  const s = await PostgresStore.open(url, poolSize ? { poolSize } : {});
  schemas.set(s, schema);
  return s;
}

storeSuite(
  t,
  'postgres',
  async () => {
    const { url, schema } = await freshUrl();
    return open(url, schema);
  },
  {
    // Two stores, two pools: nothing in-process is shared.
    twins: async () => {
      const { url, schema } = await freshUrl();
      return Promise.all([open(url, schema), open(url, schema)]);
    },
    replacements: async (s, account, chainId, nonce) => {
      const { rows } = await admin.query<{ payload_hash: Buffer; result: Buffer | null }>(
        `SELECT payload_hash, result FROM ${schemas.get(s)}.nonce_replacements WHERE key_id = $1 AND chain_id = $2 AND nonce = $3 ORDER BY replaced_at, ctid`,
        [account, chainId.toString(), nonce.toString()],
      );
      return rows.map((r) => ({ payloadHash: r.payload_hash, result: r.result }));
    },
  },
);

t.test('postgres: two server processes on one database race on the same nonces and request ids', async (t) => {
  const { url, schema } = await freshUrl();
  await (await open(url, schema)).close(); // schema first, so the race is about reservations only
  const results = await raceProcesses(url, 2);
  const s = await open(url, schema);
  t.teardown(() => s.close());
  await checkRace(t, s, results);
});

t.test('postgres: two server processes appending to the audit log at once make one chain', async (t) => {
  const { url, schema } = await freshUrl();
  await (await open(url, schema)).close();
  const results = await raceProcesses(url, 2, 'audit');
  const s = await open(url, schema);
  t.teardown(() => s.close());
  await checkAuditRace(t, s, results);
  // What the database holds, read without the store: one row per seq, each linked to the one before.
  const { rows } = await admin.query<{ n: number; forks: number }>(
    `SELECT count(*)::int AS n, count(*) FILTER (WHERE p.hash IS DISTINCT FROM a.prev_hash AND a.seq > 1)::int AS forks
     FROM ${schema}.audit a LEFT JOIN ${schema}.audit p ON p.seq = a.seq - 1`,
  );
  t.same(rows[0], { n: (await readChain(s)).length, forks: 0 }, 'no entry links to anything but its predecessor');
});

t.test('postgres: replicas starting together create the schema once', async (t) => {
  const { url, schema } = await freshUrl();
  const stores = await Promise.all(Array.from({ length: 6 }, () => open(url, schema, 2)));
  t.teardown(() => Promise.all(stores.map((s) => s.close())));
  const tables = async (s: string) =>
    (await admin.query('SELECT tablename FROM pg_tables WHERE schemaname = $1 ORDER BY tablename', [s])).rows;
  // The reference: the same migrations run by one store alone.
  const one = await freshUrl();
  await (await open(one.url, one.schema)).close();
  const expected = await tables(one.schema);
  t.ok(expected.length >= 13, 'the nine tables, schema_version and the audit tree at least');
  t.same(await tables(schema), expected, 'six replicas at once made exactly the tables one store makes');
  const { rows } = await admin.query(`SELECT count(*)::int AS n FROM ${schema}.schema_version`);
  t.equal(rows[0].n, POSTGRES_MIGRATIONS.length, 'each migration recorded once');
});
