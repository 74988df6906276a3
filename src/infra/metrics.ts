import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';

/** Prometheus metrics of one signer instance; a registry each, so tests can run several. */
export class Metrics {
  readonly registry = new Registry();
  readonly signs = new Counter({
    name: 'signer_signs_total',
    help: 'Sign requests by key, algorithm and outcome (ok or the refusal reason)',
    labelNames: ['key', 'algorithm', 'outcome'] as const,
    registers: [this.registry],
  });
  readonly signSeconds = new Histogram({
    name: 'signer_sign_duration_seconds',
    help: 'Sign request latency inside the service, by algorithm',
    labelNames: ['algorithm'] as const,
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [this.registry],
  });
  readonly hsmSeconds = new Histogram({
    name: 'signer_hsm_sign_duration_seconds',
    help: 'Time a PKCS#11 sign call holds a session',
    buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1],
    registers: [this.registry],
  });
  readonly cosignerFaults = new Counter({
    name: 'signer_cosigner_faults_total',
    help: 'Cosigners left out of a threshold signature, by cosigner id and why (deadline, unavailable, invalid share, refusal reason)',
    labelNames: ['cosigner', 'why'] as const,
    registers: [this.registry],
  });
  readonly hsmErrors = new Counter({
    name: 'signer_hsm_errors_total',
    help: 'PKCS#11 failures by CKR code name and class',
    labelNames: ['ckr', 'class'] as const,
    registers: [this.registry],
  });
  readonly sessionsInUse = new Gauge({
    name: 'signer_hsm_sessions_in_use',
    help: 'HSM sessions currently running an operation',
    registers: [this.registry],
  });
  readonly sessionsTotal = new Gauge({
    name: 'signer_hsm_sessions',
    help: 'HSM sessions open in the pool',
    registers: [this.registry],
  });
  readonly sessionWaiters = new Gauge({
    name: 'signer_hsm_session_waiters',
    help: 'Operations queued for a free HSM session, by lane',
    labelNames: ['lane'] as const,
    registers: [this.registry],
  });
  readonly hsmUp = new Gauge({
    name: 'signer_hsm_up',
    help: '1 while the token is reachable and logged in',
    registers: [this.registry],
  });
  readonly hsmLoginBlocked = new Gauge({
    name: 'signer_hsm_login_blocked',
    help: '1 while the token refused the PIN and no login is attempted until an operator acts (SIGHUP or restart)',
    registers: [this.registry],
  });
  readonly hsmDeadlines = new Counter({
    name: 'signer_hsm_deadline_exceeded_total',
    help:
      'Requests refused because no HSM session became free in time (session_wait) ' +
      'or an HSM call did not return in time (call)',
    labelNames: ['stage'] as const,
    registers: [this.registry],
  });
  readonly sessionsSuspect = new Gauge({
    name: 'signer_hsm_sessions_suspect',
    help: 'HSM sessions whose call exceeded its deadline; each stays out of the pool until its call returns',
    registers: [this.registry],
  });

  readonly storeRolledBack = new Gauge({
    name: 'signer_store_rolled_back',
    help: '1 while signing is stopped because the database lost audit entries signatures were released under',
    registers: [this.registry],
  });
  readonly rollbackMarkWrites = new Counter({
    name: 'signer_rollback_mark_writes_total',
    help: 'Writes of the released audit head to the HSM mark object (one per commit group), by outcome',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  });
  readonly policiesInvalid = new Gauge({
    name: 'signer_policies_invalid',
    help: 'Stored policies that do not compile; their keys are refused (POLICY_UNAVAILABLE) until fixed',
    registers: [this.registry],
  });
  readonly auditInconsistent = new Gauge({
    name: 'signer_audit_inconsistent',
    help: '1 once the audit log was found not to extend the last signed checkpoint (signing stopped)',
    registers: [this.registry],
  });

  constructor(opts: { processMetrics?: boolean } = {}) {
    if (opts.processMetrics) collectDefaultMetrics({ register: this.registry });
  }
}
