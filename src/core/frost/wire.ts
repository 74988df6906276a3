import type { DKG_Round1, Identifier } from '@noble/curves/abstract/frost.js';
import { bytesToHex, hexToBytes } from '@noble/curves/utils.js';
import { z } from 'zod';
import { ParticipantFault } from './participant.js';
import type { RefreshRound1 } from './refresh.js';

/**
 * Round-1 packages as they cross the wire (JSON, lowercase hex). Parsing failures blame the
 * sender: a package that does not parse is that participant's fault, not the receiver's.
 */
const hex = z.string().regex(/^(?:[0-9a-f]{2})+$/);
const dkgRound1 = z.object({ identifier: hex, commitment: z.array(hex).min(1), proofOfKnowledge: hex }).strict();
const refreshRound1 = z.object({ identifier: hex, commitment: z.array(hex) }).strict();

export function encodeDkgRound1(p: DKG_Round1): string {
  return JSON.stringify({ identifier: p.identifier, commitment: p.commitment.map(bytesToHex), proofOfKnowledge: bytesToHex(p.proofOfKnowledge) });
}

export function decodeDkgRound1(text: string, sender: Identifier): DKG_Round1 {
  const p = parse(dkgRound1, text, sender);
  if (p.identifier !== sender) throw new ParticipantFault(sender, 'round1 package names another identifier');
  return { identifier: p.identifier, commitment: p.commitment.map(hexToBytes), proofOfKnowledge: hexToBytes(p.proofOfKnowledge) };
}

export function encodeRefreshRound1(p: RefreshRound1): string {
  return JSON.stringify({ identifier: p.identifier, commitment: p.commitment.map(bytesToHex) });
}

export function decodeRefreshRound1(text: string, sender: Identifier): RefreshRound1 {
  const p = parse(refreshRound1, text, sender);
  if (p.identifier !== sender) throw new ParticipantFault(sender, 'round1 package names another identifier');
  return { identifier: p.identifier, commitment: p.commitment.map(hexToBytes) };
}

function parse<T>(schema: z.ZodType<T>, text: string, sender: Identifier): T {
  try {
    return schema.parse(JSON.parse(text));
  } catch {
    throw new ParticipantFault(sender, 'malformed round1 package');
  }
}
