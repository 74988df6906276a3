import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import type Secp256k1 from 'secp256k1';

/** The native secp256k1 addon is missing or failed to load; the signer refuses to start. */
export class NativeAddonError extends Error {
  override name = 'NativeAddonError';
}

export interface NativeSecp256k1 {
  lib: typeof Secp256k1;
  /** Path of the compiled addon (`.node`) that was loaded. */
  addon: string;
}

/**
 * Loads libsecp256k1 through the `secp256k1` package's native binding, explicitly. The package's
 * main entry silently falls back to its pure-JavaScript `elliptic` code when the addon did not
 * build: several times slower on the event loop, and not the audited C library. Here a missing
 * addon is an error the operator sees at start, never a quiet fallback.
 */
export function loadNativeSecp256k1(): NativeSecp256k1 {
  const require = createRequire(import.meta.url);
  try {
    const pkg = require.resolve('secp256k1/package.json');
    // Resolved from the package's own folder: node-gyp-build is its dependency, not ours.
    const addon: string = createRequire(pkg)('node-gyp-build').path(dirname(pkg));
    const lib = require('secp256k1/bindings') as typeof Secp256k1;
    return { lib, addon };
  } catch (e) {
    const why = ((e as Error).message ?? String(e)).split('\n')[0];
    throw new NativeAddonError(
      `the native secp256k1 addon did not load (${why}); rebuild it with \`npm rebuild secp256k1\` ` +
        '(needs a C compiler and python3) or install a prebuilt binary for this platform',
    );
  }
}
