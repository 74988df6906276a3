import type * as grpc from '@grpc/grpc-js';
import { encodeVerifierKey, SIG_TYPE_COSIGNATURE_V1 } from '../../core/audit/note.js';
import type { Config } from '../config/schema.js';
import { signerV1 } from '../grpc/proto.js';
import type { Hsm } from '../hsm/hsm.js';
import type { Logger } from '../log.js';
import { type WitnessCallers, witnessGrpc } from './grpc.js';
import { ensureWitnessKey } from './key.js';
import { WitnessService } from './service.js';
import { WitnessStore } from './store.js';

// The witness's checks of checkpoints (C2SP tlog-cosignature), its durable heads and its key,
// shared by two programs: the witness role (src/witness) and every cosigner (src/cosigner),
// which must not import each other.

export const WITNESS_SERVICE = 'signer.v1.Witness';

/**
 * Adds signer.v1.Witness to `server`, with this node's key (found or generated in `hsm`'s token)
 * and its own store at `dbPath`. Used by the witness role and by every cosigner; callers are
 * checked by the hosting server's `trust` (validity, CRL, pins) at every call, then by CN.
 */
export async function mountWitness(
  server: grpc.Server,
  section: NonNullable<Config['witnessing']>,
  dbPath: string,
  hsm: Hsm,
  log: Logger,
  callers: WitnessCallers,
): Promise<{ service: WitnessService; close(): void }> {
  const key = await ensureWitnessKey(hsm);
  const store = new WitnessStore(dbPath);
  const logs = new Map(section.logs.map((l) => [l.origin, new Uint8Array(Buffer.from(l.publicKey, 'base64'))]));
  const service = new WitnessService({ name: section.name, logs, key, store, log });
  server.addService(signerV1.Witness.service, witnessGrpc(service, callers, log));
  // What the signer's witness.endpoints[] needs, and the vkey auditors pass to verify-audit.
  log.info(
    {
      witness: section.name,
      publicKey: Buffer.from(key.publicKey).toString('base64'),
      vkey: encodeVerifierKey(section.name, SIG_TYPE_COSIGNATURE_V1, key.publicKey),
      origins: [...logs.keys()],
    },
    'witness key',
  );
  return { service, close: () => store.close() };
}
