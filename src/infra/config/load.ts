import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { type CompiledPolicy, compilePolicy, selectPolicy } from '../../core/policy/schema.js';
import { rotationSafe } from '../../core/policy/sweep.js';
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
  const stranding = strandingSchedules(c);
  if (stranding.length) throw new ConfigError(`invalid config:\n${stranding.map((l) => `  ${l}`).join('\n')}`);
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

/**
 * A scheduled rotation of a key that signs EVM transactions moves its address every time; the
 * funds left at (or later sent to) the old address can only leave through a sweep, so such a
 * schedule needs a sweep rule in the key's policy (src/core/policy/sweep.ts). The config does not
 * know key algorithms: a key counts as EVM when its config policy allows EVM transactions (the
 * scheduler checks the real key and its current policy again at every fire). Policies that do not
 * compile are reported by the signer at start, not here.
 */
function strandingSchedules(c: Config): string[] {
  const compiled = Object.entries(c.policies).flatMap(([name, doc]): CompiledPolicy[] => {
    try {
      return [compilePolicy(doc, name)];
    } catch {
      return [];
    }
  });
  return Object.entries(c.rotation.schedules).flatMap(([keyId, s]) => {
    if (s.action !== 'rotate') return [];
    const p = selectPolicy(compiled, keyId);
    if (!p || rotationSafe(p)) return [];
    return [
      `rotation.schedules.${keyId}: rotating an EVM key strands the old address's funds; ` +
        `policies.${p.name}.sweep is required (what retired versions may sweep to the active address)`,
    ];
  });
}
