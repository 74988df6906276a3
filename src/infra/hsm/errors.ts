import pkcs11js from 'pkcs11js';

/**
 * How a PKCS#11 failure affects the service:
 * - `token`: the token or device is gone or refuses us (removed, bad PIN); every session is dead.
 * - `session`: this session is unusable; the pool must re-open it.
 * - `request`: this call failed (bad handle, bad data); the pool is fine.
 */
export type FailureClass = 'token' | 'session' | 'request';

const TOKEN = new Set([
  pkcs11js.CKR_DEVICE_REMOVED,
  pkcs11js.CKR_DEVICE_ERROR,
  pkcs11js.CKR_TOKEN_NOT_PRESENT,
  pkcs11js.CKR_TOKEN_NOT_RECOGNIZED,
  pkcs11js.CKR_CRYPTOKI_NOT_INITIALIZED,
  pkcs11js.CKR_PIN_INCORRECT,
  pkcs11js.CKR_PIN_LOCKED,
  pkcs11js.CKR_PIN_EXPIRED,
  pkcs11js.CKR_SLOT_ID_INVALID,
]);
const SESSION = new Set([
  pkcs11js.CKR_SESSION_HANDLE_INVALID,
  pkcs11js.CKR_SESSION_CLOSED,
  pkcs11js.CKR_USER_NOT_LOGGED_IN,
  pkcs11js.CKR_DEVICE_MEMORY,
]);

/** PKCS#11 2.40's refusal to modify, copy or destroy a protected object; pkcs11js 2.1 lacks it. */
export const CKR_ACTION_PROHIBITED = 0x1b;

const names = new Map<number, string>([
  ...Object.entries(pkcs11js)
    .filter(([k, v]) => k.startsWith('CKR_') && typeof v === 'number')
    .map(([k, v]) => [v as number, k] as [number, string]),
  [CKR_ACTION_PROHIBITED, 'CKR_ACTION_PROHIBITED'],
]);

/** Why the HSM could not be opened at start; the message names the cause, never the PIN. */
export class HsmStartError extends Error {
  override name = 'HsmStartError';
}

/** The CKR_* name of a PKCS#11 error, or a generic label; safe to log (no data from the call). */
export function ckrName(e: unknown): string {
  const code = ckrCode(e);
  return code === undefined ? 'NATIVE_ERROR' : (names.get(code) ?? `CKR_0x${code.toString(16)}`);
}

export function ckrCode(e: unknown): number | undefined {
  return e instanceof pkcs11js.Pkcs11Error ? e.code : undefined;
}

export function classify(e: unknown): FailureClass {
  const code = ckrCode(e);
  if (code === undefined) return 'request';
  if (TOKEN.has(code)) return 'token';
  if (SESSION.has(code)) return 'session';
  return 'request';
}
