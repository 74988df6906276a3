/**
 * A database writer against a loosening's delay, on SQLite (the signer's file written directly
 * with better-sqlite3): harness/loosen-writer.ts. PostgreSQL: quorum-loosen-writer-postgres.test.ts.
 */
import Database from 'better-sqlite3';
import t from 'tap';
import { captureLog } from '../harness/log-capture.js';
import { ADMIN_CNS, loosenWriterConfig, loosenWriterTests } from '../harness/loosen-writer.js';
import { startTestSigner } from '../harness/signer.js';
import { SqliteStore } from '../src/infra/store/sqlite.js';

const captured = captureLog('warn');
const ts = await startTestSigner({
  clients: ADMIN_CNS,
  log: captured.log,
  prepare: async (_dir, pki) => loosenWriterConfig(pki),
});
t.teardown(() => ts.close());
const file = `${ts.dir}/signer.db`;

await loosenWriterTests(
  t,
  ts,
  {
    async run(sql, params) {
      const db = new Database(file);
      try {
        return db.prepare(sql).run(...params).changes;
      } finally {
        db.close();
      }
    },
    async rows(sql, params) {
      const db = new Database(file, { readonly: true });
      try {
        return db.prepare(sql).all(...params) as Array<Record<string, unknown>>;
      } finally {
        db.close();
      }
    },
    openStore: async () => new SqliteStore(file),
  },
  captured.lines,
);
