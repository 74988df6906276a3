import { CKM_EDDSA } from '../../infra/hsm/algorithms.js';
import type { Hsm } from '../../infra/hsm/hsm.js';
import type { KeyRecord } from '../../infra/store/store.js';
import { signatureCheck } from '../signing/selfcheck.js';
import type { CheckpointSigner } from './checkpointer.js';

/**
 * Checkpoints are signed inside the HSM with the service's Ed25519 audit key and verified
 * before they are stored, like every other signature the service produces.
 */
export function checkpointSigner(hsm: Hsm, key: KeyRecord): CheckpointSigner {
  const check = signatureCheck('ed25519', key.publicKey, () => Promise.resolve(false));
  return async (message) => (await check(message, await hsm.sign(key.ckaId, { mechanism: CKM_EDDSA }, message))).bytes;
}
