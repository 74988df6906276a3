import { Command } from 'commander';
import { ConfigError, loadConfig } from './infra/config/load.js';
import { HsmStartError } from './infra/hsm/hsm.js';
import { createLogger } from './infra/log.js';
import { NativeAddonError } from './signer/signing/secp256k1-native.js';

const program = new Command()
  .name('hsm-signer')
  .description('gRPC signing service with keys in a PKCS#11 HSM')
  .requiredOption('-c, --config <file>', 'JSON config file')
  .parse();

const { config: file } = program.opts<{ config: string }>();
const STOP_TIMEOUT_MS = 30_000;
// SIGHUP's default action ends the process: a reload sent while the signer starts is ignored instead.
let reload = () => {};
process.on('SIGHUP', () => reload());

try {
  const config = loadConfig(file);
  // Every HSM session runs its C_SignAsync on a libuv thread; with fewer threads than sessions
  // the extra sessions sit idle. The pool is created on first use, so this must come first.
  process.env.UV_THREADPOOL_SIZE ??= String(Math.max(4, config.hsm.sessions + 2));
  const log = createLogger(config.log.level);
  const signer =
    config.role === 'cosigner'
      ? await (await import('./cosigner/server.js')).startCosigner(config, log, { configFile: file })
      : config.role === 'witness'
        ? await (await import('./witness/server.js')).startWitness(config, log, { configFile: file })
        : await (await import('./signer/grpc/server.js')).startSigner(config, log, { configFile: file });
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'stopping');
    // Draining waits for HSM calls and clients; a stop that hangs (a token gone from under the
    // module, a peer that never closes) must not keep a half-stopped process around.
    setTimeout(() => {
      log.error({ afterMs: STOP_TIMEOUT_MS }, 'stop did not finish in time; exiting');
      process.exit(1);
    }, STOP_TIMEOUT_MS).unref();
    signer.close().then(
      () => process.exit(0),
      (e) => {
        log.error({ err: e }, 'unclean stop');
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
  // The operator's "I fixed it": the PIN file is read again, and a login that a refused PIN
  // stopped gets exactly one new attempt (src/infra/hsm/hsm.ts, retryLogin); revocations and pin
  // changes apply without a restart (failures are logged, the old trust kept).
  reload = () => {
    if (stopping) return;
    log.info({ signal: 'SIGHUP', hsm: signer.hsm.retryLogin() }, 'reloaded');
    void signer.reload('SIGHUP');
  };
} catch (e) {
  if (e instanceof ConfigError || e instanceof HsmStartError || e instanceof NativeAddonError) {
    process.stderr.write(`hsm-signer: ${e.message}\n`);
    process.exit(2);
  }
  throw e;
}
