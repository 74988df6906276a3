import type * as grpc from '@grpc/grpc-js';
import t from 'tap';
import { eventually, startTestSigner } from '../harness/signer.js';
import { call } from '../src/client/client.js';

// Two scheduled keys on one signer, both every 2 seconds (node-cron's 6-field form): "fast"
// rotates on each fire; "aged" only when its active version is at least 5 seconds old.
const ts = await startTestSigner({
  config: {
    rotation: {
      overlapSeconds: 60,
      schedules: {
        'sched-fast': { cron: '*/2 * * * * *' },
        'sched-aged': { cron: '*/2 * * * * *', minAgeSeconds: 5 },
      },
    },
  },
});
t.teardown(() => ts.close());
const admin = ts.as('security-admin');
const auditor = ts.as('auditor');

type Key = { keyId: string; version: number; state: string; createdAt: { seconds: string; nanos: number } };
const versions = async (keyId: string) =>
  (await call<{ keys: Key[] }>(admin.signer, 'ListKeys', {})).keys.filter((k) => k.keyId === keyId);
const ms = (k: Key) => Number(k.createdAt.seconds) * 1000 + Math.floor(k.createdAt.nanos / 1e6);

async function auditEntries(): Promise<
  Array<{ kind: string; client: string; keyId: string; keyVersion: number; intent: Record<string, string> }>
> {
  const stream = (
    auditor.audit as unknown as { ExportLog(r: object): grpc.ClientReadableStream<{ json: string }> }
  ).ExportLog({});
  const out = [];
  for await (const m of stream) {
    const r = JSON.parse(m.json);
    if (r.type === 'entry') out.push(r);
  }
  return out;
}

await call(admin.keyAdmin, 'CreateKey', { keyId: 'sched-fast', algorithm: 'ED25519' });
await call(admin.keyAdmin, 'CreateKey', { keyId: 'sched-aged', algorithm: 'ED25519' });
const started = Date.now();

t.test(
  'a schedule rotates the key: a new active version within a few seconds, audited as by the scheduler',
  async (t) => {
    t.ok(await eventually(async () => (await versions('sched-fast')).length >= 2, 5000), 'a second version appears');
    const v = await versions('sched-fast');
    t.equal(v.filter((k) => k.state === 'ACTIVE').length, 1, 'one active version');
    t.equal(v.find((k) => k.state === 'ACTIVE')!.version, Math.max(...v.map((k) => k.version)), 'the newest is active');
    t.equal(
      v.find((k) => k.version === 1)!.state,
      'VERIFY_ONLY',
      'the rotated-out version is verify-only for the overlap',
    );
    const rotations = (await auditEntries()).filter((e) => e.kind === 'key.rotate' && e.keyId === 'sched-fast');
    t.ok(rotations.length >= 1, 'key.rotate is in the audit log');
    t.ok(
      rotations.every((e) => e.client === 'scheduler' && e.intent.cron === '*/2 * * * * *' && e.intent.scheduledAt),
      'by "scheduler", with the expression and the fire it served',
    );
  },
);

t.test('minAgeSeconds: no rotation while the active version is younger', async (t) => {
  // Run long enough for several 2-second fires and at least one rotation of the aged key.
  await new Promise((r) => setTimeout(r, Math.max(0, started + 8500 - Date.now())));
  const fast = await versions('sched-fast');
  const aged = (await versions('sched-aged')).sort((a, b) => a.version - b.version);
  t.ok(fast.length >= 4, `the every-fire key rotated on most fires (${fast.length} versions)`);
  t.ok(aged.length >= 2, `the aged key rotated once it was old enough (${aged.length} versions)`);
  t.ok(aged.length < fast.length, 'but less often');
  for (let i = 1; i < aged.length; i++) {
    t.ok(ms(aged[i]!) - ms(aged[i - 1]!) >= 5000, `v${aged[i]!.version} came ≥ 5 s after v${aged[i - 1]!.version}`);
  }
  const byScheduler = (await auditEntries()).filter((e) => e.kind === 'key.rotate' && e.client === 'scheduler');
  t.equal(
    byScheduler.filter((e) => e.keyId === 'sched-aged').length,
    aged.length - 1,
    'one audit entry per scheduled rotation',
  );
});
