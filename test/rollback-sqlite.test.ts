import { existsSync } from 'node:fs';
import { copyFile, rm, writeFile } from 'node:fs/promises';
import t from 'tap';
import { makePki } from '../harness/pki.js';
import { RestartableSigner } from '../harness/rollback.js';
import { testConfig } from '../harness/signer.js';
import { makeToken, tempDir } from '../harness/token.js';
import { rollbackScenario } from './rollback.suite.js';

const tmp = await tempDir('rollback-sqlite-');
t.teardown(() => tmp.cleanup());
const [pki, token] = await Promise.all([makePki(tmp.path), makeToken(tmp.path)]);
const raw = testConfig(tmp.path, pki, token);
const configFile = `${tmp.path}/signer.json`;
await writeFile(configFile, JSON.stringify(raw));
const s = new RestartableSigner(pki, raw, configFile);
t.teardown(() => s.stop());

const db = `${tmp.path}/signer.db`;
t.test('SQLite: a restored copy of the database cannot reopen nonce 7', (t) =>
  rollbackScenario(t, s, {
    // The live file and its WAL, as a file-level backup taken while the signer runs.
    async take() {
      await copyFile(db, `${db}.bak`);
      if (existsSync(`${db}-wal`)) await copyFile(`${db}-wal`, `${db}-wal.bak`);
    },
    async restore() {
      await copyFile(`${db}.bak`, db);
      await rm(`${db}-shm`, { force: true });
      if (existsSync(`${db}-wal.bak`)) await copyFile(`${db}-wal.bak`, `${db}-wal`);
      else await rm(`${db}-wal`, { force: true });
    },
  }),
);
