import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { createWriteStream } from 'node:fs';
import { stat, writeFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import t from 'tap';
import {
  auditKey,
  checkpoint,
  entry,
  exportRecords,
  header,
  hex32,
  iterate,
  type Line,
  toLines,
} from '../harness/audit-export.js';
import { repoRoot, tempDir } from '../harness/token.js';
import { type AuditEntry, canonicalJson, checkpointMessage, entryHash, GENESIS } from '../src/core/audit/chain.js';
import { parseCsvLine, toCsvRow } from '../src/core/audit/csv.js';
import { type CheckpointRecord, type EntryRecord, type ExportRecord, parseJsonLine } from '../src/core/audit/format.js';
import { formatReport, type ProblemKind, verifyExport } from '../src/core/audit/verify.js';

const run = promisify(execFile);
const tsx = `${repoRoot}/node_modules/.bin/tsx`;
const FORMATS = ['jsonl', 'csv'] as const;
const key = auditKey();
const other = auditKey('rogue', 1);

// 20 entries, checkpoints over 5, 10, 15 and 20 (the last one is the export's final checkpoint).
const base: Line[] = [...exportRecords({ count: 20, every: 5, keys: [key] })];

const verify = (items: Line[], format: 'jsonl' | 'csv') => verifyExport(iterate(toLines(items, format)));
const isEntry = (r: Line, seq: number): r is EntryRecord =>
  typeof r !== 'string' && r.type === 'entry' && r.seq === seq;
const isCheckpoint = (r: Line, seq: number): r is CheckpointRecord =>
  typeof r !== 'string' && r.type === 'checkpoint' && r.seq === seq;
const find = (rs: Line[], seq: number) => rs.find((r) => isEntry(r, seq)) as EntryRecord;
const where = (rs: Line[], seq: number) => rs.findIndex((r) => isEntry(r, seq));
const whereCheckpoint = (rs: Line[], seq: number) => rs.findIndex((r) => isCheckpoint(r, seq));

/** Replaces entry `seq` by `f(entry)`. */
const edit = (seq: number, f: (e: EntryRecord) => Line) => (rs: Line[]) => rs.map((r) => (isEntry(r, seq) ? f(r) : r));
/** Rewrites entry `seq` and recomputes its hash, as a forger who knows the format would. */
const rewrite = (seq: number, change: Partial<AuditEntry>) => edit(seq, (e) => entry(seq, e.prevHash, change));
const without = (i: (rs: Line[]) => number) => (rs: Line[]) => rs.filter((_, j) => j !== i(rs));
const insertAfter = (i: (rs: Line[]) => number, make: (rs: Line[]) => Line) => (rs: Line[]) => [
  ...rs.slice(0, i(rs) + 1),
  make(rs),
  ...rs.slice(i(rs) + 1),
];
const editCheckpoint = (seq: number, f: (c: CheckpointRecord) => Line) => (rs: Line[]) =>
  rs.map((r) => (isCheckpoint(r, seq) ? f(r) : r));
const flipHex = (h: string, at: number) => h.slice(0, at) + (h[at] === '0' ? '1' : '0') + h.slice(at + 1);

t.test('chain: canonical JSON, entry hash and checkpoint message are what the contract says', async (t) => {
  t.equal(
    canonicalJson({ b: 1, a: [true, null, 'x'], c: { z: '', y: -0.5 } }),
    '{"a":[true,null,"x"],"b":1,"c":{"y":-0.5,"z":""}}',
  );
  for (const bad of [
    1n,
    undefined,
    () => 1,
    Symbol('s'),
    NaN,
    Infinity,
    new Date(0),
    new Uint8Array(1),
    { a: undefined },
  ]) {
    t.throws(() => canonicalJson(bad), `refuses ${String(typeof bad === 'symbol' ? 'symbol' : bad)}`);
  }
  const e = entry(1, GENESIS);
  const { type: _type, hash, prevHash, ...body } = e;
  const sortKeys = (_k: string, v: unknown) =>
    v && typeof v === 'object' && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => (a < b ? -1 : 1)))
      : v;
  const independent = createHash('sha256')
    .update(Buffer.from(prevHash, 'hex'))
    .update(JSON.stringify(body, sortKeys))
    .digest('hex');
  t.equal(hash, independent, 'sha256(prevHash bytes || sorted compact JSON of the rest)');
  t.throws(
    () => entryHash({ ...body, prevHash, extra: 1 } as never),
    /unknown field/,
    'an unknown field is not silently left out',
  );
  t.throws(() => entryHash({ ...body, prevHash: hash.toUpperCase() }), /prevHash/, 'hex is lowercase');
  t.equal(Buffer.from(checkpointMessage(7, hash)).toString(), `hsm-signer-audit-checkpoint/1\n7\n${hash}`);
});

