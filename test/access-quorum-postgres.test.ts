/**
 * Access under the admin quorum and freezes on PostgreSQL (real cluster, real signer, mTLS,
 * SoftHSM): the config seeds a fresh store, an approved tightening binds at once, and what a
 * writer holding the database URL inserts or deletes changes nothing.
 */
import { randomUUID } from 'node:crypto';
import { status } from '@grpc/grpc-js';
import { ed25519 } from '@noble/curves/ed25519.js';
import pg from 'pg';
import t from 'tap';
import { adminApproval, type ProposalFields } from '../harness/admins.js';
import { startPostgres } from '../harness/postgres.js';
import { refused, startTestSigner } from '../harness/signer.js';
import { call, nowTimestamp, type SignerClients } from '../src/client/client.js';
import { accessText } from '../src/core/admin/access.js';
import { accessFromConfig } from '../src/infra/config/access.js';

const ADMINS = { alice: 'admin-a', bob: 'admin-b' } as const;
type Admin = keyof typeof ADMINS;
const server = await startPostgres();
t.teardown(() => server.stop());
const ts = await startTestSigner({
  clients: Object.values(ADMINS),
  prepare: async (_dir, pki) => ({
    refreshMs: 300,
    store: { postgres: { url: server.url } },
    clients: {
      'payment-engine': { roles: ['signer'] },
      'other-engine': { roles: ['signer'] },
      'security-admin': { roles: ['admin'] },
      ...Object.fromEntries(Object.values(ADMINS).map((cn) => [cn, { roles: ['admin'] }])),
    },
    keyAccess: { 'hot-*': ['other-engine', 'payment-engine'] },
    admins: {
      quorum: 2,
      policyDelaySeconds: 3600,
      members: Object.fromEntries(
        Object.entries(ADMINS).map(([name, cn]) => [name, { certificateFile: pki.files.clients[cn]!.cert }]),
      ),
    },
  }),
});
t.teardown(() => ts.close());
const db = new pg.Client({ connectionString: server.url });
await db.connect();
t.teardown(() => db.end());

const admin = ts.as('security-admin');
const ka = (name: string, req: object, as = admin) => call<any>(as.keyAdmin, name, req);
const getAccess = () => ka('GetAccess', {}) as Promise<{ version: number; document: string }>;
const approve = (p: ProposalFields, who: Admin) =>
  ka('ApproveProposal', adminApproval(p, who, ts.pki.clients[ADMINS[who]]!.key), ts.as(ADMINS[who]));
const signWith = (as: SignerClients, keyId: string) =>
  call<{ signature: Buffer }>(as.signer, 'Sign', {
    keyId,
    requestId: randomUUID(),
    clientTime: nowTimestamp(),
    message: Buffer.from('pg'),
  });
const engine = ts.as('payment-engine');
const other = ts.as('other-engine');
const key = await ka('CreateKey', { keyId: 'hot-1', algorithm: 'ED25519' });

t.test('seeded from the config; an approved tightening refuses the removed client at once', async (t) => {
  const a = await getAccess();
  t.equal(a.version, 1);
  t.equal(a.document, accessText(accessFromConfig(ts.config)));
  const sig = await signWith(other, 'hot-1');
  t.ok(ed25519.verify(sig.signature, Buffer.from('pg'), key.publicKey), 'noble verifies');
  const doc = JSON.parse(a.document);
  doc.keyAccess['hot-*'] = ['payment-engine'];
  const p = await ka('ProposeAccess', { document: JSON.stringify(doc) });
  t.same(p.loosenings, []);
  await approve(p, 'alice');
  t.ok(await signWith(other, 'hot-1'), 'one approval: nothing changes');
  t.equal((await approve(p, 'bob')).state, 'activated');
  await refused(t, signWith(other, 'hot-1'), status.PERMISSION_DENIED, 'NOT_AUTHORIZED');
  const rows = await db.query('SELECT version, updated_by FROM access_versions ORDER BY version');
  t.same(
    rows.rows.map((r) => [r.version, r.updated_by]),
    [
      [1, 'config'],
      [2, `quorum:${p.id}`],
    ],
  );
});

t.test('the config seed written in again as a newer version rolls nothing back', async (t) => {
  // The seed's own text (it let other-engine sign), as version 3 "by config".
  const doc = accessFromConfig(ts.config);
  await db.query('INSERT INTO access_versions (version, document, updated_at, updated_by) VALUES (3, $1, $2, $3)', [
    accessText(doc),
    Date.now(),
    'config',
  ]);
  await new Promise((r) => setTimeout(r, 1000));
  await refused(t, signWith(other, 'hot-1'), status.PERMISSION_DENIED, 'NOT_AUTHORIZED');
  t.equal((await getAccess()).version, 2);
  await db.query('DELETE FROM access_versions WHERE version = 3');
});

t.test('deleting the freeze row while the signer is stopped does not unfreeze', async (t) => {
  await ka('FreezeKey', { keyId: 'hot-1' }, ts.as('admin-a'));
  await refused(t, signWith(engine, 'hot-1'), status.FAILED_PRECONDITION, 'KEY_FROZEN');
  await ts.restart(async () => {
    const r = await db.query("DELETE FROM freezes WHERE kind = 'key' AND target = 'hot-1'");
    t.equal(r.rowCount, 1);
  });
  const e = await refused(t, signWith(engine, 'hot-1'), status.FAILED_PRECONDITION, 'KEY_FROZEN');
  t.same(e.metadata, { keyId: 'hot-1' });
});
