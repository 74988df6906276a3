import { SignerError } from '../../core/errors.js';
import type { KeyRecord } from '../../infra/store/store.js';
import type { KeyRegistry } from './registry.js';

/**
 * For a sweep: a retired (verify-only or disabled) version named explicitly, with the active
 * version whose address it may pay (src/core/policy/sweep.ts decides what it may sign). Null
 * when `version` is 0 or the active one, or the key is unknown: an ordinary request, refused or
 * signed as before (`KeyRegistry.forSigning`). KEY_VERSION_NOT_FOUND for a missing or destroyed
 * version; KEY_VERSION_RETIRED when the key has no active version to sweep to.
 */
export function sweepVersions(
  keys: Pick<KeyRegistry, 'has' | 'history'>,
  keyId: string,
  version: number,
): { retired: KeyRecord; active: KeyRecord } | null {
  if (version === 0 || !keys.has(keyId)) return null;
  const all = keys.history(keyId);
  const k = all.find((v) => v.version === version);
  if (!k || k.state === 'destroyed')
    throw new SignerError('KEY_VERSION_NOT_FOUND', `key "${keyId}" has no version ${version}`, { keyId });
  if (k.state === 'active') return null;
  const active = all.find((v) => v.state === 'active');
  if (!active) {
    const why = `key "${keyId}" version ${version} is ${k.state} and the key has no active version to sweep to`;
    throw new SignerError('KEY_VERSION_RETIRED', why, { keyId, version: String(version), state: k.state });
  }
  return { retired: k, active };
}
