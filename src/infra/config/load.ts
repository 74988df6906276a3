import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { type Config, configSchema } from './schema.js';

export class ConfigError extends Error {
  override name = 'ConfigError';
}

/**
 * Reads and validates a JSON config file. Every problem is reported with the path of the field
 * that caused it; relative file paths are resolved against the config file's directory.
 */
export function loadConfig(file: string): Config {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new ConfigError(`cannot read config ${file}: ${(e as Error).message}`);
  }
  return parseConfig(raw, dirname(resolve(file)));
}

export function parseConfig(raw: unknown, baseDir = process.cwd()): Config {
  const parsed = configSchema.safeParse(raw);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `  ${i.path.join('.') || '(root)'}: ${i.message}`);
    throw new ConfigError(`invalid config:\n${lines.join('\n')}`);
  }
  const c = parsed.data;
  const abs = (p: string) => resolve(baseDir, p);
  const tlsFiles = [
    'caFile',
    'certFile',
    'keyFile',
    'clientCaFile',
    'peerCaFile',
    'identityCaFile',
    'crlFile',
  ] as const;
  for (const f of tlsFiles) {
    const p = c.tls[f];
    if (p !== undefined) c.tls[f] = abs(p);
  }
  if ('sqlite' in c.store) c.store.sqlite.path = abs(c.store.sqlite.path);
  for (const m of Object.values(c.admins?.members ?? {}))
    if (m.certificateFile !== undefined) m.certificateFile = abs(m.certificateFile);
  return c;
}
