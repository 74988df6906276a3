import { type FSWatcher, watch } from 'node:fs';
import { basename, dirname } from 'node:path';
import { ConfigError, loadConfig } from '../config/load.js';
import type { Config } from '../config/schema.js';
import type { Logger } from '../log.js';
import type { PeerTrust } from './peer-trust.js';

export interface TrustReloadOptions {
  trust: PeerTrust;
  /** The config file to read clients and pins from again; absent: they stay as started. */
  configFile?: string;
  /** The CRL file (tls.crlFile), watched with the config file. */
  crlFile?: string;
  /** Watch both files (tls.watch); SIGHUP reloads either way. */
  watch: boolean;
  /** Applies the reloadable part (clients, pins, peers) of a config that parsed. */
  apply: (config: Config) => void;
  /**
   * Runs after each reload that applied, once the new CRL and pins are in force: open streams,
   * which make no further calls, are checked again here (src/signer/grpc/watch.ts).
   */
  onApplied?: () => void;
  log: Logger;
}

/** Editors and `mv` deliver a change as several events; one reload follows the last of them. */
const DEBOUNCE_MS = 100;

/**
 * Reloads what decides whether a peer certificate may be used (the CRL, and the clients and
 * pins of the config file) without a restart: on `reload` (SIGHUP) and, when watching, when
 * either file changes. Reloads run one at a time and apply all or nothing: a config that does
 * not parse or a CRL that does not verify leaves the previous trust in force and is logged as
 * an error. Only the access part of the config reloads; CA files, the CRL file's path and
 * everything else are read at start.
 */
export class TrustReloader {
  private readonly watchers: FSWatcher[] = [];
  private timer: NodeJS.Timeout | undefined;
  private chain: Promise<unknown> = Promise.resolve();

  private constructor(private readonly o: TrustReloadOptions) {}

  /** Loads the CRL (a bad one fails the start) and starts watching. */
  static async start(o: TrustReloadOptions): Promise<TrustReloader> {
    const r = new TrustReloader(o);
    const crl = await o.trust.readCrl();
    if (crl) o.trust.setRevocations(crl);
    if (o.watch) r.watch();
    return r;
  }

  /** Reads the files again and applies them; resolves whether it did (failures are logged). */
  reload(trigger: string): Promise<boolean> {
    const next = this.chain.then(() => this.once(trigger));
    this.chain = next;
    return next;
  }

  close(): void {
    clearTimeout(this.timer);
    for (const w of this.watchers.splice(0)) w.close();
  }

  private async once(trigger: string): Promise<boolean> {
    const { trust, configFile, log } = this.o;
    try {
      const config = configFile ? loadConfig(configFile) : undefined;
      const crl = await trust.readCrl();
      if (config) this.o.apply(config);
      if (crl) trust.setRevocations(crl);
      log.info({ trigger, config: Boolean(config), revokedSerials: crl?.entries }, 'trust reloaded');
    } catch (e) {
      log.error({ trigger, problem: describe(e) }, 'trust reload failed; the previous CRL and clients stay in force');
      return false;
    }
    try {
      this.o.onApplied?.();
    } catch (e) {
      log.error({ trigger, err: e }, 'checking open streams against the reloaded trust failed');
    }
    return true;
  }

  /**
   * Watches the directories, not the files: a file replaced by rename (the safe way to publish
   * a CRL) is a new inode that a watch on the old one would never report.
   */
  private watch(): void {
    const byDir = new Map<string, Set<string>>();
    for (const f of [this.o.configFile, this.o.crlFile]) {
      if (!f) continue;
      const names = byDir.get(dirname(f)) ?? new Set<string>();
      byDir.set(dirname(f), names.add(basename(f)));
    }
    for (const [dir, names] of byDir) {
      const w = watch(dir, { persistent: false }, (_event, name) => {
        if (name !== null && !names.has(name.toString())) return;
        clearTimeout(this.timer);
        this.timer = setTimeout(() => void this.reload(`file change (${name})`), DEBOUNCE_MS);
        this.timer.unref();
      });
      w.on('error', (e) => {
        this.o.log.error({ dir, problem: e.message }, 'watching for CRL and config changes failed; use SIGHUP');
      });
      this.watchers.push(w);
    }
  }
}

/**
 * A JSON syntax error quotes the text around it, and the config holds the HSM URI (which may
 * carry a PIN): such a message is cut to its file name before it reaches the log.
 */
function describe(e: unknown): string {
  const msg = (e as Error).message;
  if (e instanceof ConfigError && msg.startsWith('cannot read config')) {
    return `${msg.slice(0, msg.indexOf(': '))}: not readable as JSON`;
  }
  return msg;
}
