/**
 * Clients, roles and key access under the admin quorum, and freezes a database writer cannot
 * lift, against a real signer (mTLS, SoftHSM, SQLite): 2 of 3 admins approve with the P-256 keys
 * of their own certificates. The attacker writes the SQLite file directly, as any DB writer could.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { status } from '@grpc/grpc-js';
import { ed25519 } from '@noble/curves/ed25519.js';
import Database from 'better-sqlite3';
import t from 'tap';
import { adminApproval, adminScripts } from '../harness/admins.js';
import { eventually, refused, startTestSigner } from '../harness/signer.js';
import { repoRoot } from '../harness/token.js';
import { call, nowTimestamp, type SignerClients } from '../src/client/client.js';
import { accessText } from '../src/core/admin/access.js';
import { eventDraft } from '../src/core/audit/draft.js';
import { accessFromConfig } from '../src/infra/config/access.js';
import { SqliteStore } from '../src/infra/store/sqlite.js';

const DELAY_S = 3;
const ADMINS = { alice: 'admin-a', bob: 'admin-b', carol: 'admin-c' } as const;
type Admin = keyof typeof ADMINS;

const ts = await startTestSigner({
  clients: Object.values(ADMINS),
  prepare: async (_dir, pki) => ({
    refreshMs: 300,
    clients: {
      'payment-engine': { roles: ['signer'] },
      'other-engine': { roles: ['signer'] },
      'security-admin': { roles: ['admin'] },
      auditor: { roles: ['auditor'] },
      ...Object.fromEntries(Object.values(ADMINS).map((cn) => [cn, { roles: ['admin'] }])),
    },
    keyAccess: { 'hot-*': ['payment-engine'], 'shared-*': ['other-engine', 'payment-engine'] },
    admins: {
      quorum: 2,
      policyDelaySeconds: DELAY_S,
      members: Object.fromEntries(
        Object.entries(ADMINS).map(([name, cn]) => [name, { certificateFile: pki.files.clients[cn]!.cert }]),
      ),
    },
  }),
});
t.teardown(() => ts.close());

type Proposal = {
  id: string;
  kind: string;
  target: string;
  baseVersion: number;
  document: string;
  state: string;
  loosenings: string[];
  activeDocument: string;
  approvals: Array<{ admin: string; valid: boolean; invalidReason: string }>;
  approvedAt: { seconds: string } | null;
  activatesAt: { seconds: string } | null;
};
const admin = ts.as('security-admin');
const ka = (name: string, req: object, as = admin) => call<any>(as.keyAdmin, name, req);
const getAccess = () => ka('GetAccess', {}) as Promise<{ version: number; document: string }>;
const proposal = async (id: string) =>
  ((await ka('ListProposals', {})) as { proposals: Proposal[] }).proposals.find((p) => p.id === id)!;
const approvalOf = (p: Proposal, who: Admin) => adminApproval(p, who, ts.pki.clients[ADMINS[who]]!.key);
const approve = (p: Proposal, who: Admin) =>
  ka('ApproveProposal', approvalOf(p, who), ts.as(ADMINS[who])) as Promise<Proposal>;
const current = async () => JSON.parse((await getAccess()).document);
const proposeAccess = (doc: object) => ka('ProposeAccess', { document: JSON.stringify(doc) }) as Promise<Proposal>;
const signWith = (as: SignerClients, keyId: string) =>
  call<{ signature: Buffer }>(as.signer, 'Sign', {
    keyId,
    requestId: randomUUID(),
    clientTime: nowTimestamp(),
    message: Buffer.from('access'),
  });
const signs = (as: SignerClients, keyId: string) =>
  signWith(as, keyId).then(
    () => true,
    () => false,
  );
const other = ts.as('other-engine');
const engine = ts.as('payment-engine');
const db = () => new Database(`${ts.dir}/signer.db`);
const auditRows = () => {
  const d = db();
  try {
    return (
      d.prepare('SELECT kind, client, intent FROM audit ORDER BY seq').all() as Array<{
        kind: string;
        client: string;
        intent: string;
      }>
    ).map((r) => ({
      kind: r.kind,
      client: r.client,
      intent: JSON.parse(r.intent ?? 'null') as Record<string, string> | null,
    }));
  } finally {
    d.close();
  }
};

const shared = await ka('CreateKey', { keyId: 'shared-1', algorithm: 'ED25519' });
await ka('CreateKey', { keyId: 'hot-1', algorithm: 'ED25519' });

t.test('the config seeds version 1 on a fresh store', async (t) => {
  const a = await getAccess();
  t.equal(a.version, 1);
  t.equal(a.document, accessText(accessFromConfig(ts.config)), "the config's clients and keyAccess, canonical");
  t.equal(JSON.parse(a.document).clients['payment-engine'].requireSignedRequests, true, 'flags made explicit');
  t.ok(auditRows().some((e) => e.kind === 'access.set' && e.client === 'config' && e.intent?.version === '1'));
  const sig = await signWith(other, 'shared-1');
  t.ok(ed25519.verify(sig.signature, Buffer.from('access'), shared.publicKey), 'a seeded client signs; noble verifies');
  await refused(t, signWith(other, 'hot-1'), status.PERMISSION_DENIED, 'NOT_AUTHORIZED');
});

t.test('a tightening needs k admins; the removed client is refused at once', async (t) => {
  const doc = await current();
  delete doc.clients['other-engine'];
  doc.keyAccess['shared-*'] = ['payment-engine'];
  const p = await proposeAccess(doc);
  t.equal(p.kind, 'access');
  t.equal(p.baseVersion, 1);
  t.same(p.loosenings, [], 'removing a client only tightens');
  t.equal(p.activeDocument, (await getAccess()).document, 'the document in force, for the diff');
  t.equal((await approve(p, 'alice')).state, 'open');
  t.ok(await signs(other, 'shared-1'), 'one approval of two: not applied');
  t.equal((await getAccess()).version, 1);
  t.equal((await approve(p, 'bob')).state, 'activated', 'the k-th approval of a tightening activates it');
  const e = await refused(t, signWith(other, 'shared-1'), status.PERMISSION_DENIED, 'NOT_AUTHORIZED');
  t.match(e.message, /other-engine/);
  t.equal((await getAccess()).version, 2);
  const rows = auditRows();
  t.ok(rows.some((r) => r.kind === 'access.set' && r.intent?.proposal === p.id && r.intent?.version === '2'));
  t.match(
    rows.find((r) => r.kind === 'proposal.activate' && r.intent?.proposal === p.id)!.intent!.approvals,
    /^alice:[0-9a-f]{64},bob:[0-9a-f]{64}$/,
  );
});

t.test('a loosening waits for the delay, then applies', async (t) => {
  const doc = await current();
  doc.clients['other-engine'] = { roles: ['signer'] };
  doc.keyAccess['shared-*'] = ['other-engine', 'payment-engine'];
  const p = await proposeAccess(doc);
  t.ok(
    p.loosenings.some((l) => l.includes('client "other-engine" added')),
    'named: client added',
  );
  t.ok(
    p.loosenings.some((l) => l.includes('may sign with keys "shared-*"')),
    'named: key access added',
  );
  await approve(p, 'alice');
  const approved = await approve(p, 'carol');
  t.equal(approved.state, 'approved');
  t.equal(Number(approved.activatesAt!.seconds) - Number(approved.approvedAt!.seconds), DELAY_S);
  await refused(t, signWith(other, 'shared-1'), status.PERMISSION_DENIED, 'NOT_AUTHORIZED');
  t.ok(await eventually(() => signs(other, 'shared-1'), (DELAY_S + 5) * 1000), 'signs after the delay');
  t.equal((await proposal(p.id)).state, 'activated');
  t.equal(
    JSON.parse((await getAccess()).document).clients['other-engine'].requireSignedRequests,
    true,
    'absent means on',
  );
});

t.test('an approved loosening cancelled by one admin never applies', async (t) => {
  const before = await getAccess();
  const doc = await current();
  doc.keyAccess['hot-*'] = ['other-engine', 'payment-engine'];
  const p = await proposeAccess(doc);
  await approve(p, 'alice');
  t.equal((await approve(p, 'bob')).state, 'approved');
  t.equal((await ka('CancelProposal', { proposalId: p.id, reason: 'no' }, ts.as('admin-c'))).state, 'cancelled');
  await refused(t, approve(p, 'carol'), status.FAILED_PRECONDITION, 'PROPOSAL_CLOSED');
  await new Promise((r) => setTimeout(r, (DELAY_S + 1) * 1000));
  t.equal((await getAccess()).version, before.version, 'never applied');
  await refused(t, signWith(other, 'hot-1'), status.PERMISSION_DENIED, 'NOT_AUTHORIZED');
});

t.test('an approval of a proposal altered in the database is invalid', async (t) => {
  const before = await getAccess();
  const doc = await current();
  doc.clients['payment-engine'].roles = ['signer', 'auditor'];
  const p = await proposeAccess(doc);
  t.ok(p.loosenings.some((l) => l.includes('gets the auditor role')));
  await approve(p, 'alice');
  // The attacker makes the reviewed document grant far more.
  const evil = await current();
  evil.keyAccess['*'] = ['other-engine'];
  const d = db();
  d.prepare('UPDATE proposals SET document = ? WHERE id = ?').run(accessText(evil), p.id);
  d.close();
  const edited = await proposal(p.id);
  t.ok(
    edited.approvals.every((a) => !a.valid && /as stored/.test(a.invalidReason)),
    "alice's approval no longer counts",
  );
  // Bob's signature over the reviewed text does not verify over the stored one.
  await refused(t, approve(p, 'bob'), status.PERMISSION_DENIED, 'APPROVAL_INVALID');
  await new Promise((r) => setTimeout(r, (DELAY_S + 1) * 1000));
  t.equal((await getAccess()).version, before.version, 'never applied');
  await refused(t, signWith(other, 'hot-1'), status.PERMISSION_DENIED, 'NOT_AUTHORIZED');
  await ka('CancelProposal', { proposalId: p.id, reason: 'tampered' });
});

t.test('an access version a database writer inserts grants nothing', async (t) => {
  const before = await getAccess();
  const activated = ((await ka('ListProposals', {})) as { proposals: Proposal[] }).proposals.find(
    (p) => p.kind === 'access' && p.state === 'activated',
  )!;
  const evil = await current();
  evil.keyAccess['hot-*'] = ['other-engine'];
  for (const updatedBy of ['config', `quorum:${activated.id}`, 'security-admin']) {
    const d = db();
    d.prepare('INSERT INTO access_versions (version, document, updated_at, updated_by) VALUES (?, ?, ?, ?)').run(
      before.version + 1,
      accessText(evil),
      Date.now(),
      updatedBy,
    );
    d.close();
    await new Promise((r) => setTimeout(r, 1000));
    await refused(t, signWith(other, 'hot-1'), status.PERMISSION_DENIED, 'NOT_AUTHORIZED');
    t.equal((await getAccess()).version, before.version, `updated_by "${updatedBy}": not trusted`);
    const u = db();
    u.prepare('DELETE FROM access_versions WHERE version = ?').run(before.version + 1);
    u.close();
  }
  // Nor after a restart, when the file is read again.
  await ts.restart(() => {
    const d = db();
    d.prepare('INSERT INTO access_versions (version, document, updated_at, updated_by) VALUES (?, ?, ?, ?)').run(
      before.version + 1,
      accessText(evil),
      Date.now(),
      'config',
    );
    d.close();
  });
  await refused(t, signWith(other, 'hot-1'), status.PERMISSION_DENIED, 'NOT_AUTHORIZED');
  t.equal((await getAccess()).version, before.version);
  t.ok(await signs(engine, 'hot-1'), 'the trusted version still serves');
  const u = db();
  u.prepare('DELETE FROM access_versions WHERE version = ?').run(before.version + 1);
  u.close();
});

t.test('deleting the newest access versions does not roll access back', async (t) => {
  const before = await getAccess();
  t.ok(before.version > 1);
  const d = db();
  const rows = d.prepare('SELECT * FROM access_versions WHERE version > 1 ORDER BY version').all() as Array<
    Record<string, unknown>
  >;
  d.prepare('DELETE FROM access_versions WHERE version > 1').run();
  d.close();
  // Version 1 (the seed) is trusted, but the audit log records later ones: nobody gets access.
  t.ok(await eventually(() => signs(engine, 'hot-1').then((ok) => !ok), 5000), 'refused once the replica reloads');
  await refused(t, signWith(engine, 'hot-1'), status.PERMISSION_DENIED, 'NOT_AUTHORIZED');
  const u = db();
  const put = u.prepare(
    'INSERT INTO access_versions (version, document, updated_at, updated_by) VALUES (@version, @document, @updated_at, @updated_by)',
  );
  for (const r of rows) put.run(r);
  u.close();
  t.ok(await eventually(() => signs(engine, 'hot-1'), 5000), 'the rows back: access back');
  t.equal((await getAccess()).version, before.version);
});

t.test('a loosening the quorum approved, then cancelled, cannot be written in as a version', async (t) => {
  const before = await getAccess();
  const cancelled = ((await ka('ListProposals', {})) as { proposals: Proposal[] }).proposals.find(
    (p) => p.kind === 'access' && p.state === 'cancelled' && p.approvals.filter((a) => a.valid).length === 2,
  )!;
  t.ok(cancelled, 'the cancelled loosening still carries two valid approvals');
  t.equal(cancelled.baseVersion, before.version);
  const d = db();
  d.prepare('INSERT INTO access_versions (version, document, updated_at, updated_by) VALUES (?, ?, ?, ?)').run(
    before.version + 1,
    cancelled.document,
    Date.now(),
    `quorum:${cancelled.id}`,
  );
  // The attacker also rewrites the proposal's state: the audit log still has its cancellation.
  d.prepare("UPDATE proposals SET state = 'activated' WHERE id = ?").run(cancelled.id);
  d.close();
  await new Promise((r) => setTimeout(r, 1000));
  await refused(t, signWith(other, 'hot-1'), status.PERMISSION_DENIED, 'NOT_AUTHORIZED');
  t.equal((await getAccess()).version, before.version, 'not trusted');
  const u = db();
  u.prepare('DELETE FROM access_versions WHERE version = ?').run(before.version + 1);
  u.prepare("UPDATE proposals SET state = 'cancelled' WHERE id = ?").run(cancelled.id);
  u.close();
});

t.test('a freeze survives a database writer: row deleted, unfreeze forged', async (t) => {
  t.ok(await signs(engine, 'hot-1'));
  await ka('FreezeKey', { keyId: 'hot-1' }, ts.as('admin-b'));
  await refused(t, signWith(engine, 'hot-1'), status.FAILED_PRECONDITION, 'KEY_FROZEN');
  const forged = randomBytes(16).toString('hex');
  await ts.restart(async () => {
    // As the attacker: the freeze row goes, and an "approved, activated" unfreeze appears, with
    // its entries appended to the audit log through the store's own code (chain and tree intact).
    const d = db();
    t.equal(d.prepare("DELETE FROM freezes WHERE kind = 'key' AND target = 'hot-1'").run().changes, 1);
    d.prepare(
      `INSERT INTO proposals (id, kind, target, base_version, document, proposed_by, proposed_at, state, closed_at, closed_by, note)
       VALUES (?, 'unfreeze-key', 'hot-1', 0, '', 'security-admin', ?, 'activated', ?, 'quorum', 'lifts a freeze')`,
    ).run(forged, Date.now() - 100_000, Date.now());
    for (const a of ['alice', 'bob'])
      d.prepare('INSERT INTO proposal_approvals (proposal_id, admin, signature, approved_at) VALUES (?, ?, ?, ?)').run(
        forged,
        a,
        randomBytes(64),
        Date.now() - 90_000,
      );
    d.close();
    const store = new SqliteStore(`${ts.dir}/signer.db`);
    const now = new Date();
    await store.appendAudit([
      eventDraft('proposal.propose', now, 'security-admin', {
        intent: { proposal: forged, kind: 'unfreeze-key', target: 'hot-1', baseVersion: '0' },
      }),
      eventDraft('key.unfreeze', now, 'quorum', {
        keyId: 'hot-1',
        intent: { target: 'hot-1', proposal: forged, approvals: '' },
      }),
    ]);
    await store.close();
  });
  const e = await refused(t, signWith(engine, 'hot-1'), status.FAILED_PRECONDITION, 'KEY_FROZEN');
  t.same(e.metadata, { keyId: 'hot-1' });
  t.match(e.message, /frozen by an admin; unfreezing needs the admin quorum/);
  // The quorum's real unfreeze lifts it.
  const u = await ka('ProposeUnfreeze', { keyId: 'hot-1' });
  await approve(u, 'alice');
  await approve(u, 'carol');
  t.ok(await eventually(() => signs(engine, 'hot-1'), (DELAY_S + 5) * 1000), 'signs again after the quorum');
});

t.test('scripts: propose-access shows the diff, approve-policy reviews and signs', async (t) => {
  const { run, tsx, as, approve } = adminScripts(ts.address, ts.pki);
  const before = await getAccess();
  const file = `${ts.dir}/access.json`;
  await run(tsx, ['scripts/propose-access.ts', '--current', file, ...as('admin-a')], { cwd: repoRoot });
  const doc = JSON.parse(await import('node:fs').then((fs) => fs.readFileSync(file, 'utf8')));
  t.same(doc, JSON.parse(before.document), '--current writes the document in force');
  doc.clients.auditor.roles = ['auditor', 'admin'];
  await writeFile(file, JSON.stringify(doc, null, 2));
  const proposed = await run(tsx, ['scripts/propose-access.ts', '--file', file, '--json', ...as('admin-a')], {
    cwd: repoRoot,
  });
  t.match(proposed.stderr, /^- client auditor roles: auditor$/m);
  t.match(proposed.stderr, /^\+ client auditor roles: admin, auditor$/m);
  const id = (JSON.parse(proposed.stdout) as { id: string }).id;
  const approveAs = (who: Admin) => approve(id, who, ADMINS[who]);
  const first = await approveAs('alice');
  t.match(first.stderr, /client "auditor" gets the admin role/, 'the loosening, worked out locally');
  // Approved, then applied once the delay passed (the scripts take seconds each to start).
  t.match(JSON.parse((await approveAs('bob')).stdout).state, /^(approved|activated)$/);
  const listed = await run(tsx, ['scripts/list-proposals.ts', '--all', ...as('admin-c')], { cwd: repoRoot });
  t.match(listed.stdout, new RegExp(`proposal ${id}: access access \\(base version ${before.version}\\)`));
  t.ok(await eventually(async () => (await getAccess()).version === before.version + 1, (DELAY_S + 5) * 1000));
  t.same(JSON.parse((await getAccess()).document).clients.auditor.roles, ['admin', 'auditor']);
});

// Last: it leaves the log broken for good.
t.test('a freeze entry edited out of the audit log stops signing, it does not unfreeze', async (t) => {
  await ka('FreezeKey', { keyId: 'hot-1' }, ts.as('admin-a'));
  await refused(t, signWith(engine, 'hot-1'), status.FAILED_PRECONDITION, 'KEY_FROZEN');
  // The checkpointer signs a head that covers the freeze entry.
  t.ok(await ts.signer.checkpointer.checkpointHead());
  await ts.restart(() => {
    const d = db();
    d.prepare("DELETE FROM freezes WHERE kind = 'key' AND target = 'hot-1'").run();
    const last = d
      .prepare("SELECT max(seq) AS seq FROM audit WHERE kind = 'key.freeze' AND key_id = 'hot-1'")
      .get() as {
      seq: number;
    };
    // The entry becomes an innocent one; its stored hash and the chain links stay as they were.
    t.equal(d.prepare("UPDATE audit SET kind = 'service.start' WHERE seq = ?").run(last.seq).changes, 1);
    d.close();
  });
  const e = await refused(t, signWith(engine, 'hot-1'), status.FAILED_PRECONDITION, 'AUDIT_LOG_INCONSISTENT');
  t.notOk(/KEY_FROZEN/.test(e.reason ?? ''), 'not signed, and not mistaken for unfrozen');
});
