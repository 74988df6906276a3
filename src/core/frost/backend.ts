/**
 * Which code computes FROST signing group operations: `native` (libsodium / libsecp256k1,
 * native-frost.ts; the default) or `noble` (@noble/curves FROST, the reference the native path
 * is tested against). The process-wide default comes from SIGNER_FROST_BACKEND, read once.
 * DKG and refresh always run on noble.
 */
export type FrostBackend = 'native' | 'noble';

function fromEnvironment(): FrostBackend {
  const v = process.env.SIGNER_FROST_BACKEND;
  if (v === undefined || v === '' || v === 'native') return 'native';
  if (v === 'noble') return 'noble';
  throw new Error(`SIGNER_FROST_BACKEND must be "native" or "noble", not "${v}"`);
}

let current: FrostBackend = fromEnvironment();

export const frostBackend = (): FrostBackend => current;

/** For tests and the benchmark: switches this process's backend. */
export function setFrostBackend(b: FrostBackend): void {
  current = b;
}
