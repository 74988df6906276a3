import { SignerError } from '../../core/errors.js';
import type { ThresholdAlgorithm } from '../../core/frost/suites.js';
import type { Round1Entry, Round1Output, SealedShare } from '../../core/frost/wire.js';
import { type CosignerClients, CosignerFault } from './cosigner-client.js';

/** What every cosigner is told in Round1: the ceremony it takes part in. */
export interface RoundsRequest {
  ceremony: 'DKG' | 'REFRESH';
  sessionId: string;
  keyId: string;
  keyVersion: number;
  algorithm: ThresholdAlgorithm;
  groupId: Buffer;
  epoch: number;
  participants: number[];
  minSigners: number;
}

/**
 * Relays the three rounds of a DKG or refresh between all participants and returns the public
 * package they agree on. Round-2 shares are encrypted to their receivers: the relay never sees
 * a secret. Afterwards each participant holds a pending share of this session, which only
 * Finish commits.
 */
export async function relayRounds(
  cosigners: CosignerClients,
  r: RoundsRequest,
  deadline: number,
): Promise<{ publicPackage: string; epoch: number }> {
  const { participants, sessionId } = r;
  const r1 = await cosigners.all<Round1Output>(participants, 'Round1', () => r, deadline);
  const round1: Round1Entry[] = r1.map((o, i) => ({ cosignerId: participants[i]!, ...o }));
  const r2 = await cosigners.all<{ shares: SealedShare[] }>(
    participants,
    'Round2',
    () => ({ sessionId, round1 }),
    deadline,
  );
  // Each cosigner's shares must come from that cosigner: a relay cannot re-attribute them.
  const shares = r2.flatMap((o, i) => o.shares.filter((s) => s.from === participants[i]));
  const r3 = await cosigners.all<{ publicPackage: string; epoch: number }>(
    participants,
    'Round3',
    (id) => ({ sessionId, shares: shares.filter((s) => s.to === id) }),
    deadline,
  );
  if (new Set(r3.map((o) => o.publicPackage)).size !== 1 || new Set(r3.map((o) => o.epoch)).size !== 1) {
    throw new SignerError('CEREMONY_FAILED', 'cosigners disagree on the resulting public package');
  }
  return r3[0]!;
}

/** Names the cosigner at fault: the one another cosigner blamed, or the one that failed. */
export function explain(e: unknown, ceremony: string): unknown {
  if (!(e instanceof CosignerFault)) return e;
  const blamed = e.refusal?.metadata.faultyCosigner;
  if (blamed) {
    return new SignerError('PARTICIPANT_FAULT', `${ceremony} aborted: ${e.refusal!.message}`, {
      cosigner: blamed,
      reportedBy: String(e.cosigner),
    });
  }
  if (e.refusal?.reason === 'KEY_ROTATION_CONFLICT') {
    return new SignerError('KEY_ROTATION_CONFLICT', `${ceremony} aborted: ${e.refusal.message}`, {
      cosigner: String(e.cosigner),
    });
  }
  if (e.refusal)
    return new SignerError(
      'CEREMONY_FAILED',
      `${ceremony} aborted: cosigner ${e.cosigner} refused: ${e.refusal.message}`,
      { cosigner: String(e.cosigner) },
    );
  return new SignerError(
    'THRESHOLD_UNAVAILABLE',
    `${ceremony} needs every cosigner; cosigner ${e.cosigner}: ${e.why}`,
    {
      cosigner: String(e.cosigner),
    },
  );
}
