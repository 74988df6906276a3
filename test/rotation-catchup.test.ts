import { writeFile } from 'node:fs/promises';
import type * as grpc from '@grpc/grpc-js';
import t, { type Test } from 'tap';
import { makePki } from '../harness/pki.js';
import { freePort, startSignerProcess } from '../harness/process.js';
import { testConfig } from '../harness/signer.js';
import { makeToken, tempDir } from '../harness/token.js';
import { call, connect } from '../src/client/client.js';

// A schedule that fired while the signer was down runs once at the next start, and not again at
// the start after that. The signer runs as a process, stopped and started on one SQLite file.
const tmp = await tempDir('catchup-');
t.teardown(() => tmp.cleanup());
const [pki, token] = await Promise.all([makePki(tmp.path), makeToken(tmp.path)]);

type Key = { keyId: string; version: number; state: string; createdAt: { seconds: string; nanos: number } };
type Entry = {
  type: string;
  kind: string;
  client: string;
  keyId: string;
  keyVersion: number;
  intent: Record<string, string>;
};

async function run<T>(
  t: Test,
  name: string,
  rotation: object,
  fn: (c: { admin: ReturnType<typeof connect>; auditor: ReturnType<typeof connect> }) => Promise<T>,
): Promise<T> {
  const port = await freePort();
  const file = `${tmp.path}/${name}.json`;
  await writeFile(
    file,
    JSON.stringify({
      ...testConfig(tmp.path, pki, token),
      listen: `127.0.0.1:${port}`,
      rotation,
      log: { level: 'info' },
    }),
  );
  const proc = await startSignerProcess(file);
  const as = (cn: string) =>
    connect(`127.0.0.1:${port}`, { ca: pki.caCert, cert: pki.clients[cn]!.cert, key: pki.clients[cn]!.key });
  const admin = as('security-admin');
  const auditor = as('auditor');
  try {
    return await fn({ admin, auditor });
  } finally {
    admin.close();
    auditor.close();
    t.equal(await proc.stop(), 0, `${name} stops cleanly`);
  }
}

const versions = async (admin: ReturnType<typeof connect>) =>
  (await call<{ keys: Key[] }>(admin.signer, 'ListKeys', {})).keys
    .filter((k) => k.keyId === 'sched-late')
    .map((k) => `v${k.version}:${k.state}`);
async function schedulerRotations(auditor: ReturnType<typeof connect>): Promise<Entry[]> {
  const stream = (
    auditor.audit as unknown as { ExportLog(r: object): grpc.ClientReadableStream<{ json: string }> }
  ).ExportLog({});
  const out: Entry[] = [];
  for await (const m of stream) {
    const r = JSON.parse(m.json) as Entry;
    if (r.type === 'entry' && r.kind === 'key.rotate' && r.client === 'scheduler') out.push(r);
  }
  return out;
}

let fire = new Date(0);
let cron = '';
let rotation = {};

t.test('the key is created with no schedule; while the signer is down a daily schedule fires', async (t) => {
  const created = await run(t, 'first', {}, async ({ admin }) =>
    call<Key>(admin.keyAdmin, 'CreateKey', { keyId: 'sched-late', algorithm: 'ED25519' }),
  );
  // Daily, today at 2 seconds after the key's creation (UTC); the signer is down when it passes.
  fire = new Date((Number(created.createdAt.seconds) + 2) * 1000);
  cron = `${fire.getUTCSeconds()} ${fire.getUTCMinutes()} ${fire.getUTCHours()} * * *`;
  rotation = { schedules: { 'sched-late': { cron, minAgeSeconds: 1 } } };
  await new Promise((r) => setTimeout(r, Math.max(0, fire.getTime() + 200 - Date.now())));
});

t.test('the missed fire runs once at start', async (t) => {
  await run(t, 'second', rotation, async ({ admin, auditor }) => {
    t.same(await versions(admin), ['v1:VERIFY_ONLY', 'v2:ACTIVE'], 'rotated before serving');
    const rotations = await schedulerRotations(auditor);
    t.equal(rotations.length, 1, 'one scheduled rotation audited');
    t.match(
      rotations[0],
      { keyId: 'sched-late', keyVersion: 2, intent: { cron, trigger: 'start', scheduledAt: fire.toISOString() } },
      'v2, at start, serving the missed fire',
    );
  });
});

t.test('the next start does not repeat it', async (t) => {
  await run(t, 'third', rotation, async ({ admin, auditor }) => {
    t.same(await versions(admin), ['v1:VERIFY_ONLY', 'v2:ACTIVE'], 'still two versions');
    t.equal((await schedulerRotations(auditor)).length, 1, 'still one scheduled rotation');
  });
});
