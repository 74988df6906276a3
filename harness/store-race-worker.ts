/**
 * One participant of the cross-process store race (see store-race.ts).
 *
 *   tsx harness/store-race-worker.ts <postgres://... | sqlite:/path/to.db> <tag> [replay | audit]
 *
 * Opens its own store, prints "ready", waits for a line on stdin, races (runRace, or
 * runAuditRace for "audit"), prints the result as one JSON line and exits.
 */
import { createInterface } from 'node:readline';
import type { ReplayStore } from '../src/core/replay/records.js';
import type { AuditStore } from '../src/infra/store/audit.js';
import type { Store } from '../src/infra/store/store.js';
import { runAuditRace, runRace } from './store-race.js';

const [target, tag, mode = 'replay'] = process.argv.slice(2);
if (!target || !tag || (mode !== 'replay' && mode !== 'audit')) {
  process.stderr.write('usage: store-race-worker.ts <postgres://... | sqlite:/path> <tag> [replay | audit]\n');
  process.exit(2);
}

let store: Store & ReplayStore & AuditStore;
if (target.startsWith('sqlite:')) {
  const { SqliteStore } = await import('../src/infra/store/sqlite.js');
  store = new SqliteStore(target.slice('sqlite:'.length));
} else {
  const { PostgresStore } = await import('../src/infra/store/postgres.js');
  store = await PostgresStore.open(target);
}

const lines = createInterface({ input: process.stdin });
const go = new Promise<void>((resolve) => lines.once('line', () => resolve()));
process.stdout.write('ready\n');
await go;
lines.close();
const result = mode === 'audit' ? await runAuditRace(store, tag) : await runRace(store, tag);
await store.close();
process.stdout.write(`${JSON.stringify(result)}\n`);
