import { spawn } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import t from 'tap';
import { attribute, type CallFrame, type CpuProfile, phaseOf } from '../bench/phases.js';
import type { Row } from '../bench/point.js';
import { type ProfiledPoint, ProfileSession, profileWhy } from '../bench/profiled.js';
import { batchItemsIn } from '../bench/profiled-single.js';
import { checkTargets, POINTS } from '../bench/targets.js';
import { tempDir } from '../harness/token.js';

// The profiled pass's attribution (bench/phases.ts) on a small synthetic .cpuprofile, and one
// real `node --cpu-prof` child whose window is cut out of its profile by time.

const NM = 'file:///work/main/node_modules';
const SRC = 'file:///work/repo/src';
const frame = (functionName: string, url = ''): CallFrame => ({ functionName, url, lineNumber: 0 });
const F = {
  root: frame('(root)'),
  idle: frame('(idle)'),
  gc: frame('(garbage collector)'),
  program: frame('(program)'),
  grpc: frame('handleUnary', `${NM}/@grpc/grpc-js/build/src/server.js`),
  stream: frame('write', 'node:internal/streams/writable'),
  flow: frame('sign', `${SRC}/signer/signing/flow.ts`),
  store: frame('commitGroup', `${SRC}/infra/store/sqlite.ts`),
  sqlite: frame('run', `${NM}/better-sqlite3/lib/methods/wrappers.js`),
  merkle: frame('nodeHash', `${SRC}/core/audit/merkle.ts`),
  sha256: frame('sha256', `${NM}/@noble/hashes/sha2.js`),
  keccak: frame('keccak_256', `${NM}/@noble/hashes/sha3.js`),
  selfcheck: frame('selfCheck', `${SRC}/signer/signing/selfcheck.ts`),
  secp: frame('ecdsaRecover', `${NM}/secp256k1/lib/elliptic.js`),
  frost: frame('signShare', `${SRC}/core/frost/native-frost.ts`),
  reqsig: frame('verifyRequest', `${SRC}/signer/grpc/request-signature.ts`),
  guard: frame('beforeRelease', `${SRC}/signer/audit/rollback-guard.ts`),
  hsm: frame('sign', `${SRC}/infra/hsm/pool.ts`),
  pkcs11: frame('C_SignInit'),
  evm: frame('decodeEvm', `${SRC}/core/payloads/evm.ts`),
  prom: frame('observe', `${NM}/prom-client/lib/histogram.js`),
  schnorr: frame('verify', `${NM}/@noble/curves/secp256k1.js`),
  coordinator: frame('aggregate', `${SRC}/signer/threshold/rounds.ts`),
  crypto: frame('verify', 'node:internal/crypto/sig'),
  cosignerCheck: frame('checkRequest', `${SRC}/cosigner/request-check.ts`),
};

t.test('each stack gets the phase its table says', async (t) => {
  // Stacks leaf first.
  const cases: Array<[string, CallFrame[], string]> = [
    ['a handler called by grpc-js is not gRPC', [F.flow, F.grpc, F.root], 'other'],
    ["node's streams under grpc-js", [F.stream, F.grpc, F.root], 'gRPC'],
    ["node's streams alone", [F.stream, F.root], 'gRPC'],
    ['better-sqlite3 (its native calls) under the store', [F.sqlite, F.store, F.flow, F.grpc], 'store'],
    [
      'sha256 under the audit tree under the store: the innermost specific frame',
      [F.sha256, F.merkle, F.store],
      'audit',
    ],
    ['sha256 with no service frame: its generic phase', [F.sha256, F.root], 'audit'],
    ['keccak with no service frame: payload decode, not audit', [F.keccak, F.root], 'payload decode'],
    ['keccak under payload decode', [F.keccak, F.evm, F.flow], 'payload decode'],
    ['sha256 under the request signature check (owner)', [F.sha256, F.reqsig, F.grpc], 'request signature'],
    ['libsecp256k1 under the self-check (owner)', [F.secp, F.selfcheck, F.flow], 'self-check'],
    ['libsecp256k1 under FROST (owner): FROST math, not self-check', [F.secp, F.frost, F.flow], 'FROST math'],
    ['libsecp256k1 alone: its generic phase', [F.secp, F.root], 'self-check'],
    [
      'the rollback guard owns the store and audit work under it',
      [F.sha256, F.merkle, F.store, F.guard, F.flow],
      'rollback mark',
    ],
    ['a native C_* frame', [F.pkcs11, F.hsm, F.flow], 'HSM calls'],
    ['the HSM pool (its native calls have no frame of their own)', [F.hsm, F.flow], 'HSM calls'],
    ['metrics own what they call', [F.stream, F.prom, F.flow], 'metrics'],
    ['GC', [F.gc, F.root], 'GC'],
    ['(program): native work with no JavaScript on the stack', [F.program, F.root], 'native'],
    ['noble under service code of no phase keeps its phase', [F.schnorr, F.coordinator, F.grpc], 'FROST math'],
    ['a node internal with no phase under service code of no phase', [F.crypto, F.coordinator, F.grpc], 'other'],
    ['a cosigner’s request check', [F.sha256, F.cosignerCheck, F.grpc], 'request signature'],
  ];
  for (const [what, stack, phase] of cases) t.equal(phaseOf(stack), phase, what);
});

