/**
 * The user PIN: read from the file the PKCS#11 URI names, and the login results that mean the
 * PIN itself is the problem. Messages name the file and its mode, never its content.
 */
import { closeSync, fstatSync, openSync, readFileSync } from 'node:fs';
import pkcs11js from 'pkcs11js';
import { ckrCode, HsmStartError } from './errors.js';

/**
 * C_Login results that retrying with the same PIN cannot fix. Each failed attempt may count
 * toward the token's lockout, which on a shared HSM partition locks every tenant out: after one
 * of these the signer stops logging in until an operator acts.
 */
const PIN_FAILURES = new Set([
  pkcs11js.CKR_PIN_INCORRECT,
  pkcs11js.CKR_PIN_LOCKED,
  pkcs11js.CKR_PIN_EXPIRED,
  pkcs11js.CKR_PIN_LEN_RANGE,
  pkcs11js.CKR_PIN_INVALID,
  pkcs11js.CKR_USER_PIN_NOT_INITIALIZED,
]);

export function isPinFailure(e: unknown): boolean {
  const code = ckrCode(e);
  return code !== undefined && PIN_FAILURES.has(code);
}

/**
 * The token refused the PIN (one of the PIN failures above) when the signer logged in; `ckr`
 * is the CKR_* name. At start the message tells the operator what to fix before starting again.
 */
export class PinRefusedError extends HsmStartError {
  override name = 'PinRefusedError';
  constructor(
    readonly ckr: string,
    pinFile: string,
  ) {
    const fix = pinFix(ckr, pinFile);
    super(`login to token failed: ${ckr}: ${fix}, then start the signer again (a refused PIN is never retried)`);
  }
}

/** What happened and what the operator must do after a PIN failure `ckr` while running; safe to log. */
export function pinAdvice(ckr: string, pinFile: string): string {
  return (
    `HSM login refused (${ckr}); no further login is attempted, so that retries cannot lock the PIN ` +
    `for every user of the token: ${pinFix(ckr, pinFile)}, then send SIGHUP to the signer (one new attempt) ` +
    'or restart it'
  );
}

function pinFix(ckr: string, pinFile: string): string {
  switch (ckr) {
    case 'CKR_PIN_LOCKED':
      return "the PIN is locked: the token's security officer must unlock or reset it";
    case 'CKR_PIN_EXPIRED':
      return `the PIN has expired: set a new PIN on the token and write it to ${pinFile}`;
    case 'CKR_USER_PIN_NOT_INITIALIZED':
      return `the token has no user PIN: initialise it and write it to ${pinFile}`;
    default:
      return `put the token's PIN in ${pinFile}`;
  }
}

/**
 * Reads the PIN from `file`. Refuses a file that group or others may read or write (any bit of
 * mode 0o077), or that is not a regular file: a PIN others can read is already disclosed. The
 * mode is checked on the open descriptor, so the file checked is the file read.
 */
export function readPinFile(file: string): string {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (e) {
    throw new HsmStartError(`cannot read PIN file ${file}: ${(e as NodeJS.ErrnoException).code ?? 'error'}`);
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new HsmStartError(`PIN file ${file} is not a regular file`);
    const mode = st.mode & 0o777;
    if (mode & 0o077) {
      throw new HsmStartError(
        `PIN file ${file} has mode ${mode.toString(8).padStart(4, '0')}: group and others must have no access; ` +
          `run chmod 600 ${file}`,
      );
    }
    return readFileSync(fd, 'utf8').trim();
  } finally {
    closeSync(fd);
  }
}
