import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import http2 from 'node:http2';
import * as grpc from '@grpc/grpc-js';
import t from 'tap';
import { DEFAULT_CLIENTS, makePki } from '../harness/pki.js';
import { freePort, startSignerProcess } from '../harness/process.js';
import { testConfig } from '../harness/signer.js';
import { makeToken, tempDir } from '../harness/token.js';
import { call, connect, nowTimestamp, type SignerClients } from '../src/client/client.js';
import { decodeError } from '../src/client/errors.js';
import { openStore } from '../src/infra/store/open.js';

// Issue 11, point 4: an authenticated client floods a signer process with 10,000 Sign calls
// carrying random 64 KiB key ids and opens 5,000 WatchKeys streams. The signer must stay small
// (metrics, heap, log lines), refuse every call with a status and ErrorInfo, and still stop
// cleanly on SIGTERM: exit 0 within 5 s, watchers ended, the audit log checkpointed to its end.
const SIGNS = 10_000;
const WATCHES = 5_000;
const CONCURRENCY = 64;
const CHANNELS = 8;
/** limits.maxWatchStreamsPerClient by default. */
const DEFAULT_WATCH_CAP = 16;

// 640 MB of key ids through TLS: minutes on a 2-core machine shared with other test runs.
t.setTimeout(600_000);
const tmp = await tempDir('bounds-load-');
t.teardown(() => tmp.cleanup());
const [pki, token] = await Promise.all([makePki(tmp.path, [...DEFAULT_CLIENTS, 'other-engine']), makeToken(tmp.path)]);
const [port, metricsPort] = [await freePort(), await freePort()];
const configFile = `${tmp.path}/signer.json`;
const raw = testConfig(tmp.path, pki, token, {
  listen: `127.0.0.1:${port}`,
  metrics: { listen: `127.0.0.1:${metricsPort}` },
  // Info: every refusal is logged, so the log's line lengths are part of what is checked.
  log: { level: 'info' },
  // No periodic checkpoint during the run: the one covering the stop entry is the final one.
  audit: { checkpointEveryEntries: 1_000_000, checkpointEveryMs: 3_600_000 },
});
await writeFile(configFile, JSON.stringify(raw));
const proc = await startSignerProcess(configFile);
t.teardown(() => proc.stop('SIGKILL'));
const channels: SignerClients[] = Array.from({ length: CHANNELS }, () =>
  connect(`127.0.0.1:${port}`, {
    ca: pki.caCert,
    cert: pki.clients['payment-engine']!.cert,
    key: pki.clients['payment-engine']!.key,
  }),
);
t.teardown(() => channels.forEach((c) => c.close()));
const admin = connect(`127.0.0.1:${port}`, {
  ca: pki.caCert,
  cert: pki.clients['security-admin']!.cert,
  key: pki.clients['security-admin']!.key,
});
t.teardown(() => admin.close());
await call(admin.keyAdmin, 'CreateKey', { keyId: 'hot-load', algorithm: 'ECDSA_SECP256K1' });
// Keys other-engine may watch: enough that a watcher which reads nothing fills its window.
for (let i = 0; i < 40; i++) await call(admin.keyAdmin, 'CreateKey', { keyId: `shared-${i}`, algorithm: 'ED25519' });

