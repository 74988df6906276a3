/**
 * The admin quorum against a real signer (mTLS, SoftHSM, SQLite): 2 of 3 admins, each approving
 * with the P-256 key of their own client certificate (signed here with Node's crypto, verified
 * by the signer with @noble/curves). The attacker edits the database as any DB writer could.
 */
import { randomUUID } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { status } from '@grpc/grpc-js';
import { ed25519 } from '@noble/curves/ed25519.js';
import Database from 'better-sqlite3';
import t from 'tap';
import { adminApproval, adminScripts } from '../harness/admins.js';
import { eventually, OPEN_POLICY, refused, startTestSigner } from '../harness/signer.js';
import { repoRoot } from '../harness/token.js';
import { call, nowTimestamp } from '../src/client/client.js';
import { proposalBytes } from '../src/core/admin/proposal.js';
import { canonicalJson } from '../src/core/policy/canonical.js';

const DELAY_S = 3;
const ADMINS = { alice: 'admin-a', bob: 'admin-b', carol: 'admin-c' } as const;
type Admin = keyof typeof ADMINS;
/** The seeded version: no raw messages, so adding them is a loosening. */
const BASE = { ...OPEN_POLICY, payloadKinds: ['evm', 'digest'] };

const ts = await startTestSigner({
  clients: Object.values(ADMINS),
  prepare: async (_dir, pki) => ({
    refreshMs: 300,
    policies: { open: BASE },
    clients: {
      'payment-engine': { roles: ['signer'] },
      'security-admin': { roles: ['admin'] },
      auditor: { roles: ['auditor'] },
      ...Object.fromEntries(Object.values(ADMINS).map((cn) => [cn, { roles: ['admin'] }])),
    },
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

const admin = ts.as('security-admin');
const engine = ts.as('payment-engine');
type Proposal = {
  id: string;
  kind: string;
  target: string;
  baseVersion: number;
  document: string;
  state: string;
  loosenings: string[];
  signingBytes: Buffer;
  approvals: Array<{ admin: string; valid: boolean; invalidReason: string }>;
  approvedAt: { seconds: string } | null;
  activatesAt: { seconds: string } | null;
};
const ka = (name: string, req: object, as = admin) => call<any>(as.keyAdmin, name, req);
const getPolicy = () => ka('GetPolicy', { name: 'open' }) as Promise<{ version: number; document: string }>;
const proposal = async (id: string) =>
  ((await ka('ListProposals', {})) as { proposals: Proposal[] }).proposals.find((p) => p.id === id)!;

/** What an admin does: rebuild the canonical bytes from the proposal's fields, sign with their key. */
const approvalOf = (p: Proposal, who: Admin, keyOf: string = ADMINS[who]) =>
  adminApproval(p, who, ts.pki.clients[keyOf]!.key);
const approve = (p: Proposal, who: Admin) =>
  ka('ApproveProposal', approvalOf(p, who), ts.as(ADMINS[who])) as Promise<Proposal>;
const proposePolicy = (doc: object) =>
  ka('ProposePolicy', { name: 'open', document: JSON.stringify(doc) }) as Promise<Proposal>;
const signMessage = (keyId: string) =>
  call<{ signature: Buffer }>(engine.signer, 'Sign', {
    keyId,
    requestId: randomUUID(),
    clientTime: nowTimestamp(),
    message: Buffer.from('quorum'),
  });
const auditKinds = () => {
  const db = new Database(`${ts.dir}/signer.db`, { readonly: true });
  try {
    return (
      db.prepare('SELECT kind, intent FROM audit ORDER BY seq').all() as Array<{ kind: string; intent: string }>
    ).map((r) => ({ kind: r.kind, intent: JSON.parse(r.intent ?? 'null') as Record<string, string> | null }));
  } finally {
    db.close();
  }
};

const ed = await ka('CreateKey', { keyId: 'hot-ed', algorithm: 'ED25519' });

t.test('SetPolicy and DestroyKeyVersion are refused under a quorum', async (t) => {
  await refused(
    t,
    ka('SetPolicy', { name: 'open', document: JSON.stringify(OPEN_POLICY) }),
    status.FAILED_PRECONDITION,
    'QUORUM_REQUIRED',
  );
  await refused(
    t,
    ka('DestroyKeyVersion', { keyId: 'hot-ed', version: 1, confirmKeyId: 'hot-ed' }),
    status.FAILED_PRECONDITION,
    'QUORUM_REQUIRED',
  );
  t.equal((await getPolicy()).version, 1);
});

t.test('a tightening needs k distinct admins, then applies at once', async (t) => {
  const tighter = { ...BASE, freshness: { maxSkewSeconds: 120 } };
  const p = await proposePolicy(tighter);
  t.equal(p.state, 'open');
  t.same(p.loosenings, [], 'only tightens');
  t.equal(p.document, canonicalJson(tighter), 'stored canonically');
  t.same(
    p.signingBytes,
    Buffer.from(proposalBytes({ ...p, kind: 'policy' })),
    'the bytes to sign are the documented ones',
  );

  const one = await approve(p, 'alice');
  t.equal(one.state, 'open', 'one approval of two: not approved');
  t.equal((await getPolicy()).version, 1, 'fewer than k approvals: not active');
  await refused(t, approve(p, 'alice'), status.ALREADY_EXISTS, 'APPROVAL_DUPLICATE');
  // An admin-role connection with a signature by a key that is no configured admin's.
  const forged = approvalOf(p, 'bob', 'payment-engine');
  await refused(t, ka('ApproveProposal', forged, ts.as('admin-b')), status.PERMISSION_DENIED, 'APPROVAL_INVALID');
  const stranger = { ...approvalOf(p, 'bob', 'security-admin'), admin: 'mallory' };
  await refused(t, ka('ApproveProposal', stranger), status.PERMISSION_DENIED, 'APPROVAL_INVALID');
  // A non-admin client holding a real admin's signature still cannot call.
  await refused(t, ka('ApproveProposal', approvalOf(p, 'bob'), engine), status.PERMISSION_DENIED, 'NOT_AUTHORIZED');
  t.equal((await getPolicy()).version, 1, 'none of those counted');

  const two = await approve(p, 'bob');
  t.equal(two.state, 'activated', 'k-th approval of a tightening activates it');
  const now = await getPolicy();
  t.equal(now.version, 2);
  t.equal(now.document, canonicalJson(tighter));
  const kinds = auditKinds();
  const activation = kinds.find((e) => e.kind === 'proposal.activate' && e.intent?.proposal === p.id);
  t.ok(activation, 'activation audited');
  t.match(
    activation!.intent!.approvals,
    /^alice:[0-9a-f]{64},bob:[0-9a-f]{64}$/,
    'with the approvers and signature hashes',
  );
  t.equal(kinds.filter((e) => e.kind === 'proposal.approve' && e.intent?.proposal === p.id).length, 2);
  t.ok(kinds.some((e) => e.kind === 'policy.set' && e.intent?.proposal === p.id && e.intent?.version === '2'));
});

t.test('a loosening waits for the delay after approval, then applies', async (t) => {
  await refused(t, signMessage('hot-ed'), status.PERMISSION_DENIED, 'RAW_SIGNING_DISABLED');
  const base = await getPolicy();
  const looser = { ...JSON.parse(base.document), payloadKinds: ['evm', 'digest', 'message'] };
  const p = await proposePolicy(looser);
  t.ok(
    p.loosenings.some((l) => l.includes('payloadKinds: adds message')),
    'the loosening is named',
  );
  await approve(p, 'alice');
  const approved = await approve(p, 'carol');
  t.equal(approved.state, 'approved', 'approved, waiting');
  t.equal(Number(approved.activatesAt!.seconds) - Number(approved.approvedAt!.seconds), DELAY_S, 'due after the delay');
  await refused(t, signMessage('hot-ed'), status.PERMISSION_DENIED, 'RAW_SIGNING_DISABLED');
  t.equal((await getPolicy()).version, base.version, 'not active during the delay');
  t.ok(
    await eventually(async () => (await getPolicy()).version === base.version + 1, (DELAY_S + 5) * 1000),
    'active after the delay',
  );
  const sig = await signMessage('hot-ed');
  t.ok(ed25519.verify(sig.signature, Buffer.from('quorum'), ed.publicKey), 'the loosened rule signs; Ed25519 verifies');
  t.equal((await proposal(p.id)).state, 'activated');
});

t.test('a loosening approved by the quorum can be cancelled by any one admin', async (t) => {
  const base = await getPolicy();
  const looser = { ...JSON.parse(base.document), freshness: { maxSkewSeconds: 900 } };
  const p = await proposePolicy(looser);
  await approve(p, 'alice');
  t.equal((await approve(p, 'bob')).state, 'approved');
  const c = await ka('CancelProposal', { proposalId: p.id, reason: 'not reviewed' }, ts.as('admin-c'));
  t.equal(c.state, 'cancelled');
  await refused(t, approve(p, 'carol'), status.FAILED_PRECONDITION, 'PROPOSAL_CLOSED');
  await new Promise((r) => setTimeout(r, (DELAY_S + 1) * 1000));
  t.equal((await getPolicy()).version, base.version, 'never applied');
  t.ok(auditKinds().some((e) => e.kind === 'proposal.cancel' && e.intent?.proposal === p.id));
});

t.test('approval times backdated in the database do not shorten the delay', async (t) => {
  const base = await getPolicy();
  const looser = { ...JSON.parse(base.document), freshness: { maxSkewSeconds: 700 } };
  const p = await proposePolicy(looser);
  await approve(p, 'alice');
  const approved = await approve(p, 'bob');
  t.equal(approved.state, 'approved');
  const db = new Database(`${ts.dir}/signer.db`);
  db.prepare('UPDATE proposal_approvals SET approved_at = approved_at - ? WHERE proposal_id = ?').run(86_400_000, p.id);
  db.close();
  await new Promise((r) => setTimeout(r, 1000));
  t.equal((await getPolicy()).version, base.version, 'still waiting after the attacker moved the approvals back a day');
  t.same((await proposal(p.id)).activatesAt, approved.activatesAt, 'due when it was due');
  await ka('CancelProposal', { proposalId: p.id, reason: 'test' });
});

t.test('a document edited in the database after approval never activates', async (t) => {
  const base = await getPolicy();
  const looser = { ...JSON.parse(base.document), freshness: { maxSkewSeconds: 600 } };
  const p = await proposePolicy(looser);
  await approve(p, 'alice');
  t.equal((await approve(p, 'bob')).state, 'approved');
  // The attacker swaps in a far looser document while the delay runs.
  const evil = { ...looser, keys: ['*'], clients: undefined, freshness: { maxSkewSeconds: 3600 } };
  const db = new Database(`${ts.dir}/signer.db`);
  db.prepare('UPDATE proposals SET document = ? WHERE id = ?').run(
    canonicalJson(JSON.parse(JSON.stringify(evil))),
    p.id,
  );
  db.close();
  const after = await proposal(p.id);
  t.equal(after.state, 'open', 'no valid approvals any more');
  t.ok(
    after.approvals.every((a) => !a.valid && /as stored/.test(a.invalidReason)),
    'each approval is shown invalid',
  );
  await new Promise((r) => setTimeout(r, (DELAY_S + 1) * 1000));
  t.equal((await getPolicy()).version, base.version, 'the edited proposal did not activate');
  t.equal((await proposal(p.id)).state, 'open');
  // Approving the edited text is now an approval of it, and a single one is not a quorum.
  await approve(await proposal(p.id), 'carol');
  await new Promise((r) => setTimeout(r, (DELAY_S + 1) * 1000));
  t.equal((await getPolicy()).version, base.version, 'one valid approval of the edited text is not a quorum');
  await ka('CancelProposal', { proposalId: p.id, reason: 'tampered' });
});

t.test('a policy version a database writer inserts is refused, not trusted', async (t) => {
  const base = await getPolicy();
  const activated = ((await ka('ListProposals', {})) as { proposals: Proposal[] }).proposals.find(
    (p) => p.kind === 'policy' && p.state === 'activated',
  );
  t.ok(activated, 'an activated proposal exists to borrow the name of');
  const evil = JSON.stringify({
    ...JSON.parse(base.document),
    keys: ['*'],
    payloadKinds: ['evm', 'digest', 'message'],
  });
  const signedBefore = await signMessage('hot-ed').then(
    () => true,
    () => false,
  );
  for (const updatedBy of ['security-admin', `quorum:${activated!.id}`, 'config']) {
    const db = new Database(`${ts.dir}/signer.db`);
    db.prepare('INSERT INTO policies (name, version, document, updated_at, updated_by) VALUES (?, ?, ?, ?, ?)').run(
      'open',
      base.version + 1,
      evil,
      Date.now(),
      updatedBy,
    );
    db.close();
    t.ok(
      await eventually(async () => {
        const e = await signMessage('hot-ed').then(
          () => null,
          (err: Error) => err,
        );
        return e !== null && /POLICY_UNAVAILABLE|does not compile|neither|not trusted/.test(String(e.message));
      }),
      `updated_by "${updatedBy}": refused once the replica reloads`,
    );
    await refused(t, signMessage('hot-ed'), status.FAILED_PRECONDITION, 'POLICY_UNAVAILABLE');
    const undo = new Database(`${ts.dir}/signer.db`);
    undo.prepare('DELETE FROM policies WHERE name = ? AND version = ?').run('open', base.version + 1);
    undo.close();
    t.ok(
      await eventually(async () =>
        signMessage('hot-ed').then(
          () => signedBefore,
          (e: Error) => !signedBefore && !/POLICY_UNAVAILABLE/.test(e.message),
        ),
      ),
      'the approved version governs again once the row is gone',
    );
  }
});

t.test('freeze is immediate by one admin; unfreeze needs the quorum', async (t) => {
  await signMessage('hot-ed');
  const f = await ka('FreezeKey', { keyId: 'hot-ed' }, ts.as('admin-c'));
  t.equal(f.frozenBy, 'admin-c');
  await refused(t, signMessage('hot-ed'), status.FAILED_PRECONDITION, 'KEY_FROZEN');
  const u = await ka('ProposeUnfreeze', { keyId: 'hot-ed' });
  t.equal(u.kind, 'unfreeze-key');
  await approve(u, 'alice');
  await refused(t, signMessage('hot-ed'), status.FAILED_PRECONDITION, 'KEY_FROZEN');
  t.equal((await approve(u, 'bob')).state, 'approved');
  await refused(t, signMessage('hot-ed'), status.FAILED_PRECONDITION, 'KEY_FROZEN');
  t.ok(await eventually(async () => (await proposal(u.id)).state === 'activated', (DELAY_S + 5) * 1000));
  t.ok(
    await eventually(
      () =>
        signMessage('hot-ed').then(
          () => true,
          () => false,
        ),
      3000,
    ),
    'signs again',
  );

  await ka('FreezePolicy', { name: 'open' });
  await refused(t, signMessage('hot-ed'), status.FAILED_PRECONDITION, 'POLICY_FROZEN');
  const kinds = auditKinds().map((e) => e.kind);
  t.ok(kinds.includes('key.freeze') && kinds.includes('key.unfreeze') && kinds.includes('policy.freeze'));
  const up = await ka('ProposeUnfreeze', { policy: 'open' });
  await approve(up, 'bob');
  await approve(up, 'carol');
  t.ok(
    await eventually(
      () =>
        signMessage('hot-ed').then(
          () => true,
          () => false,
        ),
      (DELAY_S + 5) * 1000,
    ),
    'policy unfrozen',
  );
});

t.test('destroying a key version needs the quorum', async (t) => {
  const k = await ka('CreateKey', { keyId: 'old-ed', algorithm: 'ED25519' });
  await ka('DisableKeyVersion', { keyId: 'old-ed', version: k.version });
  const p = await ka('ProposeDestroyKeyVersion', {
    destroy: { keyId: 'old-ed', version: k.version, confirmKeyId: 'old-ed' },
  });
  t.equal(p.kind, 'destroy-key');
  await approve(p, 'carol');
  await new Promise((r) => setTimeout(r, (DELAY_S + 1) * 1000));
  const state = async () =>
    (
      (
        await call<{ keys: Array<{ keyId: string; state: string }> }>(admin.signer, 'ListKeys', {
          includeInactive: true,
        })
      ).keys.find((x) => x.keyId === 'old-ed') ?? { state: 'GONE' }
    ).state;
  t.not(await state(), 'DESTROYED', 'one approval: not destroyed');
  await approve(p, 'alice');
  t.ok(await eventually(async () => (await proposal(p.id)).state === 'activated', (DELAY_S + 5) * 1000));
  t.ok(
    auditKinds().some((e) => e.kind === 'key.destroy' && e.intent?.proposal === p.id),
    'destroy audited with its proposal',
  );
});

t.test('scripts: propose, review the diff and loosenings, approve with the key file', async (t) => {
  const { run, tsx, as, approve } = adminScripts(ts.address, ts.pki);
  const base = await getPolicy();
  const file = `${ts.dir}/next.json`;
  const next = { ...JSON.parse(base.document), evm: { ...JSON.parse(base.document).evm, maxGas: '1000' } };
  await writeFile(file, JSON.stringify(next, null, 4));
  const proposed = await run(tsx, ['scripts/propose-policy.ts', 'open', '--file', file, '--json', ...as('admin-a')], {
    cwd: repoRoot,
  });
  const id = (JSON.parse(proposed.stdout) as { id: string }).id;
  const approveAs = (who: Admin) => approve(id, who, ADMINS[who]);
  const first = await approveAs('alice');
  t.match(first.stderr, /^- {5}"maxGas": "30000000"/m, 'the diff shows the old line');
  t.match(first.stderr, /^\+ {5}"maxGas": "1000"/m, 'and the new one');
  t.match(first.stderr, /nothing: applies once approved/, 'a tightening, said before signing');
  t.equal(JSON.parse(first.stdout).state, 'open');
  const second = await approveAs('bob');
  t.equal(JSON.parse(second.stdout).state, 'activated');
  t.equal((await getPolicy()).version, base.version + 1);
  const listed = await run(tsx, ['scripts/list-proposals.ts', '--all', ...as('admin-c')], { cwd: repoRoot });
  t.match(listed.stdout, new RegExp(`proposal ${id}: policy open`));
});

t.test('after a restart the activated version stays and the config does not override it', async (t) => {
  const before = await getPolicy();
  await ts.restart();
  t.same(await getPolicy().then((p) => [p.version, p.document]), [before.version, before.document]);
});