t.test('record parsers are strict and say which line and field', async (t) => {
  const e = entry(5, hex32(4, 3));
  t.same(parseJsonLine(JSON.stringify(e), 3), e);
  t.same(parseCsvLine(toCsvRow(e), 3), e, 'CSV round trip, quotes and commas included');
  const cases: Array<[string, () => unknown, RegExp]> = [
    ['not JSON', () => parseJsonLine('{"type":', 9), /not a JSON record/],
    ['unknown field', () => parseJsonLine(JSON.stringify({ ...e, note: 'x' }), 9), /unknown field "note"/],
    ['missing field', () => parseJsonLine(JSON.stringify({ ...e, reason: undefined }), 9), /lacks the field "reason"/],
    [
      'uppercase hex',
      () => parseJsonLine(JSON.stringify({ ...e, hash: e.hash.toUpperCase() }), 9),
      /entry\.hash must be 64 lowercase hex/,
    ],
    [
      'empty string for null',
      () => parseJsonLine(JSON.stringify({ ...e, client: '' }), 9),
      /entry\.client must be a non-empty string/,
    ],
    [
      'control character',
      () => parseJsonLine(JSON.stringify({ ...e, requestId: 'a\nb' }), 9),
      /requestId must be .*without control characters/,
    ],
    [
      'local time',
      () => parseJsonLine(JSON.stringify({ ...e, at: '2026-01-01T00:00:00+01:00' }), 9),
      /entry\.at must be an ISO 8601 UTC time/,
    ],
    [
      'unknown format',
      () => parseJsonLine(JSON.stringify({ ...header([key]), format: 'hsm-signer-audit/2' }), 9),
      /unknown format/,
    ],
    ['CSV cell count', () => parseCsvLine('entry,1', 9), /26 cells/],
    [
      'CSV stray cell',
      () => parseCsvLine(toCsvRow(e).replace(/,,$/, ',2026,'), 9),
      /column to must be empty in a entry row/,
    ],
    [
      'CSV non-canonical intent',
      () => parseCsvLine(toCsvRow(e).replace('{""chainId"":""1"",', '{""chainId"": ""1"",'), 9),
      /intent must be canonical JSON/,
    ],
    ['CSV bad quoting', () => parseCsvLine(toCsvRow(e).replace('"r-5', 'x"r-5'), 9), /quote/],
  ];
  for (const [name, f, message] of cases) {
    t.throws(f, { name: 'MalformedRecord', line: 9, message }, name);
  }
});

t.test('an untouched export verifies, in both formats', async (t) => {
  for (const format of FORMATS) {
    const report = await verify(base, format);
    t.same(
      report,
      {
        ok: true,
        format,
        entries: 20,
        checkpoints: 4,
        firstSeq: 1,
        lastSeq: 20,
        from: find(base, 1).at,
        to: find(base, 20).at,
      },
      format,
    );
    t.equal(
      formatReport(report),
      `OK: 20 entries (seq 1..20), 4 checkpoints, covering ${find(base, 1).at} .. ${find(base, 20).at}`,
    );
  }
});

t.test('a period export starting mid-chain verifies, also across an audit key rotation', async (t) => {
  const v2 = auditKey('_audit', 2);
  const period = [
    ...exportRecords({ first: 500, count: 37, every: 10, keys: [key, v2], keyFor: (seq) => (seq < 520 ? key : v2) }),
  ];
  for (const format of FORMATS) {
    const report = await verify(period, format);
    t.match(report, { ok: true, entries: 37, checkpoints: 5, firstSeq: 500, lastSeq: 536 }, format);
  }
});

