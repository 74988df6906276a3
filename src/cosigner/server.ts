import * as grpc from '@grpc/grpc-js';
import { HealthImplementation } from 'grpc-health-check';
import { loadAdmins } from '../infra/config/admins.js';
import type { Config } from '../infra/config/schema.js';
import { PeerAuthorizer } from '../infra/grpc/auth.js';
import { signerV1 } from '../infra/grpc/proto.js';
import { caFileFor, connectionOptions, peerTrust, serverCredentials, startReloader } from '../infra/grpc/server-tls.js';
import { Hsm } from '../infra/hsm/hsm.js';
import { ensureSealingKey } from '../infra/hsm/seal.js';
import type { Logger } from '../infra/log.js';
import { mountWitness, WITNESS_SERVICE } from '../infra/witness/mount.js';
import { type CosignerChecks, cosignerChecks } from './checks.js';
import { cosignerGrpc } from './grpc.js';
import { CosignerIdentity } from './identity.js';
import { type CosignerFaults, CosignerService } from './service.js';
import { CosignerStore } from './store.js';

export interface RunningCosigner {
  port: number;
  hsm: Hsm;
  /** Reloads the CRL and the config file's peers and peer pins (SIGHUP). */
  reload(trigger: string): Promise<boolean>;
  close(): Promise<void>;
}

const REQUEST_RETENTION_MS = 3 * 3600_000;

/** The token's AES key that seals this node's shares; created in the token on first start. */
export const SEALING_KEY_LABEL = 'hsm-signer/share-sealing';

/**
 * The cosigner role: one PKCS#11 token, one SQLite file of sealed shares and replay records, and
 * signer.v1.Cosigner over mutual TLS for the peers named in config. Nothing else is served.
 */
export async function startCosigner(
  config: Config,
  log: Logger,
  opts: { faults?: CosignerFaults; configFile?: string } = {},
): Promise<RunningCosigner> {
  const me = config.cosigner!;
  if (!('sqlite' in config.store)) throw new Error('a cosigner keeps its shares in an sqlite store');
  Object.assign(process.env, config.hsm.moduleEnv);
  // Coordinators' certificates are checked again at every call; the CRL and peers reload.
  const creds = serverCredentials(config.tls, caFileFor(config.tls, 'peer'));
  const trust = peerTrust(config, caFileFor(config.tls, 'peer'), { pins: {}, requirePins: false }, log);
  const peers = new PeerAuthorizer(trust, new Set());
  // The share checks exist once the store is open; a reload before that has nothing to update.
  let checks: CosignerChecks | undefined;
  const apply = (c: Config) => {
    peers.update(c.cosigner?.peers ?? [], c.cosigner?.peerPins ?? {}, c.tls.requirePins);
    checks?.apply(c);
  };
  apply(config);
  const onApplied = () => void checks?.reloadCrl();
  const reloader = await startReloader({ config, trust, configFile: opts.configFile, apply, onApplied, log });
  const hsm = await Hsm.open({ ...config.hsm, log });
  const sealKey = await ensureSealingKey(hsm, SEALING_KEY_LABEL);
  const identity = new CosignerIdentity(me.identity, caFileFor(config.tls, 'identity'), me.id);
  const store = new CosignerStore(config.store.sqlite.path);
  checks = await cosignerChecks(config, store, log);
  const server = new grpc.Server(connectionOptions(config));
  const faults = opts.faults ? { faults: opts.faults } : {};
  const { id, maxPooledNonces } = me;
  // The admins pinned here, not the signer's: the coordinator cannot present a quorum of its own.
  const admins = loadAdmins(config.admins);
  if (!admins)
    log.warn('no admins section: no committed share can be destroyed here (README "Destroying threshold shares")');
  const shareDestroyDelayMs = me.shareDestroyDelaySeconds * 1000;
  const service = new CosignerService({
    ...{ id, hsm, sealKey, store, identity, maxPooledNonces, log, checks, ...faults },
    ...{ admins, shareDestroyDelayMs },
  });
  server.addService(signerV1.Cosigner.service, cosignerGrpc(service, peers, log));
  // Every cosigner is also a witness of the signer's audit log, with its own key and file.
  const w = config.witnessing;
  // Its callers pass the cosigner's own certificate checks (peer CA, CRL, peer pins).
  const witnessClients = new Set(w?.clients ?? []);
  const callers = { trust, clients: () => witnessClients };
  const witness = w ? await mountWitness(server, w, w.dbPath!, hsm, log, callers) : undefined;
  const services = ['', 'signer.v1.Cosigner', ...(witness ? [WITNESS_SERVICE] : [])];
  const health = new HealthImplementation(Object.fromEntries(services.map((s) => [s, 'SERVING' as const])));
  health.addToServer(server);
  hsm.onHealthChange((up) => services.forEach((s) => health.setStatus(s, up ? 'SERVING' : 'NOT_SERVING')));
  // The signer keeps request records for two hours past freshness; the cosigner a little longer.
  const pruner = setInterval(() => {
    try {
      store.pruneRequests(new Date(Date.now() - REQUEST_RETENTION_MS));
      store.records.pruneGrants(new Date());
    } catch (e) {
      log.error({ err: e }, 'pruning cosigner request records failed');
    }
  }, 60_000);
  pruner.unref();
  // Ordered destructions are overwritten when due, checked at start and then often enough that
  // a share outlives its delay by at most a quarter of it (and at most a minute).
  const sweep = () => {
    try {
      service.sweepDestroyed();
    } catch (e) {
      log.error({ err: e }, 'overwriting destroyed shares failed');
    }
  };
  sweep();
  const sweeper = setInterval(sweep, Math.min(60_000, Math.max(250, shareDestroyDelayMs / 4)));
  sweeper.unref();
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(config.listen, creds, (err, p) => (err ? reject(err) : resolve(p))),
  );
  log.info({ listen: config.listen, port, cosigner: me.id }, 'cosigner started');
  return {
    port,
    hsm,
    reload: (trigger) => reloader.reload(trigger),
    async close() {
      reloader.close();
      await new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
      clearInterval(pruner);
      clearInterval(sweeper);
      service.close();
      await hsm.close();
      store.close();
      witness?.close();
      log.info('cosigner stopped');
    },
  };
}
