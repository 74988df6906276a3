/**
 * C2SP signed notes (https://c2sp.org/signed-note): a UTF-8 text ending in a newline, a blank
 * line, and signature lines `— <key name> <base64(key ID || signature)>`. Checkpoints and their
 * cosignatures travel in this form (checkpoint.ts, cosignature.ts).
 *
 * Contract
 * - {@link parseNote} checks syntax only and fails closed: valid UTF-8, no control character but
 *   newline, a non-empty text ending in a newline, at least one signature line, key names without
 *   spaces or '+', canonical base64 of at least 5 bytes, at most {@link MAX_SIGNATURES} lines and
 *   {@link MAX_NOTE_BYTES} bytes, no two lines from the same (name, key ID).
 * - {@link openNote} follows the spec's rules for verifiers: lines from unknown keys (name and ID
 *   not both matching a configured verifier) are ignored; a known key's line that fails is a
 *   refusal of the whole note; no verified line from a known key is a refusal.
 * - The caller MUST configure verifiers with public keys it obtained out of band; a key ID is a
 *   4-byte hint, not a commitment (anyone can make a key that collides with it).
 * - Refusals are {@link NoteError}s with a closed set of kinds; the gRPC edge maps them to reasons.
 */
import { ed25519 } from '@noble/curves/ed25519.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { bytesToHex, concatBytes, utf8ToBytes } from '@noble/hashes/utils.js';

/** Signature type bytes of signed-note's registry, the ones this service uses. */
export const SIG_TYPE_ED25519 = 0x01;
export const SIG_TYPE_COSIGNATURE_V1 = 0x04;

/** Above the spec's floor of 16; a checkpoint carries the log's line plus one per witness. */
export const MAX_SIGNATURES = 100;
export const MAX_NOTE_BYTES = 1 << 20;

const DASH = '\u2014 ';

export type NoteProblem =
  | 'malformed' // not a signed note, or not the body expected (checkpoint.ts)
  | 'unknown-key' // no line from a configured key (of the log, for a checkpoint)
  | 'bad-signature' // a line from a configured key that does not verify
  | 'wrong-origin' // a checkpoint of another log
  | 'too-few-cosignatures'; // fewer valid witness cosignatures than required

export class NoteError extends Error {
  constructor(
    readonly kind: NoteProblem,
    message: string,
  ) {
    super(message);
    this.name = 'NoteError';
  }
}

/** One signature line. `sig` is the signature proper, without the key ID. */
export interface NoteSignature {
  readonly name: string;
  /** uint32, the first 4 bytes of the line's base64 payload, big-endian. */
  readonly keyId: number;
  readonly sig: Uint8Array;
}

export interface Note {
  /** The signed text, ending in a newline. */
  readonly text: string;
  readonly sigs: readonly NoteSignature[];
}

/** A configured public key. `verify` MUST return false, not throw, for any malformed input. */
export interface NoteVerifier {
  readonly name: string;
  readonly keyId: number;
  verify(text: Uint8Array, sig: Uint8Array): boolean;
}

/** A signing key. `sign` MUST return a signature it has checked (the HSM wrappers verify theirs). */
export interface NoteSigner {
  readonly name: string;
  readonly keyId: number;
  sign(text: Uint8Array): Promise<Uint8Array>;
}

/** signed-note's recommended key ID: SHA-256(name || 0x0A || type || public key)[:4], big-endian. */
export function keyId(name: string, type: number, publicKey: Uint8Array): number {
  checkKeyName(name);
  const h = sha256(concatBytes(utf8ToBytes(name), Uint8Array.of(0x0a, type), publicKey));
  return new DataView(h.buffer, h.byteOffset, 4).getUint32(0);
}

/** A verifier for plain Ed25519 note signatures (type 0x01, RFC 8032 strict). */
export function ed25519Verifier(name: string, publicKey: Uint8Array): NoteVerifier {
  if (publicKey.length !== 32) throw new TypeError('an Ed25519 public key is 32 bytes');
  const key = Uint8Array.from(publicKey);
  return {
    name,
    keyId: keyId(name, SIG_TYPE_ED25519, key),
    verify: (text, sig) => verifyEd25519(sig, text, key),
  };
}