type Row = [name: string, tamper: (rs: Line[]) => Line[], kind: ProblemKind, seq: number | null];
const forged = (rs: Line[]) =>
  entry(13, find(rs, 12).hash, {
    requestId: 'forged',
    intent: {
      kind: 'evm',
      chainId: '1',
      nonce: '13',
      to: '0x000000000000000000000000000000000000dEaD',
      value: '1000000',
    },
  });
const rows: Row[] = [
  ['change a value in an intent', edit(6, (e) => ({ ...e, intent: { ...e.intent!, value: '6000000' } })), 'changed', 6],
  ['change a decision', edit(12, (e) => ({ ...e, decision: 'allowed' })), 'changed', 12],
  ['change a reason', edit(8, (e) => ({ ...e, reason: 'POLICY_DENIED' })), 'changed', 8],
  ['change a time', edit(3, (e) => ({ ...e, at: '2026-01-01T00:00:04.000Z' })), 'changed', 3],
  ['change a hash', edit(9, (e) => ({ ...e, hash: flipHex(e.hash, 10) })), 'changed', 9],
  ['change a prevHash', edit(9, (e) => ({ ...e, prevHash: flipHex(e.prevHash, 10) })), 'changed', 9],
  ['rewrite an entry with a recomputed hash', rewrite(7, { client: 'someone-else' }), 'changed', 7],
  ['rewrite the entry a checkpoint covers, hash recomputed', rewrite(10, { decision: 'refused' }), 'changed', 10],
  ['rewrite an entry and its prevHash, hash recomputed', edit(8, () => entry(8, hex32(8, 9))), 'changed', 8],
  ['rewrite seq 1 to link elsewhere, hash recomputed', edit(1, () => entry(1, hex32(0, 9))), 'changed', 1],
  ['delete an entry in the middle', without((rs) => where(rs, 12)), 'missing', 12],
  ['delete two entries', (rs) => without((r) => where(r, 13))(without((r) => where(r, 12))(rs)), 'missing', 12],
  ['delete the entry a mid-export checkpoint covers', without((rs) => where(rs, 10)), 'missing', 10],
  ['delete the last entry before the final checkpoint', without((rs) => where(rs, 20)), 'truncated', 20],
  ['insert a forged entry with a self-consistent hash', insertAfter((rs) => where(rs, 12), forged), 'inserted', 13],
  [
    'insert a forged entry that does not link',
    insertAfter(
      (rs) => where(rs, 12),
      () => entry(13, hex32(1, 1), { requestId: 'forged' }),
    ),
    'inserted',
    13,
  ],
  [
    'insert a forged entry and renumber the rest up to the checkpoint',
    (rs) => {
      const genuine = [13, 14, 15].map((seq) => find(rs, seq));
      const out = insertAfter((r) => where(r, 12), forged)(rs);
      let prev = (out[where(out, 12) + 1] as EntryRecord).hash;
      for (const g of genuine) {
        const renumbered = entry(g.seq + 1, prev, { at: g.at });
        out[out.indexOf(g)] = renumbered;
        prev = renumbered.hash;
      }
      return out;
    },
    'inserted',
    16,
  ],
  [
    'duplicate an entry',
    insertAfter(
      (rs) => where(rs, 6),
      (rs) => find(rs, 6),
    ),
    'inserted',
    6,
  ],
  [
    'copy an earlier entry further on',
    insertAfter(
      (rs) => where(rs, 8),
      (rs) => find(rs, 3),
    ),
    'inserted',
    3,
  ],
  [
    'swap two entries',
    (rs) => rs.map((r) => (isEntry(r, 13) ? find(rs, 14) : isEntry(r, 14) ? find(rs, 13) : r)),
    'reordered',
    13,
  ],
  [
    'swap two entries around a checkpoint',
    (rs) => rs.map((r) => (isEntry(r, 10) ? find(rs, 11) : isEntry(r, 11) ? find(rs, 10) : r)),
    'reordered',
    10,
  ],
  [
    'swap the first two entries',
    (rs) => rs.map((r) => (isEntry(r, 1) ? find(rs, 2) : isEntry(r, 2) ? find(rs, 1) : r)),
    'reordered',
    1,
  ],
  [
    'move a checkpoint later',
    (rs) =>
      insertAfter(
        (r) => where(r, 12),
        () => rs[whereCheckpoint(rs, 10)]!,
      )(without((r) => whereCheckpoint(r, 10))(rs)),
    'inserted',
    11,
  ],
  ['drop the final checkpoint', without((rs) => whereCheckpoint(rs, 20)), 'truncated', 20],
  ['cut the file inside the last checkpointed stretch', (rs) => rs.slice(0, where(rs, 17) + 1), 'truncated', 17],
  ['cut the start up to a checkpoint', (rs) => [rs[0]!, ...rs.slice(whereCheckpoint(rs, 5))], 'missing', 5],
  ['keep only the header', (rs) => rs.slice(0, 1), 'truncated', null],
  [
    'flip a byte in a checkpoint signature',
    editCheckpoint(10, (c) => ({ ...c, signature: flipHex(c.signature, 20) })),
    'bad-checkpoint',
    10,
  ],
  [
    'edit a checkpoint head hash',
    editCheckpoint(10, (c) => ({ ...c, headHash: flipHex(c.headHash, 3) })),
    'bad-checkpoint',
    10,
  ],
  [
    'checkpoint under an unknown audit key',
    editCheckpoint(15, (c) => checkpoint(15, c.headHash, other)),
    'bad-checkpoint',
    15,
  ],
  [
    'checkpoint under an unknown version of the audit key',
    editCheckpoint(15, (c) => checkpoint(15, c.headHash, { ...key, version: 2 })),
    'bad-checkpoint',
    15,
  ],
  [
    'checkpoint signed by another key under the audit key name',
    editCheckpoint(15, (c) => checkpoint(15, c.headHash, { ...other, keyId: key.keyId })),
    'bad-checkpoint',
    15,
  ],
  [
    'replace the header public key with another key',
    (rs) => [header([{ ...other, keyId: key.keyId }]), ...rs.slice(1)],
    'bad-checkpoint',
    5,
  ],
  [
    'an audit public key that is not a curve point',
    (rs) => [header([{ ...key, publicKey: 'ff'.repeat(32) }]), ...rs.slice(1)],
    'malformed',
    null,
  ],
  [
    'garbage line',
    insertAfter(
      (rs) => where(rs, 4),
      () => 'garbage',
    ),
    'malformed',
    null,
  ],
  ['no header', (rs) => rs.slice(1), 'malformed', null],
  [
    'unknown format',
    (rs) => [{ ...header([key]), format: 'hsm-signer-audit/9' } as never, ...rs.slice(1)],
    'malformed',
    null,
  ],
];

