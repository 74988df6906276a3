/**
 * A cosigner that breaks the protocol on purpose, for robustness tests: the real cosigner with
 * one fault switched on (`--fault corrupt-sign-share | bad-proof | bad-share`). Production starts
 * cosigners through src/main.ts, which never sets a fault.
 */
import { Command } from 'commander';
import { startCosigner } from '../src/cosigner/server.js';
import { loadConfig } from '../src/infra/config/load.js';
import { createLogger } from '../src/infra/log.js';

const { config: file, fault } = new Command()
  .requiredOption('--config <file>')
  .requiredOption('--fault <fault>')
  .parse()
  .opts<{ config: string; fault: string }>();
const faults = {
  'corrupt-sign-share': { corruptSignShare: true },
  'bad-proof': { badProof: true },
  'bad-share': { badShare: true },
}[fault];
if (!faults) throw new Error(`unknown fault ${fault}`);
const config = loadConfig(file);
const log = createLogger(config.log.level);
const node = await startCosigner(config, log, { faults });
process.on('SIGTERM', () => void node.close().then(() => process.exit(0)));
