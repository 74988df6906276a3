/**
 * Throwaway PostgreSQL for tests.
 *
 * - `SIGNER_TEST_PG_URL` set: a fresh database with a random name on that server, dropped on stop.
 * - otherwise: a private cluster (initdb + pg_ctl) in a temp dir, listening on 127.0.0.1 on a
 *   free port, removed on stop. PostgreSQL's binaries come from /usr/lib/postgresql/<version>/bin
 *   (highest version); when there are none they are installed with apt-get (CI runs as root;
 *   `scripts/dev-setup.sh --test` normally does it once before the tests start;
 *   SIGNER_TEST_PG_BIN=<dir> picks another bin dir).
 *
 * The cluster keeps fsync and synchronous_commit on: a commit is durable when it returns, like
 * in production. Only initdb's final sync of the freshly created files is skipped (--no-sync),
 * which saves ~1.5 s per cluster and has no bearing on the durability of later commits.
 */
import { execFile, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync } from 'node:fs';
import { appendFile, chown, mkdir, mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { repoRoot, tempDir } from './token.js';

const run = promisify(execFile);

export interface TestPostgres {
  /** `postgres://...`: connect as a superuser to a database of its own. */
  url: string;
  stop(): Promise<void>;
}

export async function startPostgres(): Promise<TestPostgres> {
  const external = process.env.SIGNER_TEST_PG_URL;
  return external ? freshDatabase(external) : startCluster();
}

/**
 * The prelude of a test file whose stores share one server: the server, a superuser client
 * (pipelined: suites ask several questions at once, and pg 9 refuses to queue them otherwise),
 * and a fresh schema per store (cheaper than a database each). Both end with the file.
 */
export interface SchemaServer {
  server: TestPostgres;
  admin: pg.Client;
  /** An empty schema of its own, and the URL whose connections use it (search_path). */
  freshSchema(): Promise<{ url: string; schema: string }>;
}

export async function startSchemaServer(
  t: { teardown(fn: () => unknown): void },
  prefix = 'store',
): Promise<SchemaServer> {
  const server = await startPostgres();
  const admin = new pg.Client({ connectionString: server.url, pipeline: true });
  await admin.connect();
  t.teardown(async () => {
    await admin.end();
    await server.stop();
  });
  let n = 0;
  return {
    server,
    admin,
    async freshSchema() {
      const schema = `${prefix}_${n++}`;
      await admin.query(`CREATE SCHEMA ${schema}`);
      const url = new URL(server.url);
      url.searchParams.set('options', `-c search_path=${schema}`);
      return { url: url.toString(), schema };
    },
  };
}

/** Creates a database with a random name on an existing server. */
async function freshDatabase(serverUrl: string): Promise<TestPostgres> {
  const name = `signer_test_${randomBytes(6).toString('hex')}`;
  const admin = async <T>(f: (c: pg.Client) => Promise<T>): Promise<T> => {
    const c = new pg.Client({ connectionString: serverUrl });
    await c.connect();
    try {
      return await f(c);
    } finally {
      await c.end();
    }
  };
  await admin((c) => c.query(`CREATE DATABASE ${name}`));
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  let stopped = false;
  return {
    url: url.toString(),
    async stop() {
      if (stopped) return;
      stopped = true;
      await admin((c) => c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`));
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Finding (and if need be installing) PostgreSQL

const PG_ROOT = '/usr/lib/postgresql';

/** `/usr/lib/postgresql/<highest version>/bin`, or undefined when there is none. */
function findBinDir(): string | undefined {
  if (process.env.SIGNER_TEST_PG_BIN) return process.env.SIGNER_TEST_PG_BIN;
  let versions: string[];
  try {
    versions = readdirSync(PG_ROOT);
  } catch {
    return undefined;
  }
  const found = versions
    .filter((v) => existsSync(join(PG_ROOT, v, 'bin', 'initdb')))
    .sort((a, b) => Number.parseFloat(b) - Number.parseFloat(a) || b.localeCompare(a));
  return found[0] && join(PG_ROOT, found[0], 'bin');
}

/** A PostgreSQL client program (pg_dump, pg_restore) of the same installation as the test clusters. */
export function pgTool(name: string): string {
  const bin = findBinDir();
  if (!bin) throw new Error(`no PostgreSQL under ${PG_ROOT}: start a test cluster first (it installs one)`);
  return join(bin, name);
}

const isRoot = () => process.getuid?.() === 0;

/**
 * Installs PostgreSQL with apt-get. Parallel test files may all get here: `flock` makes them
 * queue, and whoever comes second finds it installed.
 */
async function installPostgres(): Promise<string> {
  const lockDir = join(repoRoot, '.test');
  await mkdir(lockDir, { recursive: true });
  const script = [
    `ls ${PG_ROOT}/*/bin/initdb >/dev/null 2>&1 && exit 0`,
    'command -v apt-get >/dev/null 2>&1 || { echo "apt-get not available" >&2; exit 1; }',
    'apt-get update -qq >&2',
    'DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2',
  ].join('\n');
  const sudo = isRoot() ? [] : ['sudo', '-n'];
  const argv = [...sudo, 'flock', join(lockDir, 'apt.lock'), 'sh', '-c', script];
  try {
    await run(argv[0]!, argv.slice(1), { timeout: 600_000, maxBuffer: 64 << 20 });
  } catch (e) {
    const err = e as { stderr?: string; message: string };
    throw new Error(
      `PostgreSQL is not installed (no ${PG_ROOT}/*/bin/initdb) and installing it failed: ` +
        `${(err.stderr || err.message).trim()}\n` +
        'Run `bash scripts/dev-setup.sh --test`, install postgresql yourself, or set SIGNER_TEST_PG_URL ' +
        'to a server where the tests may create databases.',
    );
  }
  const bin = findBinDir();
  if (!bin) throw new Error(`installed postgresql, but ${PG_ROOT}/*/bin/initdb is still missing`);
  return bin;
}

// ---------------------------------------------------------------------------------------------
// The throwaway cluster

interface RunAs {
  uid: number;
  gid: number;
  /** Prefix that runs a command as the cluster's owner. */
  wrap(cmd: string, args: string[]): [string, string[]];
}

/** initdb refuses to run as root: as root, the cluster belongs to the `postgres` user. */
async function clusterOwner(): Promise<RunAs> {
  const self: RunAs = { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0, wrap: (c, a) => [c, a] };
  if (!isRoot()) return self;
  const passwd = await readFile('/etc/passwd', 'utf8');
  const entry = passwd
    .split('\n')
    .map((l) => l.split(':'))
    .find((f) => f[0] === 'postgres');
  if (!entry) {
    throw new Error('running as root and there is no `postgres` user to own the test cluster (initdb refuses root)');
  }
  const uid = Number(entry[2]);
  const gid = Number(entry[3]);
  const runuser = ['/usr/sbin/runuser', '/sbin/runuser', '/usr/bin/runuser'].find((p) => existsSync(p));
  return {
    uid,
    gid,
    wrap: runuser
      ? (c, a) => [runuser, ['-u', 'postgres', '--', c, ...a]]
      : (c, a) => ['su', ['postgres', '-s', '/bin/sh', '-c', [c, ...a].map(shellQuote).join(' ')]],
  };
}

function shellQuote(s: string): string {
  return `'${s.replaceAll("'", `'\\''`)}'`;
}

/** True when `uid`/`gid` may traverse every directory from / down to `dir`. */
async function traversable(dir: string, uid: number, gid: number): Promise<boolean> {
  if (uid === 0) return true;
  for (let d = dir; ; d = dirname(d)) {
    const s = await stat(d);
    const ok = s.uid === uid ? s.mode & 0o100 : s.gid === gid ? s.mode & 0o010 : s.mode & 0o001;
    if (!ok) return false;
    if (d === dirname(d)) return true;
  }
}

/** A temp dir for the cluster: under the repo's .test/ when the owner can reach it, else /tmp. */
async function clusterDir(owner: RunAs): Promise<{ path: string; cleanup(): Promise<void> }> {
  // The socket path (dir + "/.s.PGSQL.NNNNN") must fit in sockaddr_un (107 bytes).
  const base = join(repoRoot, '.test');
  let dir: { path: string; cleanup(): Promise<void> } | undefined;
  try {
    await mkdir(base, { recursive: true });
    if (base.length < 80 && (await traversable(base, owner.uid, owner.gid))) dir = await tempDir('pg-');
  } catch {
    // .test/ not writable (someone else's checkout): fall back to /tmp
  }
  if (!dir) {
    const path = await mkdtemp(join(tmpdir(), 'hsm-signer-pg-'));
    dir = { path, cleanup: () => rm(path, { recursive: true, force: true }) };
  }
  if (owner.uid !== process.getuid?.()) await chown(dir.path, owner.uid, owner.gid);
  return dir;
}

async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r, j) => srv.once('error', j).listen(0, '127.0.0.1', r));
  const { port } = srv.address() as { port: number };
  await new Promise((r) => srv.close(r));
  return port;
}

async function startCluster(): Promise<TestPostgres> {
  const bin = findBinDir() ?? (await installPostgres());
  const owner = await clusterOwner();
  const dir = await clusterDir(owner);
  const data = join(dir.path, 'data');
  const log = join(dir.path, 'postgres.log');
  const as = (cmd: string, args: string[], timeout = 60_000) => {
    const [c, a] = owner.wrap(join(bin, cmd), args);
    return run(c, a, { timeout, env: { ...process.env, LC_ALL: 'C', LANG: 'C' } });
  };
  const fail = async (what: string, e: unknown): Promise<never> => {
    const err = e as { stderr?: string; stdout?: string; message?: string };
    const logText = await readFile(log, 'utf8').catch(() => '');
    await dir.cleanup().catch(() => {});
    throw new Error(
      `${what} failed: ${(err.stderr || err.stdout || err.message || String(e)).trim()}\n${logText.trim()}`,
    );
  };

  try {
    await as('initdb', ['-D', data, '-A', 'trust', '-U', 'postgres', '-E', 'UTF8', '--locale=C', '--no-sync']);
  } catch (e) {
    return fail('initdb', e);
  }
  await appendFile(
    join(data, 'postgresql.conf'),
    [
      '',
      '# hsm-signer test cluster',
      "listen_addresses = '127.0.0.1'",
      `unix_socket_directories = '${dir.path}'`,
      'fsync = on',
      'synchronous_commit = on',
      'max_connections = 200',
      'shared_buffers = 32MB',
      'max_wal_size = 256MB',
      '',
    ].join('\n'),
  );

  // The free port can be taken between probing and binding (parallel test files): try again.
  let port = 0;
  for (let attempt = 1; ; attempt++) {
    port = await freePort();
    try {
      await as('pg_ctl', ['start', '-w', '-t', '60', '-D', data, '-l', log, '-o', `-p ${port}`], 90_000);
      break;
    } catch (e) {
      const logText = await readFile(log, 'utf8').catch(() => '');
      if (attempt < 5 && /could not bind|Address already in use|could not create any TCP\/IP sockets/i.test(logText))
        continue;
      return fail('pg_ctl start', e);
    }
  }

  let stopped = false;
  const stopSync = () => {
    // Last resort when the test process exits without calling stop(): don't leave a server behind.
    if (stopped) return;
    const [c, a] = owner.wrap(join(bin, 'pg_ctl'), ['stop', '-D', data, '-m', 'immediate', '-w']);
    spawnSync(c, a, { stdio: 'ignore', timeout: 10_000 });
    // A server process still exiting may write a last file while rm runs: try again.
    for (let i = 0; i < 3 && spawnSync('rm', ['-rf', dir.path], { stdio: 'ignore' }).status !== 0; i++)
      spawnSync('sleep', ['0.2']);
  };
  process.once('exit', stopSync);

  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    async stop() {
      if (stopped) return;
      stopped = true;
      process.off('exit', stopSync);
      try {
        await as('pg_ctl', ['stop', '-D', data, '-m', 'fast', '-w', '-t', '60'], 90_000);
      } finally {
        await dir.cleanup();
      }
    },
  };
}
