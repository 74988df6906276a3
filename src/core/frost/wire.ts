import type { DKG_Round1, Identifier } from '@noble/curves/abstract/frost.js';
import { bytesToHex, hexToBytes } from '@noble/curves/utils.js';
import { z } from 'zod';
import { ParticipantFault } from './participant.js';
import type { RefreshRound1 } from './refresh.js';
import type { ThresholdAlgorithm } from './suites.js';

/**
 * What one DKG or refresh is about, as every participant learns it from the coordinator's Round1
 * request. Each cosigner's round-1 signature binds all of it, so a round-1 output cannot be
 * carried into another ceremony.
 */
export interface CeremonyParams {
  sessionId: string;
  kind: 'dkg' | 'refresh';
  keyId: string;
  version: number;
  algorithm: ThresholdAlgorithm;
  groupId: Uint8Array;
  minSigners: number;
  /** Cosigner ids, sorted. */
  participants: number[];
  /** Refresh: the epoch being refreshed. */
  epoch: number;
}

/** One cosigner's round-1 output (Round1Response): public, signed by the cosigner's identity. */
export interface Round1Output {
  package: string;
  /** X25519 key the round-2 shares for this cosigner are encrypted to (transport.ts). */
  transportKey: Uint8Array;
  /** The sender's identity certificate (PEM) and its signature over the entry in context. */
  identityCert: string;
  signature: Uint8Array;
}

/** A round-1 output as the coordinator relays it to every participant (Round2Request). */
export interface Round1Entry extends Round1Output {
  cosignerId: number;
}

/**
 * A secret round-2 share from cosigner `from` to cosigner `to`, encrypted by `sealFor` to the
 * receiver's transport key: the coordinator relays it without being able to read it.
 */
export interface SealedShare {
  from: number;
  to: number;
  ciphertext: Uint8Array;
}

/**
 * Round-1 packages as they cross the wire (JSON, lowercase hex). Parsing failures blame the
 * sender: a package that does not parse is that participant's fault, not the receiver's.
 */
const hex = z.string().regex(/^(?:[0-9a-f]{2})+$/);
const dkgRound1 = z.object({ identifier: hex, commitment: z.array(hex).min(1), proofOfKnowledge: hex }).strict();
const refreshRound1 = z.object({ identifier: hex, commitment: z.array(hex) }).strict();

export function encodeDkgRound1(p: DKG_Round1): string {
  return JSON.stringify({
    identifier: p.identifier,
    commitment: p.commitment.map(bytesToHex),
    proofOfKnowledge: bytesToHex(p.proofOfKnowledge),
  });
}

export function decodeDkgRound1(text: string, sender: Identifier): DKG_Round1 {
  const p = parse(dkgRound1, text, sender);
  if (p.identifier !== sender) throw new ParticipantFault(sender, 'round1 package names another identifier');
  return {
    identifier: p.identifier,
    commitment: p.commitment.map(hexToBytes),
    proofOfKnowledge: hexToBytes(p.proofOfKnowledge),
  };
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
