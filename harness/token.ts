/**
 * Throwaway SoftHSM2 tokens for tests. Each token lives in its own directory (its own
 * softhsm2.conf and tokendir), so parallel test files never see each other's slots.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** The repository root (this file is harness/token.ts). */
export const repoRoot = resolve(fileURLToPath(new URL('..', import.meta.url)));

export interface TestToken {
  /** Absolute path of the token's softhsm2.conf. */
  conf: string;
  label: string;
  /** File holding the user PIN (mode 0600, no trailing newline). */
  userPinFile: string;
  /** File holding the SO PIN (mode 0600, no trailing newline). */
  soPinFile: string;
  userPin: string;
  soPin: string;
  modulePath: string;
  /** `pkcs11:token=<label>?module-path=...&pin-source=file:<userPinFile>` */
  uri: string;
  /** What the module must see in its environment (`hsm.moduleEnv`). */
  env: { SOFTHSM2_CONF: string };
}

const MODULE_CANDIDATES = [
  '/usr/lib/softhsm/libsofthsm2.so',
  '/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so',
  '/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so',
  '/usr/local/lib/softhsm/libsofthsm2.so',
  '/usr/lib64/pkcs11/libsofthsm2.so',
  '/usr/lib/pkcs11/libsofthsm2.so',
  '/opt/homebrew/lib/softhsm/libsofthsm2.so',
];

/** Path of libsofthsm2.so (`SOFTHSM2_MODULE` overrides the search). Throws if there is none. */
export function findSoftHsmModule(): string {
  const override = process.env.SOFTHSM2_MODULE;
  if (override) {
    if (!existsSync(override)) throw new Error(`SOFTHSM2_MODULE=${override} does not exist`);
    return override;
  }
  const found = MODULE_CANDIDATES.find((p) => existsSync(p));
  if (!found) {
    throw new Error(
      'libsofthsm2.so not found: run `bash scripts/dev-setup.sh --test` (installs softhsm2) ' +
        'or set SOFTHSM2_MODULE to its path',
    );
  }
  return found;
}

/** RFC 7512 percent-encoding of an attribute value; `/` and `:` stay readable. */
function pct(s: string): string {
  return s.replace(/[^A-Za-z0-9\-._~/:]/gu, (c) =>
    [...Buffer.from(c, 'utf8')].map((b) => `%${b.toString(16).toUpperCase().padStart(2, '0')}`).join(''),
  );
}

export function pkcs11Uri(label: string, modulePath: string, pinFile: string): string {
  return `pkcs11:token=${pct(label)}?module-path=${pct(modulePath)}&pin-source=file:${pct(pinFile)}`;
}

/** A fresh directory under the repo's git-ignored `.test/` folder. */
export async function tempDir(prefix: string): Promise<{ path: string; cleanup(): Promise<void> }> {
  const base = join(repoRoot, '.test');
  await mkdir(base, { recursive: true });
  const safe = prefix.replace(/[^A-Za-z0-9._-]/g, '_');
  const path = await mkdtemp(join(base, /[-_.]$/.test(safe) ? safe : `${safe}-`));
  return { path, cleanup: () => rm(path, { recursive: true, force: true }) };
}

async function writeSecret(file: string, value: string): Promise<void> {
  await writeFile(file, value, { mode: 0o600 });
  await chmod(file, 0o600); // in case the file already existed with other permissions
}

/**
 * Initialises a token labelled `label` in `dir` (created if needed): `dir/softhsm2.conf`,
 * `dir/tokens/`, `dir/user.pin`, `dir/so.pin`. Use a directory from {@link tempDir}.
 */
export async function makeToken(dir: string, label = 'test'): Promise<TestToken> {
  const modulePath = findSoftHsmModule();
  const root = resolve(dir);
  const tokens = join(root, 'tokens');
  await mkdir(tokens, { recursive: true, mode: 0o700 });

  const template = await readFile(join(repoRoot, 'softhsm', 'softhsm2.conf.template'), 'utf8');
  const conf = join(root, 'softhsm2.conf');
  await writeFile(conf, template.replaceAll('@TOKENDIR@', tokens));

  const soPin = randomBytes(16).toString('hex');
  const userPin = randomBytes(16).toString('hex');
  const env = { SOFTHSM2_CONF: conf };
  // PINs on the command line are visible in `ps` while softhsm2-util runs: fine for test tokens.
  try {
    await run('softhsm2-util', ['--init-token', '--free', '--label', label, '--so-pin', soPin, '--pin', userPin], {
      env: { ...process.env, ...env },
    });
  } catch (e) {
    const err = e as NodeJS.ErrnoException & { stderr?: string; stdout?: string };
    if (err.code === 'ENOENT') {
      throw new Error('softhsm2-util not found: run `bash scripts/dev-setup.sh --test` (installs softhsm2)');
    }
    // Not err.message: it contains the command line, PINs included.
    throw new Error(`softhsm2-util --init-token failed: ${(err.stderr || err.stdout || '').trim()}`);
  }

  const userPinFile = join(root, 'user.pin');
  const soPinFile = join(root, 'so.pin');
  await writeSecret(userPinFile, userPin);
  await writeSecret(soPinFile, soPin);

  return {
    conf,
    label,
    userPinFile,
    soPinFile,
    userPin,
    soPin,
    modulePath,
    uri: pkcs11Uri(label, modulePath, userPinFile),
    env,
  };
}
