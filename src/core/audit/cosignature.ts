/**
 * Witness cosignatures, C2SP tlog-cosignature `cosignature/v1` (https://c2sp.org/tlog-cosignature):
 * signature type 0x04, a note signature line whose signature is
 * `u64 big-endian timestamp || Ed25519 signature` over
 * `cosignature/v1\ntime <timestamp>\n` + the checkpoint's note text.
 *
 * A v1 cosignature states that, at that time, this checkpoint was the largest tree consistent
 * with everything the witness had seen of that origin. So a witness MUST verify the log's
 * signature and a consistency proof from the last checkpoint it cosigned (kept durably) before
 * calling {@link cosignatureSigner}'s sign; this module only formats and checks the signature.
 * The v1 message does not name the witness: each witness needs its own key.
 *
 * Timestamps are POSIX seconds. The spec allows up to 2^63 - 1; we refuse anything above 2^53 - 1
 * (285 million years away) to keep them JavaScript numbers.
 */
import { concatBytes, utf8ToBytes } from '@noble/hashes/utils.js';
import { parseCheckpoint } from './checkpoint.js';
import {
  keyId,
  NoteError,
  type NoteSigner,
  type NoteVerifier,
  SIG_TYPE_COSIGNATURE_V1,
  verifyEd25519,
} from './note.js';

const HEADER = 'cosignature/v1\n';

/** The key ID of a witness's Ed25519 key as a cosignature/v1 signer. */
export function cosignatureKeyId(name: string, publicKey: Uint8Array): number {
  return keyId(name, SIG_TYPE_COSIGNATURE_V1, publicKey);
}

/** The bytes a cosignature/v1 signs: header line, time line, then the checkpoint's note text. */
export function cosignedMessage(text: string | Uint8Array, timestamp: number): Uint8Array {
  checkTimestamp(timestamp);
  const body = typeof text === 'string' ? utf8ToBytes(text) : text;
  return concatBytes(utf8ToBytes(`${HEADER}time ${timestamp}\n`), body);
}

/**
 * A cosigner for checkpoints: `sign` is the witness's Ed25519 key (in its own token), `now` its
 * clock in seconds. It refuses to sign a text that is not a checkpoint, so the key cannot be
 * made to cosign anything else.
 */
export function cosignatureSigner(
  name: string,
  publicKey: Uint8Array,
  sign: (msg: Uint8Array) => Promise<Uint8Array>,
  now: () => number = () => Math.floor(Date.now() / 1000),
): NoteSigner {
  return {
    name,
    keyId: cosignatureKeyId(name, publicKey),
    async sign(text) {
      parseCheckpoint(decodeText(text));
      const timestamp = now();
      const sig = await sign(cosignedMessage(text, timestamp));
      if (sig.length !== 64) throw new Error('cosignature: an Ed25519 signature is 64 bytes');
      const out = new Uint8Array(8 + 64);
      new DataView(out.buffer).setBigUint64(0, BigInt(timestamp));
      out.set(sig, 8);
      return out;
    },
  };
}

export interface CosignatureOptions {
  /** Refuse cosignatures dated after this (seconds), e.g. now plus an allowed skew. */
  readonly notAfter?: () => number;
}

/** A verifier for one witness's cosignature/v1 lines. */
export function cosignatureVerifier(name: string, publicKey: Uint8Array, opts: CosignatureOptions = {}): NoteVerifier {
  if (publicKey.length !== 32) throw new TypeError('an Ed25519 public key is 32 bytes');
  const key = Uint8Array.from(publicKey);
  return {
    name,
    keyId: cosignatureKeyId(name, key),
    verify(text, sig) {
      const timestamp = cosignatureTime(sig);
      if (timestamp === null) return false;
      if (opts.notAfter && timestamp > opts.notAfter()) return false;
      return verifyEd25519(sig.subarray(8), cosignedMessage(text, timestamp), key);
    },
  };
}

/** The timestamp of a cosignature/v1 signature (without its key ID), or null if it is not one. */
export function cosignatureTime(sig: Uint8Array): number | null {
  if (sig.length !== 8 + 64) return null;
  const t = new DataView(sig.buffer, sig.byteOffset, 8).getBigUint64(0);
  return t <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(t) : null;
}

function decodeText(text: Uint8Array): string {
  try {
    return new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(text);
  } catch {
    throw new NoteError('malformed', 'a checkpoint is UTF-8 text');
  }
}

function checkTimestamp(t: number): void {
  if (!Number.isSafeInteger(t) || t < 0) {
    throw new RangeError('cosignature: a timestamp is a non-negative integer below 2^53');
  }
}
