import { readFileSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import { ConfigError } from '../config/load.js';
import type { Config } from '../config/schema.js';
import type { Logger } from '../log.js';
import { CrlError } from './crl.js';
import { parseCertificates } from './peer-cert.js';
import { PeerTrust, type PinConfig } from './peer-trust.js';
import { TrustReloader } from './reload.js';

/**
 * Which CA file anchors each kind of link. Each falls back to `tls.caFile`, so a deployment with
 * one CA names it once; a deployment that separates them can rotate one CA without the others.
 */
export function caFileFor(tls: Config['tls'], link: 'client' | 'peer' | 'identity'): string {
  const own = { client: tls.clientCaFile, peer: tls.peerCaFile, identity: tls.identityCaFile }[link];
  return own ?? tls.caFile;
}

/** Mutual TLS server credentials: this server's pair, and client certificates from `caFile`. */
export function serverCredentials(tls: Config['tls'], caFile: string): grpc.ServerCredentials {
  const pair = { private_key: readFileSync(tls.keyFile), cert_chain: readFileSync(tls.certFile) };
  return grpc.ServerCredentials.createSsl(readFileSync(caFile), [pair], true);
}

/** Server options every server here takes: connections live at most `connections.maxAgeMs`. */
export function connectionOptions(config: Config): grpc.ServerOptions {
  return {
    'grpc.max_connection_age_ms': config.connections.maxAgeMs,
    'grpc.max_connection_age_grace_ms': config.connections.maxAgeGraceMs,
  };
}

/** The per-call certificate checks of a server whose clients come from `caFile`. */
export function peerTrust(config: Config, caFile: string, pins: PinConfig, log: Logger): PeerTrust {
  const cas = parseCertificates(readFileSync(caFile, 'utf8'));
  if (!cas.length) throw new ConfigError(`${caFile} holds no PEM certificate`);
  return new PeerTrust(cas, pins, config.tls.crlFile, log);
}

/**
 * Loads the CRL into `trust` and sets up its reloads (SIGHUP, file watch). A CRL that does not
 * verify fails the start as a ConfigError.
 */
export async function startReloader(o: {
  config: Config;
  trust: PeerTrust;
  configFile: string | undefined;
  apply: (config: Config) => void;
  /** After each reload that applied (TrustReloadOptions.onApplied). */
  onApplied?: () => void;
  log: Logger;
}): Promise<TrustReloader> {
  const { tls } = o.config;
  try {
    return await TrustReloader.start({
      trust: o.trust,
      configFile: o.configFile,
      crlFile: tls.crlFile,
      watch: tls.watch,
      apply: o.apply,
      ...(o.onApplied ? { onApplied: o.onApplied } : {}),
      log: o.log,
    });
  } catch (e) {
    if (e instanceof CrlError) throw new ConfigError(`tls.crlFile: ${e.message}`);
    throw e;
  }
}