/** A signer for type 0x01 around `sign` (e.g. the HSM's CKM_EDDSA over the audit key). */
export function ed25519Signer(
  name: string,
  publicKey: Uint8Array,
  sign: (msg: Uint8Array) => Promise<Uint8Array>,
): NoteSigner {
  return { name, keyId: keyId(name, SIG_TYPE_ED25519, publicKey), sign };
}

/** RFC 8032 strict (zip215: false): one valid encoding per signature and key; never throws. */
export function verifyEd25519(sig: Uint8Array, msg: Uint8Array, publicKey: Uint8Array): boolean {
  try {
    return sig.length === 64 && ed25519.verify(sig, msg, publicKey, { zip215: false });
  } catch {
    return false;
  }
}

/** Signs `text` with each signer and returns the note. */
export async function signNote(text: string, signers: readonly NoteSigner[]): Promise<string> {
  const sigs: NoteSignature[] = [];
  for (const s of signers) sigs.push(await signText(text, s));
  return formatNote({ text, sigs });
}

/** One signature of a note text, e.g. a witness's cosignature to hand back to the log. */
export async function signText(text: string, signer: NoteSigner): Promise<NoteSignature> {
  checkText(text);
  return { name: signer.name, keyId: signer.keyId, sig: await signer.sign(utf8ToBytes(text)) };
}

/**
 * The note with more signatures appended (cosignatures collected from witnesses). Verifies
 * nothing, and the caller MUST verify each signature before adding it: one failing line from a
 * configured key makes {@link openNote} refuse the whole note.
 */
export function addSignatures(msg: string | Uint8Array, sigs: readonly NoteSignature[]): string {
  const note = parseNote(msg);
  return formatNote({ text: note.text, sigs: [...note.sigs, ...sigs] });
}

/** The wire form of a note; checks what {@link parseNote} checks. */
export function formatNote(note: Note): string {
  checkText(note.text);
  if (note.sigs.length === 0) throw new NoteError('malformed', 'a signed note needs at least one signature');
  const lines = note.sigs.map((s) => {
    checkKeyName(s.name);
    if (!Number.isInteger(s.keyId) || s.keyId < 0 || s.keyId > 0xffffffff) malformed('a key ID is a uint32');
    const payload = new Uint8Array(4 + s.sig.length);
    new DataView(payload.buffer).setUint32(0, s.keyId);
    payload.set(s.sig, 4);
    return `${DASH}${s.name} ${Buffer.from(payload).toString('base64')}\n`;
  });
  const out = `${note.text}\n${lines.join('')}`;
  parseNote(out); // fail closed: never hand out a note we would refuse
  return out;
}

/** Parses a note's syntax; throws {@link NoteError} 'malformed'. */
export function parseNote(msg: string | Uint8Array): Note {
  const tooLarge = `the note is larger than ${MAX_NOTE_BYTES} bytes`;
  if (typeof msg !== 'string' && msg.length > MAX_NOTE_BYTES) malformed(tooLarge);
  const text = typeof msg === 'string' ? msg : decodeUtf8(msg);
  if (typeof msg === 'string' && LONE_SURROGATE.test(text)) malformed('the note is not valid UTF-8');
  if (utf8ToBytes(text).length > MAX_NOTE_BYTES) malformed(tooLarge);
  if (CONTROL.test(text)) malformed('the note holds a control character other than newline');
  if (!text.endsWith('\n')) malformed('the note does not end with a newline');
  const split = text.lastIndexOf('\n\n');
  if (split < 0) malformed('the note has no blank line before its signatures');
  const body = text.slice(0, split + 1);
  checkText(body);
  const lines = text.slice(split + 2, -1).split('\n');
  if (lines.length > MAX_SIGNATURES) malformed(`more than ${MAX_SIGNATURES} signatures`);
  const seen = new Set<string>();
  const sigs = lines.map((line) => {
    const sig = parseSignatureLine(line);
    const id = `${sig.name} ${sig.keyId}`;
    if (seen.has(id)) malformed(`two signatures from ${sig.name} (key ID ${hex32(sig.keyId)})`);
    seen.add(id);
    return sig;
  });
  return { text: body, sigs };
}

/**
 * Parses a note and verifies it (see the module comment): returns its text, the signatures that
 * verified under `verifiers` and those from keys it does not know.
 */
