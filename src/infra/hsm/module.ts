import pkcs11js from 'pkcs11js';
import { ckrName, HsmStartError } from './errors.js';
import type { Pkcs11Uri } from './uri.js';

export type Pkcs11 = pkcs11js.PKCS11;

/** Loads and initialises the PKCS#11 module the URI names. */
export function loadModule(uri: Pkcs11Uri): Pkcs11 {
  if (!uri.modulePath) throw new HsmStartError('hsm.uri: module-path is required');
  const p11 = new pkcs11js.PKCS11();
  try {
    p11.load(uri.modulePath);
  } catch (e) {
    throw new HsmStartError(`cannot load PKCS#11 module ${uri.modulePath}: ${(e as Error).message}`);
  }
  try {
    // OS locking: without it SoftHSM2 corrupts memory under concurrent C_SignAsync.
    p11.C_Initialize({ flags: pkcs11js.CKF_OS_LOCKING_OK });
  } catch (e) {
    throw new HsmStartError(`C_Initialize failed: ${ckrName(e)}`);
  }
  return p11;
}

/** The slot holding the token the URI names by label or serial (slot numbers are not stable). */
export function findSlot(p11: Pkcs11, uri: Pkcs11Uri): Buffer {
  const want = uri.token ? `label "${uri.token}"` : `serial "${uri.serial}"`;
  for (const slot of p11.C_GetSlotList(true)) {
    const info = p11.C_GetTokenInfo(slot);
    if (uri.token !== undefined && info.label.trim() !== uri.token) continue;
    if (uri.serial !== undefined && info.serialNumber.trim() !== uri.serial) continue;
    return slot;
  }
  throw new HsmStartError(`no initialised token with ${want}`);
}

/** Closes a session that may already be gone (closed by the token, or the token removed). */
export function tryClose(p11: Pkcs11, session: Buffer): void {
  try {
    p11.C_CloseSession(session);
  } catch {
    // Already closed by the token.
  }
}

/** Finalises the module; a module not initialised, or already gone, is not an error here. */
export function tryFinalize(p11: Pkcs11): void {
  try {
    p11.C_Finalize();
  } catch {
    // Not initialised, or the module is already gone.
  }
}