/** A profile of the given stacks (root last), one sample each with its delta. */
function profileOf(startTime: number, samples: Array<[CallFrame[], number]>): CpuProfile {
  const nodes: CpuProfile['nodes'] = [{ id: 1, callFrame: F.root, children: [] }];
  const ids: number[] = [];
  for (const [stack] of samples) {
    let parent = nodes[0]!;
    for (const cf of [...stack].reverse()) {
      const existing = (parent.children ?? []).map((c) => nodes[c - 1]!).find((n) => n.callFrame === cf);
      if (existing) parent = existing;
      else {
        const n = { id: nodes.length + 1, callFrame: cf, children: [] };
        nodes.push(n);
        parent.children!.push(n.id);
        parent = n;
      }
    }
    ids.push(parent.id);
  }
  const timeDeltas = samples.map(([, dt]) => dt);
  const endTime = startTime + timeDeltas.reduce((a, b) => a + b, 0);
  return { nodes, startTime, endTime, samples: ids, timeDeltas };
}

t.test('busy time by phase, cut to a window by the samples’ time', async (t) => {
  const start = 1_000_000;
  const p = profileOf(start, [
    [[F.flow, F.grpc], 5000], // t = +5000: start-up, before the window
    [[F.sqlite, F.store, F.flow], 1000], // +6000
    [[F.sha256, F.merkle, F.store], 300], // +6300
    [[F.idle], 700], // +7000
    [[F.gc], 200], // +7200
    [[F.stream, F.grpc], 400], // +7600
    [[F.sqlite, F.store], 500], // +8100: after the window
  ]);
  const a = attribute(p, start + 5500, start + 7600);
  t.equal(a.samples, 5, 'five samples fall in the window');
  t.equal(a.busyUs, 1000 + 300 + 200 + 400);
  t.equal(a.idleUs, 700);
  t.same(
    a.phases.map((x) => [x.phase, x.us]),
    [
      ['store', 1000],
      ['gRPC', 400],
      ['audit', 300],
      ['GC', 200],
    ],
    'largest first',
  );
  t.equal(a.windowUs, 7600 - 5000, 'from the first sample’s start to the last sample');
  const all = attribute(p);
  t.equal(all.busyUs + all.idleUs, 8100, 'no window: every sample');
  t.equal(all.phases.find((x) => x.phase === 'other')?.us, 5000, 'the handler frame under grpc-js: other');
});

t.test('the why sentence of a profiled point', async (t) => {
  const why = profileWhy({
    point: 'secp256k1 digest Sign',
    cpus: 'one',
    concurrency: 64,
    process: 'signer',
    seconds: 4,
    signs: 1600,
    fromSeconds: 12,
    samples: 4000,
    file: 'CPU.cpuprofile',
    from: 11,
    to: 15,
    js: {
      usPerSign: 2310.4,
      busy: 0.93,
      phases: [
        { phase: 'store', usPerSign: 710 },
        { phase: 'HSM calls', usPerSign: 400 },
        { phase: 'gRPC', usPerSign: 250 },
      ],
    },
    otherThreadsUsPerSign: 820,
  });
  t.equal(
    why,
    'JS thread 2,310 µs a sign: store 710 µs, HSM calls 400 µs, gRPC 250 µs (profiled pass, 1600 signs);' +
      ' other threads 820 µs (HSM signing on the libuv pool, fsync, workers)',
  );
});

t.test('batch items counted by their share inside a window', async (t) => {
  const win = { start: 1000, end: 2000 };
  const batches = [
    { start: 500, end: 1500, items: 100 }, // half inside
    { start: 1500, end: 1900, items: 40 }, // all inside
    { start: 1900, end: 2900, items: 100 }, // a tenth inside
    { start: 3000, end: 4000, items: 100 }, // outside
  ];
  t.equal(batchItemsIn(batches, win), 50 + 40 + 10);
});

