import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import t from 'tap';
import { repoRoot, tempDir } from '../harness/token.js';

// `npm run bench` in its quick mode, end to end: every section runs (real signers, raw pkcs11js,
// PostgreSQL, cosigners) and prints its rows with figures, then the profiled pass. Speed is never
// asserted: the figures of a quick run on a shared machine mean nothing, only that they are there.
// Part of `npm test` on purpose: the bench's code (the profiled pass too) must keep working, and
// nothing here reads its figures as a verdict.
t.setTimeout(30 * 60_000);
const tmp = await tempDir('bench-smoke-');
t.teardown(() => tmp.cleanup());
const out = `${tmp.path}/results.json`;

const child = spawn(process.execPath, ['--import', 'tsx', 'bench/bench.ts', '--out', out], {
  cwd: repoRoot,
  env: { ...process.env, BENCH_QUICK: '1' },
  stdio: ['ignore', 'pipe', 'pipe'],
});
let stdout = '';
let stderr = '';
child.stdout.on('data', (d) => (stdout += d));
child.stderr.on('data', (d) => (stderr += d));
const code = await new Promise<number | null>((r) => child.on('exit', r));
t.equal(code, 0, `the bench exits 0${code ? `; stderr: ${stderr.slice(-2000)}` : ''}`);
const lines = stdout.split('\n');

/** The lines of the table printed after the line starting with `title`, up to the next blank line. */
function tableAfter(title: string): string[] {
  const start = lines.findIndex((l) => l.startsWith(title));
  if (start < 0) return [];
  const end = lines.indexOf('', start);
  return lines.slice(start + 3, end < 0 ? undefined : end).filter((l) => !l.startsWith('!'));
}
const numeric = /^-?\d+(\.\d+)?(%|x)?$/;
/** The cells of a table line (split on '|', then on blanks and '/'), without the row's name, c and flag. */
const cells = (line: string) =>
  line
    .split('|')
    .slice(1)
    .flatMap((c) => c.trim().split(/\s+|\s*\/\s*/))
    .filter((x) => x && x !== '!');

t.test('the headline: one-core efficiency, CPU beyond the HSM, latency at c=1', async (t) => {
  const pinning = lines.find((l) => l.startsWith('One-core efficiency: '));
  t.ok(pinning, 'the headline is printed');
  t.match(pinning ?? '', /signer on CPU \d+, load generator on CPU \d+|NOT pinned \(.+\)/, 'says where it ran');
  const rows = tableAfter('One-core efficiency: ');
  const want = [
    ['secp256k1 digest Sign', 64],
    ['hot EVM Sign, SQLite', 64],
    ['secp256k1 digest Sign', 1],
  ] as const;
  t.equal(rows.length, want.length, 'three headline rows');
  for (const [point, c] of want) {
    const row = rows.find((l) => l.startsWith(point) && l.slice(0, l.indexOf('|')).trim().endsWith(` ${c}`));
    t.ok(row, `${point} c=${c} is a row`);
    const figures = cells(row ?? '');
    // raw/s, svc/s, svc/raw, raw µs, svc µs, beyond HSM µs, raw p50, p99, svc p50, p99
    t.equal(figures.length, 10, `${point} c=${c}: ten figures (${row})`);
    for (const x of figures) t.match(x, numeric, `${point} c=${c}: ${x} is a number`);
  }
});

t.test('every point the README reports has figures', async (t) => {
  const rows = tableAfter('Every point against its baseline');
  const want = [
    ['secp256k1 digest Sign', 'all', 1],
    ['secp256k1 digest Sign', 'all', 16],
    ['secp256k1 digest Sign', 'all', 64],
    ['P-256 digest Sign', 'all', 64],
    ['Ed25519 message Sign', 'all', 64],
    ['hot EVM Sign, SQLite', 'all', 64],
    ['hot EVM Sign, PostgreSQL', 'all', 64],
    ['FROST(Ed25519) 2-of-3 Sign', 'all', 1],
    ['FROST(Ed25519) 2-of-3 Sign', 'all', 16],
    ['FROST(secp256k1) BIP340 2-of-3', 'all', 1],
    ['FROST(secp256k1) BIP340 2-of-3', 'all', 16],
  ] as const;
  for (const [point, cpus, c] of want) {
    const row = rows.find((l) => l.startsWith(point) && new RegExp(` ${cpus} +${c} \\|`).test(l));
    t.ok(row, `${point} ${cpus} c=${c} is a row`);
    // baseline /s p50 p99, service /s p50 p99, ratios
    const figures = (row ?? '').split('|').slice(1, 4).join(' ').trim().split(/\s+/);
    figures.splice(0, 1); // the baseline's name
    t.equal(figures.length, 8, `${point} c=${c}: eight figures (${row})`);
    for (const x of figures) t.match(x, numeric, `${point} c=${c}: ${x} is a number`);
  }
  const batch = tableAfter('SignBatch of 1000 EVM payouts');
  t.equal(batch.length, 1, 'one SignBatch row');
  for (const x of cells(batch[0] ?? '')) t.match(x, numeric, `SignBatch: ${x} is a number`);
  const prio = tableAfter('Hot Sign, signer idle vs');
  t.equal(prio.length, 1, 'one priority row');
  t.match(prio[0] ?? '', /\|\s+-?\d+\.\d+x \|/, 'priority: p99 busy/idle is a number');
  const rss = tableAfter("The signer's RSS under full load");
  t.equal(rss.length, 1, 'one RSS row');
  for (const x of cells(rss[0] ?? '').slice(0, -2)) t.match(x, numeric, `RSS: ${x} is a number`);
});