t.test('each tampering is caught with its verdict and the entry it concerns', async (t) => {
  for (const [name, tamper, kind, seq] of rows) {
    for (const format of FORMATS) {
      const report = await verify(tamper(base), format);
      t.match(
        report,
        { ok: false, problem: { kind, seq } },
        `${name} (${format}): ${report.ok ? 'OK' : formatReport(report)}`,
      );
    }
  }
});

t.test('line numbers point at the offending record', async (t) => {
  const forgedAt = where(base, 12) + 2; // the forged entry's 1-based line, right after entry 12
  for (const [format, offset] of [
    ['jsonl', 0],
    ['csv', 1],
  ] as const) {
    const inserted = await verify(insertAfter((rs) => where(rs, 12), forged)(base), format);
    t.match(
      inserted,
      { problem: { kind: 'inserted', line: forgedAt + offset } },
      `${format}: the forged twin, not the genuine one`,
    );
    const garbage = await verify(
      insertAfter(
        (rs) => where(rs, 4),
        () => 'garbage',
      )(base),
      format,
    );
    t.match(
      garbage,
      { problem: { kind: 'malformed', line: where(base, 4) + 2 + offset } },
      `${format}: the garbage line`,
    );
  }
});

t.test('known limit: a cut right after an intermediate checkpoint is a valid, shorter export', async (t) => {
  // The verifier reports the range it can prove; the auditor compares it with the period asked for.
  const report = await verify(base.slice(0, whereCheckpoint(base, 15) + 1), 'jsonl');
  t.match(report, { ok: true, entries: 15, lastSeq: 15 });
});