async function metrics(): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${metricsPort}/metrics`);
  return res.text();
}
const heapUsed = (text: string) => Number(/^nodejs_heap_size_used_bytes (\S+)$/m.exec(text)?.[1]);

const before = heapUsed(await metrics());
const outcomes = new Map<string, number>();
const count = (k: string) => outcomes.set(k, (outcomes.get(k) ?? 0) + 1);
let withoutReason = 0;

t.test(`${SIGNS} Sign calls with random 64 KiB key ids are refused with ErrorInfo`, async (t) => {
  let next = 0;
  const started = Date.now();
  const worker = async (w: number) => {
    for (let i = next++; i < SIGNS; i = next++) {
      // Every tenth id is short and well-formed but unknown: it must not become a label either.
      const keyId = i % 10 === 9 ? `nope-${randomBytes(6).toString('hex')}` : randomBytes(48 * 1024).toString('base64');
      try {
        await call(channels[w % CHANNELS]!.signer, 'Sign', {
          keyId,
          requestId: `load-${i}`,
          clientTime: nowTimestamp(),
          digest: randomBytes(32),
        });
        count('OK');
      } catch (e) {
        const d = decodeError(e as grpc.ServiceError);
        if (!d.reason) withoutReason++;
        count(`${grpc.status[d.code]} ${d.reason}`);
      }
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, (_, w) => worker(w)));
  t.comment(`${SIGNS} calls in ${Date.now() - started} ms: ${JSON.stringify(Object.fromEntries(outcomes))}`);
  t.equal(withoutReason, 0, 'every refusal carries ErrorInfo');
  t.equal(
    outcomes.get('INVALID_ARGUMENT REQUEST_INVALID'),
    SIGNS - SIGNS / 10,
    'malformed key ids: INVALID_ARGUMENT, REQUEST_INVALID',
  );
  t.equal(outcomes.get('NOT_FOUND KEY_NOT_FOUND'), SIGNS / 10, 'unknown key ids: NOT_FOUND, KEY_NOT_FOUND');
});

const streams: Array<{ s: grpc.ClientReadableStream<unknown>; ended: Promise<grpc.ServiceError | 'end'> }> = [];

t.test(`${WATCHES} WatchKeys streams: the client's first ones are served, the rest refused`, async (t) => {
  let served = 0;
  const refusedWith = new Map<string, number>();
  const settled = await Promise.all(
    Array.from({ length: WATCHES }, (_, i) => {
      const s = (channels[i % CHANNELS]!.signer as any).WatchKeys({}) as grpc.ClientReadableStream<unknown>;
      const ended = new Promise<grpc.ServiceError | 'end'>((r) => s.on('error', r).on('end', () => r('end')));
      streams.push({ s, ended });
      return new Promise<void>((r) => {
        s.once('data', () => {
          served++;
          r();
        });
        void ended.then((e) => {
          if (e !== 'end') {
            const d = decodeError(e);
            const k = `${grpc.status[d.code]} ${d.reason}`;
            refusedWith.set(k, (refusedWith.get(k) ?? 0) + 1);
          }
          r();
        });
      });
    }),
  );
  t.equal(settled.length, WATCHES);
  t.equal(served, DEFAULT_WATCH_CAP, 'as many streams as the per-client cap are served');
  t.same(
    Object.fromEntries(refusedWith),
    { 'RESOURCE_EXHAUSTED CLIENT_OVERLOADED': WATCHES - served },
    'every other one: RESOURCE_EXHAUSTED, CLIENT_OVERLOADED',
  );
});

t.test('the signer stayed small', async (t) => {
  const text = await metrics();
  t.ok(text.length < 1024 * 1024, `/metrics is ${text.length} bytes (< 1 MB)`);
  const labels = new Set([...text.matchAll(/signer_signs_total\{key="([^"]*)"/g)].map((m) => m[1]));
  t.same([...labels], ['_unknown'], 'no key label but the fixed one for unknown keys');
  const grown = heapUsed(text) - before;
  t.ok(grown < 100 * 1024 * 1024, `heap grew by ${(grown / 2 ** 20).toFixed(1)} MiB (< 100 MiB)`);
  const lines = proc.logs().split('\n');
  const longest = Math.max(...lines.map((l) => l.length));
  t.ok(longest < 2048, `the longest log line has ${longest} characters`);
  t.ok(lines.filter((l) => l.includes('"sign refused"')).length >= SIGNS, 'every refusal was logged');
});

t.test('SIGTERM: exit 0 within 5 s, watchers ended, a final checkpoint over the last entry', async (t) => {
  // One more watcher, over raw HTTP/2 with a 1 KiB window, that never reads: it must not hold
  // up the stop (its call is cancelled after limits.shutdownGraceMs).
  const c = pki.clients['other-engine']!;
  const stalled = http2.connect(`https://127.0.0.1:${port}`, {
    ca: pki.caCert,
    cert: c.cert,
    key: c.key,
    servername: 'localhost',
    settings: { initialWindowSize: 1024 },
  });
  stalled.on('error', () => {});
  t.teardown(() => stalled.destroy());
  const watch = stalled.request({
    ':method': 'POST',
    ':path': '/signer.v1.Signer/WatchKeys',
    'content-type': 'application/grpc',
    te: 'trailers',
  });
  watch.on('error', () => {});
  watch.end(Buffer.alloc(5));
  watch.pause();
  await new Promise((r) => setTimeout(r, 1000));
  const started = Date.now();
  const code = await proc.stop('SIGTERM');
  const took = Date.now() - started;
  t.equal(code, 0, 'exit code 0');
  t.ok(took < 5000, `stopped in ${took} ms`);
  const open = (await Promise.all(streams.map((x) => x.ended))).filter(
    (e) => e !== 'end' && decodeError(e).reason === 'SHUTTING_DOWN',
  );
  t.equal(open.length, DEFAULT_WATCH_CAP, 'the served streams ended with UNAVAILABLE, SHUTTING_DOWN');
  const store = await openStore(raw.store as never);
  try {
    const head = (await store.auditHead())!;
    const last = (await store.checkpoints(head.seq, head.seq))[0];
    t.ok(last, `a checkpoint covers the last entry (seq ${head.seq})`);
    t.equal(last?.headHash, head.hash, 'over its hash');
    const entries = [];
    for await (const e of store.readAudit(head.seq, head.seq)) entries.push(e);
    t.equal(entries[0]?.kind, 'service.stop', 'the last entry is the stop');
  } finally {
    await store.close();
  }
});
