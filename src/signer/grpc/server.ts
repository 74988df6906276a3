import { createServer, type Server as HttpServer } from 'node:http';
import { hostname } from 'node:os';
import * as grpc from '@grpc/grpc-js';
import { ReflectionService } from '@grpc/reflection';
import { HealthImplementation } from 'grpc-health-check';
import type { AccessDocument } from '../../core/admin/access.js';
import { eventDraft } from '../../core/audit/draft.js';
import { MAX_VELOCITY_WINDOW_SECONDS } from '../../core/policy/schema.js';
import { accessFromConfig } from '../../infra/config/access.js';
import { loadAdmins } from '../../infra/config/admins.js';
import { ConfigRequestKeys } from '../../infra/config/request-keys.js';
import type { Config } from '../../infra/config/schema.js';
import { Authorizer } from '../../infra/grpc/auth.js';
import { packageDefinition, signerV1 } from '../../infra/grpc/proto.js';
import { guardService } from '../../infra/grpc/request-guard.js';
import {
  caFileFor,
  connectionOptions,
  peerTrust,
  serverCredentials,
  startReloader,
} from '../../infra/grpc/server-tls.js';
import { Hsm, type Pkcs11 } from '../../infra/hsm/hsm.js';
import type { Logger } from '../../infra/log.js';
import { Metrics } from '../../infra/metrics.js';
import { openStore } from '../../infra/store/open.js';
import { checkpointSigner } from '../audit/audit-key.js';
import { Checkpointer } from '../audit/checkpointer.js';
import { openRollbackGuard } from '../audit/rollback-setup.js';
import { trustedHeads } from '../audit/trusted-heads.js';
import { attachWitnesses } from '../audit/witnesses.js';
import { KeyRegistry } from '../keys/registry.js';
import { AccessRegistry } from '../policy/access-registry.js';
import { FreezeLedger } from '../policy/freeze-ledger.js';
import { Proposals } from '../policy/proposals.js';
import { PolicyRegistry } from '../policy/registry.js';
import { RotationScheduler } from '../rotation/scheduler.js';
import { SignFlow } from '../signing/flow.js';
import { SigningService } from '../signing/service.js';
import { Ceremonies } from '../threshold/ceremonies.js';
import { CosignerClients } from '../threshold/cosigner-client.js';
import { PolicyEvidence } from '../threshold/policy-evidence.js';
import { ThresholdSigner } from '../threshold/threshold-signer.js';
import { auditHandlers } from './audit-service.js';
import { keyAdminHandlers } from './keyadmin-service.js';
import { edgeGuard, serverOptions } from './limits.js';
import { RequestSignatures } from './request-signature.js';
import { signerHandlers } from './signer-service.js';
import { KeyWatchers } from './watch.js';

export interface RunningSigner {
  /** The bound gRPC port (useful when config listens on port 0). */
  port: number;
  metricsPort?: number;
  hsm: Hsm;
  keys: KeyRegistry;
  metrics: Metrics;
  /** The audit checkpointer (tests trigger a checkpoint; other components hook onSigned). */
  checkpointer: Checkpointer;
  /** Reloads the CRL and the config file's clients, pins and key access (SIGHUP). */
  reload(trigger: string): Promise<boolean>;
  close(): Promise<void>;
}

const SERVICES = ['', 'signer.v1.Signer', 'signer.v1.KeyAdmin', 'signer.v1.Audit'];

/**
 * Idempotency records are kept past the longest freshness window a policy may set (an hour)
 * on both sides of the clock, so a request still fresh enough to pass can never miss its record.
 */
const REPLAY_RETENTION_MS = 2 * 3600_000 + 60_000;

/** How often stored (interrupted) threshold ceremonies are tried again. */
const CEREMONY_RETRY_MS = 15_000;

/**
 * Opens the HSM and the store, then serves Signer, KeyAdmin, health and reflection over mutual
 * TLS. Health follows the HSM: NOT_SERVING while the token is unavailable.
 */