t.test('scripts/verify-audit.ts: output and exit codes', async (t) => {
  const tmp = await tempDir('audit-verify-');
  t.teardown(() => tmp.cleanup());
  const good = `${tmp.path}/good.jsonl`;
  const bad = `${tmp.path}/bad.csv`;
  await writeFile(good, `${toLines(base, 'jsonl').join('\n')}\n`);
  await writeFile(bad, `${toLines(without((rs) => where(rs, 12))(base), 'csv').join('\r\n')}\r\n`);
  const script = async (...args: string[]) =>
    run(tsx, ['scripts/verify-audit.ts', ...args], { cwd: repoRoot, timeout: 30_000 }).then(
      (r) => ({ code: 0, ...r }),
      (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, stdout: e.stdout, stderr: e.stderr }),
    );

  const ok = await script(good);
  t.equal(ok.code, 0);
  t.match(
    ok.stdout,
    /^OK: 20 entries \(seq 1\.\.20\), 4 checkpoints, covering 2026-01-01T00:00:01\.000Z \.\. 2026-01-01T00:00:20\.000Z\n$/,
  );
  const failed = await script(bad);
  t.equal(failed.code, 1);
  t.match(failed.stdout, /^FAILED at seq 12 \(line \d+\): missing: entry 12 is missing/);
  const json = await script('--json', bad);
  t.equal(json.code, 1);
  t.match(JSON.parse(json.stdout), { ok: false, problem: { kind: 'missing', seq: 12 } });
  const unreadable = await script(`${tmp.path}/nope.jsonl`);
  t.equal(unreadable.code, 2);
  t.match(unreadable.stderr, /cannot read .*nope\.jsonl: ENOENT/);
  t.equal((await script(tmp.path)).code, 2, 'a directory is not an export');
});

t.test('100,000 entries verify in a child process in constant memory', async (t) => {
  const tmp = await tempDir('audit-verify-big-');
  t.teardown(() => tmp.cleanup());
  const file = `${tmp.path}/big.jsonl`;
  const out = createWriteStream(file);
  let started = performance.now();
  for (const r of exportRecords({ count: 100_000, every: 1000, keys: [key] })) {
    if (!out.write(`${JSON.stringify(r as ExportRecord)}\n`)) await once(out, 'drain');
  }
  out.end();
  await once(out, 'finish');
  const writeMs = performance.now() - started;
  const size = (await stat(file)).size;

  started = performance.now();
  // Measured as an auditor runs it, without tap's coverage hooks. A 32 MiB old-space cap makes
  // "does not hold the entries" a checked property: they take ~56 MiB on disk alone.
  const env: NodeJS.ProcessEnv = Object.fromEntries(
    Object.entries(process.env).filter(([k]) => k !== 'NODE_OPTIONS' && !k.startsWith('_TAPJS_')),
  );
  Object.assign(env, { AUDIT_VERIFY_RSS: '1', NODE_OPTIONS: '--max-old-space-size=32' });
  // The timeout only guards against a hang (speed is the bench's business): two test files share two cores here.
  const r = await run(tsx, ['scripts/verify-audit.ts', file], { cwd: repoRoot, timeout: 150_000, env });
  const verifyMs = performance.now() - started;
  t.match(r.stdout, /^OK: 100000 entries \(seq 1\.\.100000\), 100 checkpoints/);
  const rss = Number(/peak RSS: (\d+) KiB/.exec(r.stderr)?.[1]);
  t.ok(rss > 0, 'the verifier reports its peak RSS');
  t.comment(`export: ${(size / 2 ** 20).toFixed(1)} MiB written in ${(writeMs / 1000).toFixed(1)} s`);
  t.comment(
    `verify-audit (child process, tsx start included, heap capped at 32 MiB): ${(verifyMs / 1000).toFixed(1)} s wall, peak RSS ${(rss / 1024).toFixed(0)} MiB`,
  );
});
