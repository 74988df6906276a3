/**
 * A database writer against a loosening's delay, on PostgreSQL (the harness's throwaway cluster,
 * written directly with pg): harness/loosen-writer.ts. SQLite: quorum-loosen-writer.test.ts.
 */
import pg from 'pg';
import t from 'tap';
import { captureLog } from '../harness/log-capture.js';
import { ADMIN_CNS, loosenWriterConfig, loosenWriterTests } from '../harness/loosen-writer.js';
import { startPostgres } from '../harness/postgres.js';
import { startTestSigner } from '../harness/signer.js';
import { PostgresStore } from '../src/infra/store/postgres.js';

const server = await startPostgres();
t.teardown(() => server.stop());
const captured = captureLog('warn');
const ts = await startTestSigner({
  clients: ADMIN_CNS,
  log: captured.log,
  prepare: async (_dir, pki) => ({ ...loosenWriterConfig(pki), store: { postgres: { url: server.url } } }),
});
t.teardown(() => ts.close());
const db = new pg.Client({ connectionString: server.url });
await db.connect();
t.teardown(() => db.end());

await loosenWriterTests(
  t,
  ts,
  {
    async run(sql, params) {
      let n = 0;
      const r = await db.query(
        sql.replace(/\?/g, () => `$${++n}`),
        params,
      );
      return r.rowCount ?? 0;
    },
    async rows(sql, params) {
      let n = 0;
      return (
        await db.query(
          sql.replace(/\?/g, () => `$${++n}`),
          params,
        )
      ).rows;
    },
    openStore: () => PostgresStore.open(server.url, { poolSize: 2 }),
  },
  captured.lines,
);
