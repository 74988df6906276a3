import * as grpc from '@grpc/grpc-js';
import { HealthImplementation } from 'grpc-health-check';
import type { Config } from '../infra/config/schema.js';
import { caFileFor, connectionOptions, peerTrust, serverCredentials, startReloader } from '../infra/grpc/server-tls.js';
import { Hsm } from '../infra/hsm/hsm.js';
import type { Logger } from '../infra/log.js';
import { mountWitness, WITNESS_SERVICE } from '../infra/witness/mount.js';

/**
 * The witness role: one token, one SQLite file of cosigned heads, signer.v1.Witness over mTLS.
 * Callers are trusted as a signer trusts its clients: the client CA (`tls.clientCaFile`, default
 * `tls.caFile`), the CRL (`tls.crlFile`) and `witnessing.clientPins` checked at every call, and
 * reloaded with `witnessing.clients` on SIGHUP or a change of either file.
 */
export async function startWitness(
  config: Config,
  log: Logger,
  opts: { configFile?: string } = {},
): Promise<{ port: number; hsm: Hsm; reload(trigger: string): Promise<boolean>; close(): Promise<void> }> {
  const section = config.witnessing!;
  const dbPath = section.dbPath ?? ('sqlite' in config.store ? config.store.sqlite.path : undefined);
  if (!dbPath) throw new Error('a witness keeps its heads in an sqlite file');
  Object.assign(process.env, config.hsm.moduleEnv);
  const caFile = caFileFor(config.tls, 'client');
  const trust = peerTrust(config, caFile, { pins: {}, requirePins: false }, log);
  let clients: ReadonlySet<string> = new Set();
  const apply = (c: Config) => {
    clients = new Set(c.witnessing?.clients ?? []);
    trust.setPins({ pins: c.witnessing?.clientPins ?? {}, requirePins: c.tls.requirePins });
  };
  apply(config);
  const reloader = await startReloader({ config, trust, configFile: opts.configFile, apply, log });
  const hsm = await Hsm.open({ ...config.hsm, log });
  const server = new grpc.Server(connectionOptions(config));
  const witness = await mountWitness(server, section, dbPath, hsm, log, { trust, clients: () => clients });
  const health = new HealthImplementation({ '': 'SERVING', [WITNESS_SERVICE]: 'SERVING' });
  health.addToServer(server);
  hsm.onHealthChange((up) => ['', WITNESS_SERVICE].forEach((s) => health.setStatus(s, up ? 'SERVING' : 'NOT_SERVING')));
  const creds = serverCredentials(config.tls, caFile);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(config.listen, creds, (err, p) => (err ? reject(err) : resolve(p))),
  );
  log.info({ listen: config.listen, port, witness: section.name }, 'witness started');
  return {
    port,
    hsm,
    reload: (trigger) => reloader.reload(trigger),
    async close() {
      reloader.close();
      await new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
      await hsm.close();
      witness.close();
      log.info('witness stopped');
    },
  };
}
