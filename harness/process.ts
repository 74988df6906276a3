import { type ChildProcess, spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { repoRoot } from './token.js';

export const tsx = `${repoRoot}/node_modules/.bin/tsx`;

export async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const { port } = srv.address() as { port: number };
  await new Promise((r) => srv.close(r));
  return port;
}

export interface SignerProcess {
  child: ChildProcess;
  /** Everything the process wrote to stdout (its JSON log). */
  logs(): string;
  exited: Promise<number | null>;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/**
 * How long a child process may take to log that it started. Measured on a 2-core machine at load
 * 19: 21-29 s for one signer, nearly all of it before the first log line (loading and
 * transpiling the modules), longer when several start at once; quiet, about 2 s. Still a bound:
 * a process that hangs at start fails the test.
 */
export const START_TIMEOUT_MS = 90_000;

/**
 * Starts `src/main.ts` (or `entry`: a .ts file runs through tsx, a .js file on plain node) as a
 * real child process and waits for its "signer started" (or `ready`) log line.
 */
export async function startSignerProcess(
  configFile: string,
  timeoutMs = START_TIMEOUT_MS,
  opts: {
    entry?: string;
    ready?: string;
    args?: string[];
    nodeArgs?: string[];
    /** More environment for the child (e.g. a test-only hook). */
    env?: Record<string, string>;
  } = {},
): Promise<SignerProcess> {
  // node itself, not the tsx CLI: tsx runs the program in a grandchild that a SIGKILL would miss.
  // A compiled entry (dist/main.js) runs without the loader, as in production.
  const entry = opts.entry ?? 'src/main.ts';
  const loader = entry.endsWith('.ts') ? ['--import', 'tsx'] : [];
  // Node flags such as --cpu-prof go on the command line: NODE_OPTIONS refuses some of them.
  const args = [...(opts.nodeArgs ?? []), ...loader, entry, '--config', configFile, ...(opts.args ?? [])];
  const env = opts.env ? { ...process.env, ...opts.env } : process.env;
  const child = spawn(process.execPath, args, { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'], env });
  const ready = `"${opts.ready ?? 'signer started'}"`;
  let out = '';
  let err = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (err += d));
  // A test file that dies on an uncaught error must not leave its servers running.
  const orphan = () => child.kill('SIGKILL');
  process.once('exit', orphan);
  const exited = new Promise<number | null>((r) =>
    child.on('exit', (code) => {
      process.off('exit', orphan);
      r(code);
    }),
  );
  const until = Date.now() + timeoutMs;
  while (!out.includes(ready)) {
    if (child.exitCode !== null || Date.now() > until) {
      child.kill('SIGKILL');
      const why = child.exitCode !== null ? `exited with ${child.exitCode}` : `not started in ${timeoutMs} ms`;
      throw new Error(`signer did not start (${why}): ${err || out}`);
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  return {
    child,
    logs: () => out,
    exited,
    async stop(signal = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}
