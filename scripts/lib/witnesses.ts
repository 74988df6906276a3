import type { Command } from 'commander';
import { openCheckpoint, parseCheckpoint } from '../../src/core/audit/checkpoint.js';
import { cosignatureVerifier } from '../../src/core/audit/cosignature.js';
import { decodeBase64, ed25519Verifier, NoteError, type NoteVerifier, parseNote } from '../../src/core/audit/note.js';

export interface WitnessCheck {
  ok: boolean;
  what: string;
}

/** --witnesses k and --witness-key name=base64 (repeatable): the witnesses an auditor trusts. */
export function witnessOptions(cmd: Command): Command {
  return cmd
    .option('--witnesses <k>', 'with --checkpoint: require k valid cosignatures from --witness-key witnesses', '0')
    .option(
      '--witness-key <name=base64>',
      'a witness you trust: its key name and Ed25519 public key (repeat for each)',
      (v: string, acc: string[]) => [...acc, v],
      [] as string[],
    );
}

/** The trusted witnesses of `--witness-key` values; throws on a malformed one. */
export function parseWitnessKeys(values: readonly string[]): NoteVerifier[] {
  return values.map((v) => {
    const at = v.indexOf('=');
    const key = at > 0 ? decodeBase64(v.slice(at + 1)) : null;
    if (key?.length !== 32) throw new Error(`--witness-key ${v}: expected name=<base64 of 32 bytes>`);
    return cosignatureVerifier(v.slice(0, at), key);
  });
}

/**
 * That the checkpoint note is signed by one of the log's audit keys and cosigned by at least
 * `required` of the trusted witnesses (each counted once). A cosignature says the witness saw no
 * other tree of this log that this one does not extend; k of them make a split view need k
 * colluding witnesses.
 */
export function checkWitnessed(
  note: string,
  logKeys: readonly Uint8Array[],
  witnesses: readonly NoteVerifier[],
  required: number,
  origin?: string,
): WitnessCheck[] {
  let cpOrigin: string;
  try {
    cpOrigin = origin ?? parseCheckpoint(parseNote(note).text).origin;
  } catch (e) {
    return [{ ok: false, what: `the checkpoint is not a signed checkpoint note: ${(e as Error).message}` }];
  }
  let lastError: unknown;
  for (const key of logKeys) {
    try {
      const opened = openCheckpoint(note, {
        origin: cpOrigin,
        log: ed25519Verifier(cpOrigin, key),
        witnesses,
        required,
      });
      const names = opened.cosignatures.map((s) => s.name).join(', ') || 'none';
      return [
        { ok: true, what: `${opened.cosignatures.length} of ${required} required witness cosignatures (${names})` },
      ];
    } catch (e) {
      if (!(e instanceof NoteError)) throw e;
      lastError = e;
      // Another audit key of the header may have signed it; a bad cosignature fails under every key.
      if (e.kind !== 'unknown-key') break;
    }
  }
  const e = lastError as NoteError | undefined;
  return [{ ok: false, what: `witness cosignatures: ${e ? `${e.kind}: ${e.message}` : 'no audit key in the export'}` }];
}
