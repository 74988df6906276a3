import cron, { type ScheduledTask } from 'node-cron';
import { rotationSafe } from '../../core/policy/sweep.js';
import { lastFireAtOrBefore, rotationDue } from '../../core/rotation/due.js';
import type { Logger } from '../../infra/log.js';
import type { Store } from '../../infra/store/store.js';
import type { KeyRegistry } from '../keys/registry.js';
import type { PolicyRegistry } from '../policy/registry.js';

export interface RotationSchedule {
  cron: string;
  minAgeSeconds: number;
  timezone?: string | undefined;
  /** rotate (default): a new key version. refresh: new threshold shares for the same key. */
  action?: 'rotate' | 'refresh';
}

export interface SchedulerDeps {
  keys: KeyRegistry;
  store: Pick<Store, 'withJobLock'>;
  schedules: Record<string, RotationSchedule>;
  overlapMs: number;
  log: Logger;
  clock?: () => Date;
  /** When set, an EVM key is rotated only while its policy has a sweep rule (nothing stranded). */
  policies?: Pick<PolicyRegistry, 'forKey'>;
}

/**
 * Scheduled rotation: one node-cron job per scheduled key, plus one check per key at start (so
 * a fire missed while the service was down is caught up, once). Each check reloads the keys and
 * asks `rotationDue`; a due rotation runs under the store's job lock and is checked again inside
 * it, so with replicas exactly one rotates per fire and the others see the new version.
 */
export class RotationScheduler {
  private readonly tasks: ScheduledTask[] = [];
  /** Checks of one key run one at a time (the start check and a fire never overlap). */
  private readonly serial = new Map<string, Promise<unknown>>();
  private stopped = false;
  private readonly clock: () => Date;

  constructor(private readonly deps: SchedulerDeps) {
    this.clock = deps.clock ?? (() => new Date());
  }

  /** Schedules the jobs, then runs the start-up check of every scheduled key. */
  async start(): Promise<void> {
    for (const [keyId, s] of Object.entries(this.deps.schedules)) {
      // node-cron reads expressions in local time unless told; fire times are computed in UTC
      // (or the schedule's zone), so the runner must use the same zone.
      const task = cron.schedule(s.cron, (ctx) => this.check(keyId, 'schedule', ctx.date), {
        name: `${s.action ?? 'rotate'}:${keyId}`,
        timezone: s.timezone ?? 'UTC',
        noOverlap: true,
        // Like the other timers: the jobs alone never keep the process alive.
        unref: true,
      });
      this.tasks.push(task);
    }
    await Promise.all(Object.keys(this.deps.schedules).map((keyId) => this.check(keyId, 'start')));
  }

  /** Stops the jobs and waits for a check in progress. */
  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.all(this.tasks.map((t) => t.destroy()));
    await Promise.all(this.serial.values());
  }

  /**
   * One check of one key; never throws (a failed check is logged, the next fire tries again).
   * Resolves to true when this replica rotated the key.
   */
  check(keyId: string, trigger: 'start' | 'schedule', firedAt?: Date): Promise<boolean> {
    const run = (this.serial.get(keyId) ?? Promise.resolve()).then(() => this.checkNow(keyId, trigger, firedAt));
    const settled = run.catch((e) => {
      this.deps.log.error({ keyId, trigger, err: (e as Error).message }, 'scheduled key rotation failed');
      return false;
    });
    this.serial.set(keyId, settled);
    return settled;
  }

  /** Now, but never before the fire being served: a timer that fires a little early still serves its fire. */
  private now(firedAt?: Date): Date {
    const now = this.clock();
    return firedAt && firedAt > now ? new Date(firedAt) : now;
  }

  private async checkNow(keyId: string, trigger: 'start' | 'schedule', firedAt?: Date): Promise<boolean> {
    if (this.stopped) return false;
    const { keys, store, log, overlapMs } = this.deps;
    const schedule = this.deps.schedules[keyId]!;
    await keys.load();
    if (!this.due(keyId, schedule, this.now(firedAt))) return false;
    const rotated = await store.withJobLock(`rotate:${keyId}`, async () => {
      // Another replica may have served this fire between the check above and the lock.
      await keys.load();
      const at = this.now(firedAt);
      if (this.stopped || !this.due(keyId, schedule, at)) return false;
      const scheduledAt = lastFireAtOrBefore(schedule.cron, at, schedule.timezone)!;
      // The change's audit entry names the scheduler and the fire it served.
      const fire = { cron: schedule.cron, scheduledAt: scheduledAt.toISOString(), trigger };
      const by = { client: 'scheduler', context: fire };
      if (schedule.action === 'refresh') {
        const k = await keys.refreshShares(keyId, by);
        log.info(
          { keyId, version: k.version, epoch: k.threshold!.epoch, cron: schedule.cron, scheduledAt, trigger },
          'threshold shares refreshed by schedule',
        );
        return true;
      }
      const { next, previous } = await keys.rotate(keyId, overlapMs, by, at);
      log.info(
        { keyId, from: previous.version, to: next.version, cron: schedule.cron, scheduledAt, trigger },
        'key rotated by schedule',
      );
      return true;
    });
    if (rotated === undefined) log.debug({ keyId }, 'scheduled rotation left to the replica holding the job lock');
    return rotated === true;
  }

  private due(keyId: string, s: RotationSchedule, now: Date): boolean {
    if (!this.deps.keys.has(keyId)) {
      this.deps.log.warn({ keyId }, 'rotation schedule names a key with no versions; nothing to rotate');
      return false;
    }
    let activeCreatedAt: Date;
    try {
      const active = this.deps.keys.get(keyId);
      if (s.action === 'refresh' && !active.threshold) {
        this.deps.log.warn({ keyId }, 'refresh schedule names a key that is not a threshold key; nothing to refresh');
        return false;
      }
      if (s.action !== 'refresh' && active.algorithm === 'ecdsa-secp256k1' && this.strands(keyId)) return false;
      // A refresh schedule counts from the current shares; a rotation from the version's creation.
      activeCreatedAt =
        s.action === 'refresh' && active.threshold ? new Date(active.threshold.sharesSince) : active.createdAt;
    } catch {
      this.deps.log.warn({ keyId }, 'rotation schedule names a key with no active version; nothing to rotate');
      return false;
    }
    return rotationDue({ cron: s.cron, minAgeSeconds: s.minAgeSeconds, timezone: s.timezone, activeCreatedAt, now });
  }

  /**
   * Whether rotating this EVM key now would strand its old address: the config check refuses
   * such schedules, but the policy may have changed since (SetPolicy) or match another way.
   */
  private strands(keyId: string): boolean {
    const policies = this.deps.policies;
    if (!policies) return false;
    let why: string | null;
    try {
      const p = policies.forKey(keyId);
      why = rotationSafe(p) ? null : `policy "${p.name}" has no sweep rule`;
    } catch {
      why = 'no policy governs the key';
    }
    if (why)
      this.deps.log.error(
        { keyId, why },
        'scheduled rotation of an EVM key skipped: nothing could sweep the old address',
      );
    return why !== null;
  }
}
