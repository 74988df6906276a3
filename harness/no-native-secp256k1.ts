/**
 * Preload (`node --import ./harness/no-native-secp256k1.ts`) that makes the `secp256k1`
 * package's native addon fail to load, as on a host where it did not build: its loader,
 * node-gyp-build, throws what it throws when no binary is found. Everything else is untouched.
 */
import Module from 'node:module';
import { sep } from 'node:path';

type Load = (request: string, parent: { filename?: string } | undefined, isMain: boolean) => unknown;
const M = Module as unknown as { _load: Load };
const load = M._load;
M._load = function (this: unknown, request, parent, isMain) {
  if (request === 'node-gyp-build' && parent?.filename?.includes(`${sep}secp256k1${sep}`)) {
    throw new Error(`No native build was found for platform=${process.platform} arch=${process.arch} (simulated)`);
  }
  return load.call(this, request, parent, isMain);
};
