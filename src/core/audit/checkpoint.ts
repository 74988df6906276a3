/**
 * Checkpoints of the audit log as C2SP tlog-checkpoints (https://c2sp.org/tlog-checkpoint): a
 * signed note whose text is `<origin>\n<tree size>\n<base64 root hash>\n` plus optional extension
 * lines, signed by the HSM audit key.
 *
 * The audit key is Ed25519 (src/signer/audit/audit-key.ts signs with CKM_EDDSA), so the log's
 * signature is signed-note's standard type 0x01 and any C2SP verifier can check it; no private
 * signature type is needed. The log's key name is the origin, as the spec recommends.
 *
 * Contract: {@link openCheckpoint} returns a checkpoint only if the note parses, carries a valid
 * signature from the configured log key (lines from unknown keys are ignored), its text is a
 * well-formed checkpoint, its origin is the expected one, and at least `required` configured
 * witnesses cosigned it validly. The caller MUST still check that the tree it describes is
 * consistent with the last one it trusted (merkle-verify.ts): a valid signature is not an
 * append-only log.
 */
import { HASH_SIZE } from './merkle.js';
import {
  checkKeyName,
  decodeBase64,
  encodeBase64,
  NoteError,
  type NoteSignature,
  type NoteSigner,
  type NoteVerifier,
  openNote,
  signNote,
} from './note.js';

export interface Checkpoint {
  /** The log's identity, e.g. `audit.example.com/hsm-signer/prod`. */
  readonly origin: string;
  /** Number of leaves (audit entries) in the tree. */
  readonly size: number;
  /** RFC 9162 tree head at that size. */
  readonly root: Uint8Array;
  /** Opaque extra lines; NOT RECOMMENDED by the spec (monitors cannot audit them). We write none. */
  readonly extensions?: readonly string[];
}

/** The note text of a checkpoint. The origin must also be a valid key name (it names our key). */
export function formatCheckpoint(cp: Checkpoint): string {
  checkKeyName(cp.origin);
  if (!Number.isSafeInteger(cp.size) || cp.size < 0) {
    throw malformed('the tree size must be a non-negative integer below 2^53');
  }
  if (!(cp.root instanceof Uint8Array) || cp.root.length !== HASH_SIZE) throw malformed('the root hash is 32 bytes');
  const ext = cp.extensions ?? [];
  if (ext.some((line) => line.length === 0 || line.includes('\n'))) {
    throw malformed('extension lines are non-empty single lines');
  }
  const text = `${[cp.origin, String(cp.size), encodeBase64(cp.root), ...ext].join('\n')}\n`;
  parseCheckpoint(text); // fail closed: never sign a text we would refuse
  return text;
}

/** Parses a checkpoint's note text (already verified); throws {@link NoteError} 'malformed'. */
export function parseCheckpoint(text: string): Checkpoint {
  if (!text.endsWith('\n')) throw malformed('a checkpoint ends with a newline');
  const lines = text.slice(0, -1).split('\n');
  if (lines.length < 3) throw malformed('a checkpoint has an origin, a tree size and a root hash line');
  const [origin, sizeLine, rootLine, ...extensions] = lines as [string, string, string, ...string[]];
  if (origin.length === 0) throw malformed('the origin line is empty');
  if (!/^(0|[1-9][0-9]*)$/.test(sizeLine)) throw malformed('the tree size is a decimal without leading zeroes');
  const size = Number(sizeLine);
  if (!Number.isSafeInteger(size)) throw malformed('the tree size is above 2^53 - 1');
  const root = decodeBase64(rootLine);
  if (!root || root.length !== HASH_SIZE) throw malformed('the root hash line is not base64 of 32 bytes');
  if (extensions.some((l) => l.length === 0)) throw malformed('an extension line is empty');
  return { origin, size, root, extensions };
}

/** Signs a checkpoint with the log key; returns the note. */
export function signCheckpoint(cp: Checkpoint, log: NoteSigner): Promise<string> {
  return signNote(formatCheckpoint(cp), [log]);
}

export interface CheckpointTrust {
  /** The origin this log uses; a checkpoint of another is refused ('wrong-origin'). */
  readonly origin: string;
  /** The log's key (ed25519Verifier(origin, audit public key)). */
  readonly log: NoteVerifier;
  /** Witness keys (cosignatureVerifier); default none. */
  readonly witnesses?: readonly NoteVerifier[];
  /** How many distinct witnesses must have cosigned; default 0. */
  readonly required?: number;
}

export interface OpenedCheckpoint {
  readonly checkpoint: Checkpoint;
  /** The note text (what a consistency check and every cosignature cover). */
  readonly text: string;
  /** Valid cosignatures from configured witnesses. */
  readonly cosignatures: readonly NoteSignature[];
}

/** Verifies a checkpoint note (see the module comment); throws {@link NoteError}. */
export function openCheckpoint(note: string | Uint8Array, trust: CheckpointTrust): OpenedCheckpoint {
  const witnesses = trust.witnesses ?? [];
  const required = trust.required ?? 0;
  if (!Number.isSafeInteger(required) || required < 0 || required > witnesses.length) {
    throw new RangeError(`checkpoint: ${required} cosignatures required of ${witnesses.length} witnesses`);
  }
  const opened = openNote(note, [trust.log, ...witnesses]);
  const isLog = (s: NoteSignature) => s.name === trust.log.name && s.keyId === trust.log.keyId;
  if (!opened.verified.some(isLog)) {
    throw new NoteError('unknown-key', `the note is not signed by the log key ${trust.log.name}`);
  }
  const checkpoint = parseCheckpoint(opened.text);
  if (checkpoint.origin !== trust.origin) {
    const message = `a checkpoint of ${JSON.stringify(checkpoint.origin)}, not ${JSON.stringify(trust.origin)}`;
    throw new NoteError('wrong-origin', message);
  }
  const cosignatures = opened.verified.filter((s) => !isLog(s));
  if (cosignatures.length < required) {
    throw new NoteError('too-few-cosignatures', `${cosignatures.length} valid cosignatures, ${required} required`);
  }
  return { checkpoint, text: opened.text, cosignatures };
}

function malformed(message: string): NoteError {
  return new NoteError('malformed', message);
}
