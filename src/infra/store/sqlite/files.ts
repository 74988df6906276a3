import { chmodSync, closeSync, existsSync, openSync, statSync } from 'node:fs';
import { dirname } from 'node:path';

/**
 * The database holds replay records, velocity and the audit log: anyone who can write it can
 * reopen a nonce or erase a trace, anyone who can read it learns every payment. So the file is
 * owner-only (0600) before SQLite writes its first byte, and a directory that anyone may write
 * to is refused: there another user could swap the file, or plant its -wal before we open it.
 */
export function protectDatabaseFiles(path: string): void {
  const dir = dirname(path);
  const mode = statSync(dir).mode;
  if (mode & 0o002) {
    throw new Error(
      `the SQLite directory ${dir} is world-writable (mode ${(mode & 0o7777).toString(8)}); ` +
        'keep the database in a directory only the signer can write (e.g. chmod 700)',
    );
  }
  // Created here, owner-only, if it does not exist yet; tightened if it does.
  closeSync(openSync(path, 'a', 0o600));
  chmodSync(path, 0o600);
}

/**
 * SQLite gives -wal and -shm the database file's mode when it creates them; one left by an
 * older release (created with the process umask) is tightened here, right after open.
 */
export function protectWalFiles(path: string): void {
  for (const f of [`${path}-wal`, `${path}-shm`]) if (existsSync(f)) chmodSync(f, 0o600);
}
