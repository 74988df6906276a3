import { evmAddress } from '../../core/payloads/evm.js';
import type { Algorithm } from '../../infra/config/schema.js';
import type { KeyRecord, KeyState } from '../../infra/store/store.js';
import { ALG_TO_WIRE } from '../signing/response.js';

const STATE_TO_WIRE: Record<KeyState, string> = {
  active: 'ACTIVE',
  'verify-only': 'VERIFY_ONLY',
  disabled: 'DISABLED',
  destroyed: 'DESTROYED',
};

export function algorithmFromWire(name: string): Algorithm | undefined {
  return (Object.keys(ALG_TO_WIRE) as Algorithm[]).find((a) => ALG_TO_WIRE[a] === name);
}

export function timestamp(d: Date) {
  const ms = d.getTime();
  return { seconds: String(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1e6 };
}

export function keyToWire(k: KeyRecord) {
  return {
    keyId: k.keyId,
    version: k.version,
    algorithm: ALG_TO_WIRE[k.algorithm],
    state: STATE_TO_WIRE[k.state],
    publicKey: Buffer.from(k.publicKey),
    evmAddress: k.algorithm === 'ecdsa-secp256k1' ? evmAddress(k.publicKey) : '',
    createdAt: timestamp(k.createdAt),
    stateChangedAt: timestamp(k.stateChangedAt),
    retireAt: k.retireAt ? timestamp(k.retireAt) : null,
    threshold: k.threshold
      ? { minSigners: k.threshold.minSigners, cosigners: k.threshold.cosigners, epoch: k.threshold.epoch }
      : null,
  };
}
