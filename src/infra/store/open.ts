import type { ReplayStore } from '../../core/replay/records.js';
import type { Config } from '../config/schema.js';
import type { Logger } from '../log.js';
import type { AuditStore } from './audit.js';
import type { AuditTreeStore } from './audit-tree.js';
import type { BatchResultStore } from './batch-results.js';
import type { Store } from './store.js';

export type FullStore = Store & ReplayStore & AuditStore & AuditTreeStore & BatchResultStore;

/**
 * Opens the configured backend; PostgreSQL is loaded only when configured, and its replication
 * settings are checked (a warning when a standby could be promoted without our last commits).
 */
export async function openStore(cfg: Config['store'], log?: Logger): Promise<FullStore> {
  if ('sqlite' in cfg) {
    const { SqliteStore } = await import('./sqlite.js');
    return new SqliteStore(cfg.sqlite.path);
  }
  const { PostgresStore } = await import('./postgres.js');
  const store = await PostgresStore.open(cfg.postgres.url, { poolSize: cfg.postgres.poolSize });
  const { warnOnUnsafeReplication } = await import('./replication-check.js');
  await warnOnUnsafeReplication(cfg.postgres.url, log);
  return store;
}
