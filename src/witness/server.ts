import * as grpc from '@grpc/grpc-js';
import { HealthImplementation } from 'grpc-health-check';
import { encodeVerifierKey, SIG_TYPE_COSIGNATURE_V1 } from '../core/audit/note.js';
import type { Config } from '../infra/config/schema.js';
import { signerV1 } from '../infra/grpc/proto.js';
import { caFileFor, connectionOptions, peerTrust, serverCredentials, startReloader } from '../infra/grpc/server-tls.js';
import { Hsm } from '../infra/hsm/hsm.js';
import type { Logger } from '../infra/log.js';
import { type WitnessCallers, witnessGrpc } from './grpc.js';
import { ensureWitnessKey } from './key.js';
import { WitnessService } from './service.js';
import { WitnessStore } from './store.js';

export const WITNESS_SERVICE = 'signer.v1.Witness';

/**
 * Adds signer.v1.Witness to `server`, with this node's key (found or generated in `hsm`'s token)
 * and its own store at `dbPath`. Used by the witness role and by every cosigner; callers are
 * checked by the hosting server's `trust` (validity, CRL, pins) at every call, then by CN.
 */
export async function mountWitness(
  server: grpc.Server,
  section: NonNullable<Config['witnessing']>,
  dbPath: string,
  hsm: Hsm,
  log: Logger,
  callers: WitnessCallers,
): Promise<{ service: WitnessService; close(): void }> {
  const key = await ensureWitnessKey(hsm);
  const store = new WitnessStore(dbPath);
  const logs = new Map(section.logs.map((l) => [l.origin, new Uint8Array(Buffer.from(l.publicKey, 'base64'))]));
  const service = new WitnessService({ name: section.name, logs, key, store, log });
  server.addService(signerV1.Witness.service, witnessGrpc(service, callers, log));
  // What the signer's witness.endpoints[] needs, and the vkey auditors pass to verify-audit.
  log.info(
    {
      witness: section.name,
      publicKey: Buffer.from(key.publicKey).toString('base64'),
      vkey: encodeVerifierKey(section.name, SIG_TYPE_COSIGNATURE_V1, key.publicKey),
      origins: [...logs.keys()],
    },
    'witness key',
  );
  return { service, close: () => store.close() };
}

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