t.test('the run ends with the targets of issue 14, where the time goes, and what was tried', async (t) => {
  const start = lines.findIndex((l) => l.startsWith('Targets of issue 14'));
  t.ok(start >= 0, 'the targets table is printed');
  const rows = tableAfter('Targets of issue 14');
  for (const point of [
    'PostgreSQL CPU a sign',
    'SignBatch of 1000 EVM',
    'hot p99 during back-to-back',
    'RSS of the signer',
  ]) {
    const row = rows.find((l) => l.startsWith(point));
    t.match(row ?? '', /\| (met|NOT met)( !)? +\|/, `${point}: measured and judged`);
  }
  // A miss with a profiled point says the profile, and names its row of the profile table.
  for (const row of rows.filter(
    (l) => / NOT met( !)? +\| /.test(l) && !l.startsWith('RSS') && !l.startsWith('PostgreSQL CPU'),
  )) {
    t.match(
      row,
      /JS thread [\d,]+ µs a sign: .+ \(profiled pass, \d+ signs\).*\[Where the time goes #\d+/,
      row.slice(0, 60),
    );
  }
  const profiled = tableAfter('Where the time goes (profiled pass');
  const want = [
    ['secp256k1 digest Sign', 'one', 64, 'signer'],
    ['hot EVM Sign, SQLite', 'one', 64, 'signer'],
    ['secp256k1 digest Sign', 'one', 1, 'signer'],
    ['hot EVM Sign, PostgreSQL', 'all', 64, 'signer'],
    ['SignBatch (EVM)', 'all', 1, 'signer'],
    ['hot EVM Sign during batches', 'all', 8, 'signer'],
    ...['FROST(Ed25519) 2-of-3 Sign', 'FROST(secp256k1) BIP340 2-of-3'].flatMap((p) =>
      ['signer', 'cosigner-1', 'cosigner-2', 'cosigner-3'].map((who) => [p, 'all', 1, who] as const),
    ),
  ] as const;
  t.equal(profiled.length, want.length, 'one profile row per profiled point and process');
  for (const [point, cpus, c, who] of want) {
    const re = new RegExp(
      `^ *\\d+  ${point.replace(/[()]/g, '\\$&')}.* ${cpus} +${c} +${who} +\\d+ \\| +\\d+ +\\d+% \\| [a-zA-Z].* \\d+`,
    );
    t.ok(
      profiled.some((l) => re.test(l)),
      `${point} ${cpus} c=${c} ${who}: signs, JS µs a sign, busy, phases`,
    );
  }
  const tried = lines.findIndex((l) => l.startsWith('What was tried, per target'));
  t.ok(tried > start, 'what was tried follows');
  t.ok(
    lines.slice(tried + 1).every((l) => l.startsWith('- ') || l === ''),
    'one line per target, to the end',
  );
});

t.test('the JSON results hold every row', async (t) => {
  const json = JSON.parse(await readFile(out, 'utf8')) as {
    rows: unknown[];
    batches: unknown[];
    priority: unknown[];
    rss: Array<{ samples: unknown[] }>;
    targets: Array<{ point: string; goal: string; measured: string; tried?: string; profile?: unknown[] }>;
    profiles: Array<{ js: { phases: Array<{ phase: string; usPerSign: number }> }; fromSeconds: number }>;
  };
  t.equal(json.rows.length, 3 + 8 + 6, 'one-core, shared (with rollback mark on vs off) and threshold rows');
  t.equal(json.batches.length, 1);
  t.equal(json.priority.length, 1);
  t.equal(json.rss.length, 1);
  t.ok((json.rss[0]?.samples.length ?? 0) >= 2, 'RSS samples from the start to the end of the window');
  t.ok(json.targets.length >= 10, 'the targets, each with its point, goal and measured figure');
  for (const x of json.targets) t.ok(x.point && x.goal && x.measured, `target ${x.point}`);
  for (const x of json.targets) t.ok(x.tried, `target ${x.point}: what was tried`);
  t.ok(json.targets.filter((x) => x.profile?.length).length >= 8, 'targets carry the profiled points they rest on');
  t.equal(json.profiles.length, 14, 'six single-key profiled points, and four processes for each FROST suite');
  for (const p of json.profiles) {
    t.ok(p.js.phases.length > 0 && p.js.phases.every((x) => x.usPerSign >= 0), 'phases in µs a sign');
    t.ok(p.fromSeconds > 0, 'the window starts after the process started');
  }
});