t.test('a real --cpu-prof child: the window is cut out of its profile by time', async (t) => {
  const tmp = await tempDir('bench-phases-');
  t.teardown(() => tmp.cleanup());
  // A "store" module (by its path) that idles for 300 ms (start-up), says so, then keeps the
  // thread busy for 2.5 s.
  await mkdir(`${tmp.path}/src/infra/store`, { recursive: true });
  const script = `${tmp.path}/src/infra/store/fake.mjs`;
  await writeFile(
    script,
    [
      'function commitGroup(until) { let x = 0; while (performance.now() < until) x += Math.sqrt(x + 1); return x; }',
      "setTimeout(() => { process.stdout.write('busy\\n'); commitGroup(performance.now() + 2500); }, 300);",
    ].join('\n'),
  );
  const session = new ProfileSession(`${tmp.path}/profiles`, () => {});
  const t0 = session.now();
  const child = spawn(process.execPath, [...session.nodeArgs('child'), script], {
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  session.started('child', child.pid!, t0, 'signer');
  const exited = new Promise((r) => child.on('exit', r));
  await new Promise((r) => child.stdout.once('data', r));
  // The load: an op of ~20 ms; the window opens 200 ms after the child got busy, for 600 ms.
  const op = () => new Promise<number>((r) => setTimeout(() => r(1), 20));
  const key = { point: 'fake', cpus: 'all' as const, concurrency: 1 };
  const load = await session.measure(key, ['child'], op, { seconds: 0.6, warmup: 0.2 });
  await exited;
  session.finish('child');
  t.equal(session.points.length, 1, 'one profiled point');
  const p = session.points[0]!;
  t.equal(p.signs, load.units, 'signs: the operations of the window');
  t.ok(p.fromSeconds >= 0.5 && p.fromSeconds < 10, `the window starts after start-up (${p.fromSeconds.toFixed(2)} s)`);
  t.ok(p.samples > 50, `samples in the window (${p.samples})`);
  // Uncut, the profile would hold the whole 2.5 s of busy time; cut, about the window's length.
  const busySeconds = (p.js.usPerSign * p.signs) / 1e6;
  t.ok(
    busySeconds > 0.7 * p.seconds && busySeconds < 1.3 * p.seconds,
    `busy time in the window (${busySeconds.toFixed(2)} s) is about the window (${p.seconds.toFixed(2)} s)`,
  );
  t.ok(p.js.busy > 0.8, `the JS thread was busy in the window (${(p.js.busy * 100).toFixed(0)}%)`);
  t.equal(p.js.phases[0]?.phase, 'store', 'the busy time is the store module’s');
  t.ok(p.otherThreadsUsPerSign !== undefined, 'other threads from /proc');
  t.ok(
    p.to - p.from > 0.5 && p.from > 0.3,
    `the window in the profile's seconds (${p.from.toFixed(2)}-${p.to.toFixed(2)})`,
  );
});

t.test("a missed target's why is its profiled point's, naming the row; every target says what was tried", async (t) => {
  const side = (unitsPerSec: number, cpu: Record<string, { usPerSign: number }>) =>
    ({ unitsPerSec, p50Ms: 1, p99Ms: 2, cpu, machine: { otherCores: 0 } }) as unknown as Row['service'];
  const row = (concurrency: number): Row => ({
    point: POINTS.digest,
    cpus: 'one',
    concurrency,
    base: { name: 'raw', ...side(1000, { raw: { usPerSign: 700 } }) },
    service: side(300, { signer: { usPerSign: 2500 } }),
  });
  const profiled = (concurrency: number, usPerSign: number): ProfiledPoint => ({
    point: POINTS.digest,
    cpus: 'one',
    concurrency,
    process: 'signer',
    seconds: 4,
    signs: 1200,
    fromSeconds: 20,
    samples: 4000,
    file: 'CPU.cpuprofile',
    from: 19,
    to: 23,
    js: { usPerSign, busy: 0.9, phases: [{ phase: 'store', usPerSign: usPerSign / 2 }] },
  });
  const targets = checkTargets({
    rows: [row(64), row(1)],
    batches: [],
    priority: [],
    rss: [],
    profiles: [profiled(1, 3000), profiled(64, 2000)],
  });
  const c64 = targets.find((x) => x.key === 'digest-c64')!;
  t.equal(c64.met, false, 'missed (30% of raw)');
  t.match(
    c64.why,
    /^JS thread 2,000 µs a sign: store 1,000 µs \(profiled pass, 1200 signs\) \[Where the time goes #2\]$/,
  );
  t.equal(c64.profile?.length, 1, 'the profiled point rides along (JSON)');
  const c1 = targets.find((x) => x.key === 'c1-p50')!;
  t.equal(c1.met, true, 'met: p50 equal to raw');
  t.match(c1.why, /\[Where the time goes #1\]/, 'a met target keeps its profile in the JSON too');
  for (const x of targets) t.ok(x.tried && x.tried.length > 10, `${x.point}: what was tried`);
  const plain = checkTargets({ rows: [row(64)], batches: [], priority: [], rss: [] });
  t.match(plain[0]!.why, /^signer 2500 µs a sign/, 'no profiled pass: the measured CPU figures');
});
