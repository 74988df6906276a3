/**
 * src/main.ts, unchanged, over the real pkcs11js with the switches of harness/pkcs11-faults.ts:
 * the token counts as pulled out while the file named by PKCS11_REMOVED_FILE exists, and every
 * C_Login is reported on stdout as the line {"pkcs11":"C_Login"}, so a test can count the login
 * attempts of a child process and drive it with real signals.
 */
import { existsSync } from 'node:fs';
import { installFaults, newFaults } from './pkcs11-faults.js';

const removedFile = process.env.PKCS11_REMOVED_FILE;
const faults = newFaults();
Object.defineProperty(faults, 'removed', { get: () => removedFile !== undefined && existsSync(removedFile) });
faults.onCall = (method) => {
  if (method === 'C_Login') process.stdout.write('{"pkcs11":"C_Login"}\n');
};
installFaults(faults);
await import('../src/main.js');
