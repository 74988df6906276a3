/**
 * PostgreSQL replication safety (issue 10, point 5), as a pure decision over what the server
 * reports. A commit acknowledged by the primary but not yet applied on a standby is lost when
 * that standby is promoted: to the signer that is a store rollback. Only a synchronous standby
 * with `synchronous_commit = remote_apply` has every acknowledged commit on the standby (and
 * visible there) before the signer releases a signature.
 */

export interface ReplicationState {
  /** `synchronous_commit` of the signer's sessions. */
  synchronousCommit: string;
  /** `synchronous_standby_names` of the primary ('' when none). */
  synchronousStandbyNames: string;
  /** Rows of `pg_stat_replication`: each connected standby and its sync_state. */
  standbys: Array<{ name: string; syncState: string }>;
}

/** Warnings to log at start; empty when the cluster has no standby or is set up safely. */
export function replicationWarnings(s: ReplicationState): string[] {
  if (s.standbys.length === 0) return [];
  const out: string[] = [];
  const async = s.standbys.filter((r) => r.syncState !== 'sync' && r.syncState !== 'quorum');
  if (async.length > 0) {
    out.push(
      `standby ${async.map((r) => `${r.name} (${r.syncState})`).join(', ')} is not synchronous: promoting it loses ` +
        'acknowledged commits and the signer will refuse to sign (STORE_ROLLED_BACK); list it in synchronous_standby_names',
    );
  }
  if (s.synchronousStandbyNames.trim() === '') {
    out.push('synchronous_standby_names is empty: no commit waits for a standby');
  }
  if (s.synchronousCommit !== 'remote_apply') {
    out.push(
      `synchronous_commit is ${s.synchronousCommit}, not remote_apply: a commit may be released before a standby applied it`,
    );
  }
  return out;
}
