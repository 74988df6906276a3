import { generateKeyPairSync, type KeyObject, sign as nodeSign, randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import Database from 'better-sqlite3';
import t from 'tap';
import { tempDir } from '../harness/token.js';
import type { AdminSet } from '../src/core/admin/approvals.js';
import { proposalBytes } from '../src/core/admin/proposal.js';
import type { SignerError } from '../src/core/errors.js';
import { canonicalJson } from '../src/core/policy/canonical.js';
import { ShareDestruction } from '../src/cosigner/destroy.js';
import { COSIGNER_MIGRATIONS } from '../src/cosigner/migrations.js';
import { CosignerStore } from '../src/cosigner/store.js';
import { createLogger } from '../src/infra/log.js';

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

/** Records the ceremony (as Round1 does), then stores its pending share (as Round3 does). */
function pending(sessionId: string, epoch: number, version = 1) {
  const begun = store.beginCeremony({ sessionId, keyId: 'k', version, kind: 'refresh', epoch }, new Date(), 60_000);
  if (begun !== 'ok') throw new Error(`ceremony not begun: ${JSON.stringify(begun)}`);
  const s = { ...share(sessionId, epoch), version };
  store.putPending(s, new Date());
  return s;
}

t.test('a ceremony share signs only once committed; committing deletes the other epochs from disk', async (t) => {
  const first = pending('session-one-aaaaaaaa', 1);
  t.equal(store.active('k', 1), undefined, 'pending: not the signing share');
  const done = store.finish('session-one-aaaaaaaa', true);
  t.equal(done.done === 'committed' && done.row.epoch, 1);
  pending('session-two-bbbbbbbb', 2);
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
  t.same(store.finish('session-two-bbbbbbbb', true), { done: 'not-pending' }, 'a committed session commits once');
  t.same(store.finish('never-started-xxxxxx', true), { done: 'not-pending' }, 'an unknown session commits nothing');
  t.same(store.finish('never-started-xxxxxx', false), { done: 'not-pending' }, 'nor discards anything');
});

t.test(
  'ceremonies of one key version never replace each other; discard and destroy keep to their session',
  async (t) => {
    pending('session-three-cccccc', 3);
    const second = store.beginCeremony(
      { sessionId: 'session-four-dddddddd', keyId: 'k', version: 1, kind: 'refresh', epoch: 2 },
      new Date(),
      60_000,
    );
    t.same(
      second,
      { busy: 'session-three-cccccc' },
      'a second ceremony is refused while the first has a pending share',
    );
    t.same(
      store.all().map((r) => [r.epoch, r.state]),
      [
        [2, 'active'],
        [3, 'pending'],
      ],
    );
    t.same(
      store.finish('session-three-cccccc', false),
      { done: 'discarded' },
      'the first is discarded by its own session',
    );
    t.same(
      store.all().map((r) => r.epoch),
      [2],
      'its pending share is dropped, the active one kept',
    );
    t.equal(store.ceremonyState('session-three-cccccc'), 'discarded');
    t.same(store.finish('session-three-cccccc', true), { done: 'not-pending' }, 'a discarded session commits nothing');
    t.equal(store.discardSession('k', 1, 'session-one-aaaaaaaa'), 0, "another session's cleanup leaves the share");
    t.equal(
      store.discardSession('k', 1, 'session-two-bbbbbbbb'),
      'committed',
      'the session that made it cannot remove it once committed',
    );
    t.same(
      store.all().map((r) => [r.epoch, r.state]),
      [[2, 'active']],
    );
    pending('session-six-ffffffff', 3);
    t.equal(store.discardSession('k', 1, 'session-six-ffffffff'), 1, "a pending share goes with its session's cleanup");
    t.same(
      store.all().map((r) => [r.epoch, r.state]),
      [[2, 'active']],
      'the committed share stays',
    );
  },
);

t.test('a ceremony running when the cosigner stopped is discarded at the next start', async (t) => {
  const p = `${tmp.path}/restart.db`;
  const a = new CosignerStore(p);
  t.equal(
    a.beginCeremony(
      { sessionId: 'session-five-eeeeeeee', keyId: 'k', version: 9, kind: 'dkg', epoch: 0 },
      new Date(),
      60_000,
    ),
    'ok',
  );
  a.close();
  const b = new CosignerStore(p);
  t.teardown(() => b.close());
  t.equal(b.ceremonyState('session-five-eeeeeeee'), 'discarded', 'its rounds were in memory: it cannot go on');
  t.equal(
    b.beginCeremony(
      { sessionId: 'session-six-ffffffff', keyId: 'k', version: 9, kind: 'dkg', epoch: 0 },
      new Date(),
      60_000,
    ),
    'ok',
    'a new ceremony of the key version may start',
  );
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

t.test('a cancel after the delay is refused even before the timer overwrote the share', async (t) => {
  // Two pinned admins (P-256, Node's crypto) and a clock the test moves: the cosigner's timer never runs here.
  const keys = {
    alice: generateKeyPairSync('ec', { namedCurve: 'P-256' }),
    bob: generateKeyPairSync('ec', { namedCurve: 'P-256' }),
  };
  const point = (k: KeyObject) => {
    const j = k.export({ format: 'jwk' });
    return new Uint8Array(
      Buffer.concat([Buffer.from([4]), Buffer.from(j.x!, 'base64url'), Buffer.from(j.y!, 'base64url')]),
    );
  };
  const admins: AdminSet = {
    quorum: 2,
    delaySeconds: 0,
    members: new Map(
      (['alice', 'bob'] as const).map((n) => [
        n,
        { algorithm: 'ecdsa-p256' as const, publicKey: point(keys[n].publicKey) },
      ]),
    ),
  };
  const signAs = (who: 'alice' | 'bob', bytes: Uint8Array) =>
    nodeSign('sha256', bytes, { key: keys[who].privateKey, dsaEncoding: 'ieee-p1363' });
  let now = new Date('2026-01-01T00:00:00Z');
  const destruction = new ShareDestruction({
    id: 1,
    store,
    admins,
    delayMs: 60_000,
    log: createLogger('silent'),
    forget: () => undefined,
    endCeremony: () => undefined,
    now: () => now,
  });
  pending('session-destroy-gggggggg', 1, 7);
  store.finish('session-destroy-gggggggg', true);
  const order = (id: string) => {
    const document = canonicalJson({ confirmKeyId: 'k', keyId: 'k', version: 7 });
    const bytes = proposalBytes({ kind: 'destroy-key', id, target: 'k', baseVersion: 7, document });
    return {
      proposalId: id,
      document,
      approvals: (['alice', 'bob'] as const).map((a) => ({ admin: a, signature: signAs(a, bytes) })),
    };
  };
  const cancel = (proposalId: string) => ({
    keyId: 'k',
    keyVersion: 7,
    proposalId,
    admin: 'bob',
    signature: signAs('bob', Buffer.from(`hsm-signer/share-destroy-cancel/v1\nk\n7\n${proposalId}\n`)),
  });
  const first = 'a'.repeat(32);
  t.equal(destruction.destroyShares({ keyId: 'k', keyVersion: 7, order: order(first) }).destroyed, 1);
  now = new Date(now.getTime() + 59_999);
  t.same(destruction.cancel(cancel(first)), { restored: 1 }, 'a millisecond before it is due: cancelled');

  const second = 'b'.repeat(32);
  destruction.destroyShares({ keyId: 'k', keyVersion: 7, order: order(second) });
  now = new Date(now.getTime() + 60_000);
  t.ok(store.active('k', 7), 'due, and the timer has not run: the sealed share is still stored');
  const e = ((): SignerError | undefined => {
    try {
      destruction.cancel(cancel(second));
      return undefined;
    } catch (err) {
      return err as SignerError;
    }
  })();
  t.equal(e?.reason, 'PROPOSAL_CLOSED', 'refused: the delay passed');
  t.equal(e?.metadata?.state, 'done');
  t.match(e?.message, /delay passed/);
  t.equal(store.active('k', 7), undefined, 'and the share is overwritten now, not at the next tick');
  t.same(
    store.orders.all().map((o) => [o.proposalId, o.state, o.closedBy]),
    [
      [first, 'cancelled', 'bob'],
      [second, 'done', 'delay'],
    ],
  );
  t.notOk(
    store.orders.cancel({ keyId: 'k', version: 7, proposalId: second }, 'bob', now),
    'nothing to cancel in the store',
  );
});

t.test('the store has numbered migrations: an old store is upgraded with its rows, a newer one refused', async (t) => {
  // A store as the first cosigner release made it (its DDL, verbatim): shares and claims only.
  const p = `${tmp.path}/first-release.db`;
  const old = new Database(p);
  old.exec(`
CREATE TABLE IF NOT EXISTS shares (
  key_id         TEXT    NOT NULL,
  version        INTEGER NOT NULL,
  epoch          INTEGER NOT NULL,
  state          TEXT    NOT NULL CHECK (state IN ('pending', 'active')),
  session_id     TEXT    NOT NULL UNIQUE,
  algorithm      TEXT    NOT NULL,
  group_id       BLOB    NOT NULL,
  public_package TEXT    NOT NULL,
  sealed         BLOB    NOT NULL,
  created_at     INTEGER NOT NULL,
  PRIMARY KEY (key_id, version, epoch)
);
CREATE TABLE IF NOT EXISTS claims (
  key_id       TEXT    NOT NULL,
  version      INTEGER NOT NULL,
  scope        TEXT    NOT NULL,
  payload_hash BLOB    NOT NULL,
  at           INTEGER NOT NULL,
  PRIMARY KEY (key_id, version, scope)
);`);
  const sealed = randomBytes(93);
  const held = randomBytes(32);
  old
    .prepare(
      `INSERT INTO shares VALUES ('old-key', 1, 3, 'active', 'session-old-hhhhhhhh', 'frost-ed25519', ?, '{}', ?, 1)`,
    )
    .run(Buffer.alloc(16, 1), sealed);
  old.prepare("INSERT INTO claims VALUES ('old-key', 1, 'nonce:1:9', ?, 1)").run(held);
  old.close();

  const upgraded = new CosignerStore(p);
  const versions = () => {
    const db = new Database(p, { readonly: true });
    try {
      return db.prepare('SELECT version, name, applied_at FROM schema_version ORDER BY version').all() as Array<{
        version: number;
        name: string;
        applied_at: number;
      }>;
    } finally {
      db.close();
    }
  };
  const applied = versions();
  t.same(
    applied.map((v) => [v.version, v.name]),
    COSIGNER_MIGRATIONS.map((m) => [m.version, m.name]),
    'every migration recorded, in order',
  );
  const share = upgraded.active('old-key', 1);
  t.same([share?.epoch, Buffer.from(share!.sealed).equals(sealed)], [3, true], 'the share is kept, byte for byte');
  t.equal(upgraded.claim('old-key', 1, ['nonce:1:9'], randomBytes(32), new Date()), 'nonce:1:9', 'and its claim');
  t.equal(
    upgraded.beginCeremony(
      { sessionId: 'session-new-iiiiiiii', keyId: 'old-key', version: 2, kind: 'dkg', epoch: 0 },
      new Date(),
      60_000,
    ),
    'ok',
    'the tables later releases added are there',
  );
  t.same(upgraded.orders.all(), []);
  upgraded.close();
  const again = new CosignerStore(p);
  again.close();
  t.same(versions(), applied, 'opened again: nothing applied twice');

  // A store a newer build migrated: this build does not know its schema and must not write to it.
  const db = new Database(p);
  db.prepare("INSERT INTO schema_version VALUES (?, 'from the future', 1)").run(COSIGNER_MIGRATIONS.length + 1);
  db.close();
  t.throws(
    () => new CosignerStore(p),
    new RegExp(
      `cosigner store ${p.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}: the database schema is at version ${COSIGNER_MIGRATIONS.length + 1}, newer than this build's ${COSIGNER_MIGRATIONS.length}: not opened`,
    ),
  );
  t.equal(versions().length, COSIGNER_MIGRATIONS.length + 1, 'and left as it was');

  // A table of the same name and another shape is never adopted.
  const q = `${tmp.path}/other-shape.db`;
  const other = new Database(q);
  other.exec('CREATE TABLE shares (key_id TEXT, version INTEGER)');
  other.close();
  t.throws(() => new CosignerStore(q), /another shape than schema version 1 \(missing shares\.epoch, .*shares\.sealed/);
});
