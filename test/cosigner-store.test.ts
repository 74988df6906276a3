import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import t from 'tap';
import { tempDir } from '../harness/token.js';
import { CosignerStore } from '../src/cosigner/store.js';

const tmp = await tempDir('cosigner-store-');
t.teardown(() => tmp.cleanup());
const path = `${tmp.path}/c.db`;
const store = new CosignerStore(path);
t.teardown(() => store.close());

const share = (sessionId: string, epoch: number) => ({
  keyId: 'k',
  version: 1,
  epoch,
  sessionId,
  algorithm: 'frost-ed25519' as const,
  groupId: Buffer.alloc(16, 7),
  publicPackage: '{}',
  sealed: randomBytes(93),
});

t.test('a ceremony share signs only once committed; committing deletes the other epochs from disk', async (t) => {
  const first = share('session-one-aaaaaaaa', 1);
  store.putPending(first, new Date());
  t.equal(store.active('k', 1), undefined, 'pending: not the signing share');
  t.equal(store.finish('session-one-aaaaaaaa', true)?.epoch, 1);
  const second = share('session-two-bbbbbbbb', 2);
  store.putPending(second, new Date());
  t.equal(store.active('k', 1)?.epoch, 1, 'the old share signs until the refresh commits');
  store.finish('session-two-bbbbbbbb', true);
  t.same(
    store.all().map((r) => [r.epoch, r.state]),
    [[2, 'active']],
  );
  for (const f of [path, `${path}-wal`]) {
    const bytes = await readFile(f).catch(() => Buffer.alloc(0));
    t.equal(
      bytes.indexOf(Buffer.from(first.sealed).subarray(20, 60)),
      -1,
      `old ciphertext gone from ${f.endsWith('-wal') ? 'the WAL' : 'the database'}`,
    );
  }
  store.putPending(share('session-three-cccccc', 3), new Date());
  store.discardPending('k', 1);
  t.same(
    store.all().map((r) => r.epoch),
    [2],
    'a stale pending share is dropped, the active one kept',
  );
  t.equal(store.finish('session-three-cccccc', true), undefined, 'nothing left to commit');
});

t.test('claims: one payload per scope; request records expire, nonce records never', async (t) => {
  const [a, b] = [randomBytes(32), randomBytes(32)];
  const old = new Date(Date.now() - 4 * 3600_000);
  t.equal(store.claim('k', 1, ['req:c\0r1', 'nonce:1:5'], a, old), undefined, 'first payload claims both');
  t.equal(store.claim('k', 1, ['req:c\0r1', 'nonce:1:5'], a, new Date()), undefined, 'the same payload again: fine');
  t.equal(
    store.claim('k', 1, ['req:c\0r2', 'nonce:1:5'], b, new Date()),
    'nonce:1:5',
    'another payload for the nonce: refused',
  );
  t.equal(
    store.claim('k', 1, ['req:c\0r1'], b, new Date()),
    'req:c\0r1',
    'another payload for the request id: refused',
  );
  t.equal(store.pruneRequests(new Date(Date.now() - 3600_000)), 1, 'the old request record goes');
  t.equal(store.claim('k', 1, ['req:c\0r1'], b, new Date()), undefined, 'its id is free again');
  t.equal(store.claim('k', 1, ['nonce:1:5'], b, new Date()), 'nonce:1:5', 'the nonce stays taken');
});
