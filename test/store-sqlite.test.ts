import Database from 'better-sqlite3';
import t from 'tap';
import { tempDir } from '../harness/token.js';
import { SqliteStore } from '../src/infra/store/sqlite.js';
import { checkAuditRace, checkRace, raceProcesses, storeSuite, type TestStore } from './store.suite.js';

const tmp = await tempDir('store-sqlite-');
t.teardown(() => tmp.cleanup());
let n = 0;
const paths = new WeakMap<TestStore, string>();
const newPath = () => `${tmp.path}/store-${n++}.db`;

storeSuite(
  t,
  'sqlite',
  async () => {
    const path = newPath();
    const s = new SqliteStore(path);
    paths.set(s, path);
    return s;
  },
  {
    twins: async () => {
      const path = newPath();
      const twins: [TestStore, TestStore] = [new SqliteStore(path), new SqliteStore(path)];
      for (const s of twins) paths.set(s, path);
      return twins;
    },
    replacements: async (s, account, chainId, nonce) => {
      const db = new Database(paths.get(s)!, { readonly: true });
      try {
        return db
          .prepare(
            'SELECT payload_hash AS payloadHash, result FROM nonce_replacements WHERE key_id = ? AND chain_id = ? AND nonce = ? ORDER BY rowid',
          )
          .all(account, chainId, nonce) as Array<{ payloadHash: Buffer; result: Buffer | null }>;
      } finally {
        db.close();
      }
    },
  },
);

t.test('sqlite: two processes on one database file race', async (t) => {
  const path = newPath();
  new SqliteStore(path).close(); // schema first: both workers then only read and write
  const results = await raceProcesses(`sqlite:${path}`, 2);
  const s = new SqliteStore(path);
  t.teardown(() => s.close());
  await checkRace(t, s, results);
});

t.test('sqlite: two processes appending to the audit log of one database file make one chain', async (t) => {
  const path = newPath();
  new SqliteStore(path).close();
  const results = await raceProcesses(`sqlite:${path}`, 2, 'audit');
  const s = new SqliteStore(path);
  t.teardown(() => s.close());
  await checkAuditRace(t, s, results);
});