export async function startSigner(
  config: Config,
  log: Logger,
  opts: { wrapModule?: (p11: Pkcs11) => Pkcs11; clock?: () => Date; configFile?: string } = {},
): Promise<RunningSigner> {
  Object.assign(process.env, config.hsm.moduleEnv);
  const metrics = new Metrics({ processMetrics: true });
  const creds = serverCredentials(config.tls, caFileFor(config.tls, 'client'));
  // Clients' certificates are checked again at every call; the CRL and clients reload.
  const trust = peerTrust(config, caFileFor(config.tls, 'client'), { pins: {}, requirePins: false }, log);
  const auth = new Authorizer(trust, config.clients, config.keyAccess, config.tls.requirePins);
  // Client request signatures; keys registered in the config (later: in the store, under a quorum).
  const signatures = new RequestSignatures(config, new ConfigRequestKeys(config.clients));
  const unsigned = signatures.unsignedClients(config.clients);
  if (unsigned.length > 0)
    log.warn({ clients: unsigned }, 'these signer clients may send unsigned requests (requireSignedRequests is off)');
  // Under an admin quorum, clients and key access come from the store (AccessRegistry, set
  // below); a reload then only changes what the file alone decides (pins required or not).
  let access: AccessRegistry | undefined;
  let fileTrust = { requirePins: config.tls.requirePins, requireSignedRequests: config.requireSignedRequests };
  const applyAccess = (d: AccessDocument) => {
    auth.update(d.clients, d.keyAccess, fileTrust.requirePins);
    signatures.update({ clients: d.clients, requireSignedRequests: fileTrust.requireSignedRequests });
  };
  const apply = (c: Config) => {
    fileTrust = { requirePins: c.tls.requirePins, requireSignedRequests: c.requireSignedRequests };
    if (access) return applyAccess(access.current().document ?? { clients: {}, keyAccess: {} });
    auth.update(c.clients, c.keyAccess, c.tls.requirePins);
    signatures.update(c);
  };
  // Open streams are authorized again after each reload (set once the watchers exist).
  let onTrustChange = () => {};
  const onApplied = () => onTrustChange();
  const reloader = await startReloader({ config, trust, configFile: opts.configFile, apply, onApplied, log });
  const hsm = await Hsm.open({ ...config.hsm, metrics, log, wrapModule: opts.wrapModule });
  const store = await openStore(config.store, log);
  // Before anything is served: a database that lost released entries stops signing (health set below).
  let onRollback = () => {};
  const rollback = await openRollbackGuard(hsm, store, config.rollback, metrics, () => onRollback(), log);
  const cosigners = config.threshold ? new CosignerClients(config.threshold, caFileFor(config.tls, 'peer')) : undefined;
  const keys = new KeyRegistry(
    hsm,
    store,
    log,
    cosigners && new Ceremonies(cosigners, config.threshold!, store, log, store),
  );
  await keys.load();
  // A DKG or refresh a crash interrupted is finished or undone before anything signs.
  await keys.recoverCeremonies();
  keys.startRefresh(config.refreshMs);
  const auditKey = await keys.serviceKey('_audit', 'ed25519');
  const checkpointer = new Checkpointer(
    store,
    { keyId: auditKey.keyId, version: auditKey.version, publicKey: auditKey.publicKey },
    checkpointSigner(hsm, auditKey),
    {
      everyEntries: config.audit.checkpointEveryEntries,
      everyMs: config.audit.checkpointEveryMs,
      origin: config.audit.origin ?? `hsm-signer/${hostname()}`,
      log,
    },
  );
  // Witnesses cosign the checkpointer's C2SP notes, each proven consistent with their last one.
  const witnesses = config.witness
    ? attachWitnesses(checkpointer, config.witness, config.tls.caFile, (a, b) => store.consistencyProof(a, b), log)
    : undefined;
  // From the largest head kept outside the database (marks, witnesses) or a verified stored note.
  const origin = checkpointer.origin;
  const external = await trustedHeads({
    ...(config.rollback.mark ? { hsm } : {}),
    ...(witnesses ? { witnesses: witnesses.publisher } : {}),
    origin,
    log: checkpointer.verifier,
    logger: log,
  });
  await checkpointer.seed(external);
  await store.appendAudit([eventDraft('service.start', new Date(), null, { intent: { listen: config.listen } })]);
  const admins = loadAdmins(config.admins);
  // Under a quorum, freezes are also read from the audit log, checked against the signed head.
  const ledger = admins && new FreezeLedger(store, admins, () => checkpointer.latest());
  const policies = new PolicyRegistry(store, log, admins, metrics, ledger);
  // Config policies that changed are stored as new versions, each with its audit entry.
  await policies.seed(config.policies, new Date());
  if (admins) {
    // The config's clients seed the access document's first version; later versions need the quorum.
    const onAccess = (d: AccessDocument) => {
      applyAccess(d);
      onTrustChange();
    };
    access = new AccessRegistry(store, admins, onAccess, log, ledger);
    await access.seed(accessFromConfig(config), new Date());
  }
  checkpointer.start();
  policies.startRefresh(config.refreshMs);
  // Approved proposals apply when due: checked at every refresh and whenever a read finds one due.
  const proposals = admins && new Proposals(store, policies, keys, admins, log, access);
  proposals?.start(config.refreshMs);
  // A cosigner left out of a signature is named in the metrics here, and in the audit log by
  // the sign flow, with the outcome of the request it failed (flow.ts).
  const thresholdSigner =
    cosigners &&
    new ThresholdSigner(
      cosigners,
      config.threshold!,
      (f) => metrics.cosignerFaults.inc({ cosigner: String(f.cosigner), why: f.why }),
      log,
      (k) => keys.history(k.keyId).find((v) => v.version === k.version) ?? k,
      // Each cosigner checks the governing policy version and its approvals itself.
      (() => {
        const evidence = new PolicyEvidence({
          recordForKey: (keyId) => policies.recordForKey(keyId),
          listProposals: () => store.listProposals(),
        });
        return (keyId: string) => evidence.forKey(keyId);
      })(),
    );
  const signing = new SigningService(hsm, keys, thresholdSigner);
  const rollbackGate = rollback ? { gate: rollback } : {};
  const flow = new SignFlow({
    signing,
    store,
    policies,
    keys,
    log,
    leaseMs: config.replay.leaseMs,
    ...rollbackGate,
    ...(opts.clock ? { clock: opts.clock } : {}),
  });
  // Versions whose overlap ended are disabled (and audited) by whichever replica sees it first.
  const retirer = setInterval(() => {
    keys.retireDue().catch((e) => log.warn({ err: (e as Error).message }, 'retiring key versions failed'));
  }, config.refreshMs);
  retirer.unref();
  // A ceremony left stored because a cosigner was unreachable is finished once it is back
  // (one query when there is none; never concurrently with a ceremony: job lock + registry order).
  const settler = setInterval(() => void keys.recoverCeremonies(), CEREMONY_RETRY_MS);
  settler.unref();
  const pruner = setInterval(() => {
    const now = Date.now();
    store
      .prune({
        requests: new Date(now - REPLAY_RETENTION_MS),
        velocity: new Date(now - MAX_VELOCITY_WINDOW_SECONDS * 1000),
      })
      .catch((e) => log.error({ err: e }, 'pruning replay records failed'));
  }, 60_000);
  pruner.unref();
  // Scheduled rotation; a fire missed while down is caught up here, before serving.
  const scheduler = new RotationScheduler({
    keys,
    store,
    schedules: config.rotation.schedules,
    overlapMs: config.rotation.overlapSeconds * 1000,
    log,
    policies,
  });
  await scheduler.start();

  const limits = config.limits;
  const server = new grpc.Server({ ...serverOptions(limits), ...connectionOptions(config) });
  const watchers = new KeyWatchers(keys, limits.maxWatchStreamsPerClient, log);
  onTrustChange = () => watchers.revalidate();
  const guard = edgeGuard(limits, auth, log);
  const serve = (def: grpc.ServiceDefinition, impl: grpc.UntypedServiceImplementation) => {
    const g = guardService(def, impl, guard);
    server.addService(g.definition, g.implementation);
  };
  const gate = () => checkpointer.assertConsistent();
  serve(
    signerV1.Signer.service,
    signerHandlers({
      auth,
      keys,
      flow,
      audit: store,
      metrics,
      watchers,
      signatures,
      log,
      gate,
      batchResponseBytes: limits.batchResponseBytes,
      release: rollback,
    }),
  );
  const overlapMs = config.rotation.overlapSeconds * 1000;
  const admin = keyAdminHandlers({ auth, keys, policies, jobs: store, overlapMs, proposals, log });
  serve(signerV1.KeyAdmin.service, admin);
  serve(signerV1.Audit.service, auditHandlers({ auth, store, checkpointer, auditKeys: () => [checkpointer.key], log }));
  const serving = () => hsm.up && !rollback?.rolledBack && !checkpointer.inconsistency;
  const health = new HealthImplementation(
    Object.fromEntries(SERVICES.map((s) => [s, serving() ? 'SERVING' : 'NOT_SERVING'])),
  );
  health.addToServer(server);
  new ReflectionService(packageDefinition).addToServer(server);
  // NOT_SERVING while the token is unavailable or the store rolled back, and for good once the
  // audit log is inconsistent.
  const setHealth = () => SERVICES.forEach((s) => health.setStatus(s, serving() ? 'SERVING' : 'NOT_SERVING'));
  hsm.onHealthChange(setHealth);
  onRollback = setHealth;
  const inconsistencyMetric = (i = checkpointer.inconsistency) => {
    if (i?.rolledBack) metrics.storeRolledBack.set(1);
    else metrics.auditInconsistent.set(i ? 1 : 0);
  };
  checkpointer.onInconsistent((i) => {
    inconsistencyMetric(i);
    setHealth();
  });
  inconsistencyMetric();
  setHealth();

  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(config.listen, creds, (err, p) => (err ? reject(err) : resolve(p))),
  );

  let http: HttpServer | undefined;
  let metricsPort: number | undefined;
  if (config.metrics) {
    http = createServer(async (req, res) => {
      if (req.url !== '/metrics') return void res.writeHead(404).end();
      res.setHeader('content-type', metrics.registry.contentType);
      res.end(await metrics.registry.metrics());
    });
    const [host, p] = splitHostPort(config.metrics.listen);
    await new Promise<void>((resolve) => http!.listen(p, host, resolve));
    metricsPort = (http.address() as { port: number }).port;
  }
  log.info(
    { listen: config.listen, port, metricsPort, keys: keys.list().length, sessions: config.hsm.sessions },
    'signer started',
  );

  return {
    port,
    metricsPort,
    hsm,
    keys,
    metrics,
    checkpointer,
    reload: (trigger) => reloader.reload(trigger),
    async close() {
      reloader.close();
      // Watchers never end on their own; calls still running after the grace are cancelled.
      watchers.close();
      await new Promise<void>((resolve) => {
        const force = setTimeout(() => server.forceShutdown(), limits.shutdownGraceMs);
        server.tryShutdown(() => {
          clearTimeout(force);
          resolve();
        });
      });
      http?.close();
      clearInterval(pruner);
      clearInterval(retirer);
      clearInterval(settler);
      await scheduler.stop();
      policies.stop();
      await proposals?.stop();
      keys.stop();
      await checkpointer.stop();
      // Fails when the log was cut or rewritten under us (the tree refuses): still stop.
      await store
        .appendAudit([eventDraft('service.stop', new Date(), null)])
        .catch((e) => log.error({ err: e }, 'could not audit the stop'));
      await checkpointer.checkpointHead().catch((e) => log.error({ err: e }, 'final audit checkpoint failed'));
      await witnesses?.drain();
      // Finalising while calls run crashes SoftHSM: Hsm.close drains the pool first, and the
      // rollback mark's writer thread (its own session) is ended before.
      await rollback?.close();
      await hsm.close();
      cosigners?.close();
      await store.close();
      log.info('signer stopped');
    },
  };
}

function splitHostPort(s: string): [string, number] {
  const i = s.lastIndexOf(':');
  return [s.slice(0, i), Number(s.slice(i + 1))];
}
