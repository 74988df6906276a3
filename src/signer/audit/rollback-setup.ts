import type { Config } from '../../infra/config/schema.js';
import type { Hsm } from '../../infra/hsm/hsm.js';
import { HsmMark } from '../../infra/hsm/mark.js';
import type { Logger } from '../../infra/log.js';
import type { Metrics } from '../../infra/metrics.js';
import type { AuditStore } from '../../infra/store/audit.js';
import type { AuditTreeStore } from '../../infra/store/audit-tree.js';
import { treeHeads } from './log-heads.js';
import { RollbackGuard } from './rollback-guard.js';

/**
 * Opens this replica's mark in the HSM and checks the database against every mark on the token
 * (every replica's), as tree heads (log-heads.ts). The witnesses' latest heads are checked by the
 * checkpointer at start (Checkpointer.seed, trusted-heads.ts), which refuses a database shorter
 * than any of them with STORE_ROLLED_BACK too. Undefined when `rollback.mark` is off.
 */
export async function openRollbackGuard(
  hsm: Hsm,
  store: AuditStore & AuditTreeStore,
  config: Config['rollback'],
  metrics: Metrics,
  onTrip: () => void,
  log?: Logger,
): Promise<RollbackGuard | undefined> {
  metrics.storeRolledBack.set(0);
  if (!config.mark) {
    log?.warn(
      'rollback.mark is off: a restored or failed-over database can make this signer sign a second payload for a nonce',
    );
    return undefined;
  }
  const mark = await HsmMark.open(hsm, config.replica);
  const guard = new RollbackGuard({
    heads: treeHeads(store),
    log,
    onTrip: () => {
      metrics.storeRolledBack.set(1);
      onTrip();
    },
    mark: {
      get head() {
        return mark.head;
      },
      advance: (next) =>
        mark.advance(next).then(
          () => void metrics.rollbackMarkWrites.inc({ outcome: 'ok' }),
          (e) => {
            metrics.rollbackMarkWrites.inc({ outcome: 'failed' });
            throw e;
          },
        ),
      all: async () => (await HsmMark.readAll(hsm)).map((m) => ({ source: `hsm:${m.replica}`, head: m.head })),
      close: () => mark.close(),
    },
  });
  await guard.checkAtStart();
  return guard;
}
