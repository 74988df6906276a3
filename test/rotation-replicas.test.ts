import { writeFile } from 'node:fs/promises';
import type * as grpc from '@grpc/grpc-js';
import t from 'tap';
import { makePki } from '../harness/pki.js';
import { startPostgres } from '../harness/postgres.js';
import { freePort, startSignerProcess } from '../harness/process.js';
import { testConfig } from '../harness/signer.js';
import { makeToken, tempDir } from '../harness/token.js';
import { call, connect } from '../src/client/client.js';

// Two signer processes on one PostgreSQL run the same schedule (every 2 seconds, minimum age
// 1 second). Both fire each time; the job lock lets exactly one rotate per fire.
const CRON = '*/2 * * * * *';
const pg = await startPostgres();
t.teardown(() => pg.stop());
const tmp = await tempDir('rot-replicas-');
t.teardown(() => tmp.cleanup());
const [pki, token] = await Promise.all([makePki(tmp.path), makeToken(tmp.path)]);
const as = (port: number, cn: string) =>
  connect(`127.0.0.1:${port}`, { ca: pki.caCert, cert: pki.clients[cn]!.cert, key: pki.clients[cn]!.key });

async function replica(name: string, schedules: object = { 'sched-shared': { cron: CRON, minAgeSeconds: 1 } }) {
  const port = await freePort();
  const file = `${tmp.path}/${name}.json`;
  await writeFile(
    file,
    JSON.stringify({
      ...testConfig(tmp.path, pki, token),
      listen: `127.0.0.1:${port}`,
      store: { postgres: { url: pg.url } },
      rotation: { overlapSeconds: 60, schedules },
      log: { level: 'info' },
      refreshMs: 500,
    }),
  );
  const proc = await startSignerProcess(file);
  t.teardown(() => proc.stop('SIGKILL'));
  return { proc, port };
}

const a = await replica('a');
const admin = as(a.port, 'security-admin');
t.teardown(() => admin.close());
await call(admin.keyAdmin, 'CreateKey', { keyId: 'sched-shared', algorithm: 'ED25519' });
const b = await replica('b');
await new Promise((r) => setTimeout(r, 8000));
// Stop both, so no rotation is in flight while counting.
await Promise.all([a.proc.stop(), b.proc.stop()]);
// Read the outcome through a third replica with no schedule.
const c = await replica('c-reader', {});
const reader = as(c.port, 'security-admin');
const auditor = as(c.port, 'auditor');
t.teardown(() => {
  reader.close();
  auditor.close();
});

t.test('each fire rotated the key once, on one replica', async (t) => {
  const keys = (
    await call<{ keys: Array<{ keyId: string; version: number; state: string }> }>(reader.signer, 'ListKeys', {})
  ).keys.filter((k) => k.keyId === 'sched-shared');
  const stream = (
    auditor.audit as unknown as { ExportLog(r: object): grpc.ClientReadableStream<{ json: string }> }
  ).ExportLog({});
  const rotations: Array<{ keyVersion: number; intent: Record<string, string> }> = [];
  for await (const m of stream) {
    const r = JSON.parse(m.json);
    if (r.type === 'entry' && r.kind === 'key.rotate' && r.client === 'scheduler' && r.keyId === 'sched-shared')
      rotations.push(r);
  }
  const fires = new Set(rotations.map((r) => r.intent.scheduledAt));
  const created = keys.length - 1;
  t.ok(fires.size >= 3, `several fires were served while both replicas ran (${fires.size})`);
  t.equal(created, fires.size, `versions created (${created}) = distinct fires served (${fires.size})`);
  t.equal(rotations.length, fires.size, 'no fire has two audited rotations');
  t.same(
    rotations.map((r) => r.keyVersion),
    Array.from({ length: created }, (_, i) => i + 2),
    'one rotation per version, in order',
  );
  t.equal(keys.filter((k) => k.state === 'ACTIVE').length, 1, 'one active version');
  const logged = (p: { logs(): string }) =>
    p
      .logs()
      .split('\n')
      .filter((l) => l.includes('"key rotated by schedule"')).length;
  const byA = logged(a.proc);
  const byB = logged(b.proc);
  t.equal(byA + byB, created, `each rotation was done by exactly one replica (A ${byA}, B ${byB})`);
});
