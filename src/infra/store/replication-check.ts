import pg from 'pg';
import { type ReplicationState, replicationWarnings } from '../../core/store/replication.js';
import type { Logger } from '../log.js';

/** Reads what the PostgreSQL server says about its standbys and the commit level of our sessions. */
export async function readReplicationState(url: string): Promise<ReplicationState> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const settings = await client.query<{ sc: string; names: string }>(
      "SELECT current_setting('synchronous_commit') AS sc, current_setting('synchronous_standby_names') AS names",
    );
    // Without pg_read_all_stats, sync_state reads NULL: counted as not synchronous (warn, not trust).
    const standbys = await client.query<{ name: string | null; sync_state: string | null }>(
      'SELECT application_name AS name, sync_state FROM pg_stat_replication',
    );
    return {
      synchronousCommit: settings.rows[0]!.sc,
      synchronousStandbyNames: settings.rows[0]!.names,
      standbys: standbys.rows.map((r) => ({ name: r.name ?? '?', syncState: r.sync_state ?? 'unknown' })),
    };
  } finally {
    await client.end();
  }
}

/**
 * Warns at start when the cluster has standbys that could be promoted without the last
 * acknowledged commits (README, "Store rollback"). Returns the warnings it logged.
 */
export async function warnOnUnsafeReplication(url: string, log?: Logger): Promise<string[]> {
  const warnings = replicationWarnings(await readReplicationState(url));
  for (const w of warnings) log?.warn({ replication: w }, 'PostgreSQL replication can roll the store back');
  return warnings;
}