export function openNote(msg: string | Uint8Array, verifiers: readonly NoteVerifier[]): OpenedNote {
  const note = parseNote(msg);
  const bytes = utf8ToBytes(note.text);
  const verified: NoteSignature[] = [];
  const unknown: NoteSignature[] = [];
  for (const sig of note.sigs) {
    const v = verifiers.find((k) => k.name === sig.name && k.keyId === sig.keyId);
    if (!v) unknown.push(sig);
    else if (v.verify(bytes, sig.sig)) verified.push(sig);
    else {
      throw new NoteError('bad-signature', `the signature of ${sig.name} (key ID ${hex32(sig.keyId)}) does not verify`);
    }
  }
  if (verified.length === 0) throw new NoteError('unknown-key', 'the note has no signature from a known key');
  return { text: note.text, verified, unknown };
}

export interface OpenedNote {
  readonly text: string;
  readonly verified: readonly NoteSignature[];
  readonly unknown: readonly NoteSignature[];
}

/**
 * A verifier key as signed-note tools print it: `<name>+<hex key ID>+<base64(type || key)>`.
 * The key ID is recomputed, so a vkey whose ID does not match its key is refused.
 */
export function encodeVerifierKey(name: string, type: number, publicKey: Uint8Array): string {
  const material = Buffer.from(concatBytes(Uint8Array.of(type), publicKey)).toString('base64');
  return `${name}+${hex32(keyId(name, type, publicKey))}+${material}`;
}

export function parseVerifierKey(vkey: string): { name: string; keyId: number; type: number; publicKey: Uint8Array } {
  // Names hold no '+', base64 may: the name ends at the first '+', the key ID 8 digits later.
  const m = /^([^+]+)\+([0-9a-f]{8})\+(.+)$/s.exec(vkey);
  if (!m) malformed('a verifier key is <name>+<8 hex digits>+<base64>');
  const [, name, id, b64] = m as unknown as [string, string, string, string];
  checkKeyName(name);
  const material = decodeBase64(b64);
  if (!material || material.length < 2) malformed('a verifier key ends in base64 of a type byte and a key');
  const type = material[0]!;
  const publicKey = material.slice(1);
  if (keyId(name, type, publicKey) !== Number.parseInt(id, 16)) {
    malformed(`the key ID of ${name} does not match its key`);
  }
  return { name, keyId: Number.parseInt(id, 16), type, publicKey };
}

/** Standard base64 with padding, canonical only (no whitespace, zero trailing bits); else null. */
export function decodeBase64(s: string): Uint8Array | null {
  if (!BASE64.test(s)) return null;
  const bytes = new Uint8Array(Buffer.from(s, 'base64'));
  return Buffer.from(bytes).toString('base64') === s ? bytes : null;
}

export function encodeBase64(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('base64');
}

/** Key names: non-empty, no Unicode space, no '+' (signed-note); also no control character. */
export function checkKeyName(name: string): void {
  if (name.length === 0 || /[\s+\p{Cc}]/u.test(name)) malformed(`bad key name ${JSON.stringify(name.slice(0, 80))}`);
}

function parseSignatureLine(line: string): NoteSignature {
  if (!line.startsWith(DASH)) malformed('a signature line must start with an em dash and a space');
  const rest = line.slice(DASH.length);
  const space = rest.indexOf(' ');
  if (space < 0) malformed('a signature line is "— <key name> <base64 signature>"');
  const name = rest.slice(0, space);
  checkKeyName(name);
  const payload = decodeBase64(rest.slice(space + 1));
  if (!payload || payload.length < 5) malformed(`the signature of ${name} is not base64 of a key ID and a signature`);
  return { name, keyId: new DataView(payload.buffer).getUint32(0), sig: payload.slice(4) };
}

/** The text rules shared by bodies we write and bodies we read. */
function checkText(text: string): void {
  if (text.length === 0 || !text.endsWith('\n')) malformed('the note text must be non-empty and end with a newline');
  if (CONTROL.test(text) || LONE_SURROGATE.test(text)) {
    malformed('the note text holds a control character or bad UTF-16');
  }
}

function decodeUtf8(bytes: Uint8Array): string {
  try {
    return new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch {
    return malformed('the note is not valid UTF-8');
  }
}

function malformed(message: string): never {
  throw new NoteError('malformed', message);
}

export function hex32(n: number): string {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n);
  return bytesToHex(b);
}

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
// biome-ignore lint/suspicious/noControlCharactersInRegex: signed notes forbid control characters but newline
const CONTROL = /[\u0000-\u0009\u000b-\u001f]/;
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;
