import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import t from 'tap';
import { makePki } from '../harness/pki.js';
import { pgTool, startPostgres } from '../harness/postgres.js';
import { RestartableSigner } from '../harness/rollback.js';
import { testConfig } from '../harness/signer.js';
import { makeToken, tempDir } from '../harness/token.js';
import { warnOnUnsafeReplication } from '../src/infra/store/replication-check.js';
import { rollbackScenario } from './rollback.suite.js';

const run = promisify(execFile);
const server = await startPostgres();
const tmp = await tempDir('rollback-pg-');
t.teardown(async () => {
  await server.stop();
  await tmp.cleanup();
});
const [pki, token] = await Promise.all([makePki(tmp.path), makeToken(tmp.path)]);
const raw = testConfig(tmp.path, pki, token, { store: { postgres: { url: server.url } } });
const configFile = `${tmp.path}/signer.json`;
await writeFile(configFile, JSON.stringify(raw));
const s = new RestartableSigner(pki, raw, configFile);
t.teardown(() => s.stop());

t.test('a cluster without standbys gets no replication warning', async (t) => {
  t.same(await warnOnUnsafeReplication(server.url), [], 'no standby, no warning');
});

const dump = `${tmp.path}/signer.dump`;
t.test('PostgreSQL: a restored dump cannot reopen nonce 7', (t) =>
  rollbackScenario(t, s, {
    async take() {
      await run(pgTool('pg_dump'), ['--format=custom', '--file', dump, server.url]);
    },
    async restore() {
      await run(pgTool('pg_restore'), ['--clean', '--if-exists', '--single-transaction', '--dbname', server.url, dump]);
    },
  }),
);
