import { Command } from 'commander';
import { ConfigError, loadConfig } from './config/load.js';
import { HsmStartError } from './hsm/hsm.js';
import { createLogger } from './log.js';
import { startSigner } from './server/server.js';

const program = new Command()
  .name('hsm-signer')
  .description('gRPC signing service with keys in a PKCS#11 HSM')
  .requiredOption('-c, --config <file>', 'JSON config file')
  .parse();

const { config: file } = program.opts<{ config: string }>();

try {
  const config = loadConfig(file);
  const log = createLogger(config.log.level);
  const signer = await startSigner(config, log);
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'stopping');
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
} catch (e) {
  if (e instanceof ConfigError || e instanceof HsmStartError) {
    process.stderr.write(`hsm-signer: ${e.message}\n`);
    process.exit(2);
  }
  throw e;
}
