/**
 * A database writer against the admin quorum's delay (README "Admin quorum"), run on SQLite and
 * on PostgreSQL by test/quorum-loosen-writer*.test.ts. The writer copies an approved, uncancelled
 * loosening in as the next stored version before its delay has passed, backdates the approval
 * rows and restarts the signer, appends forged `proposal.approve` entries to the audit log
 * (chained by the store's own code, as anyone with write access can), and does the same for an
 * access loosening; an approved tightening copied in is simply what the quorum approved.
 */
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { status } from '@grpc/grpc-js';
import { ed25519 } from '@noble/curves/ed25519.js';
import { secp256k1 } from '@noble/curves/secp256k1.js';
import type { Test } from 'tap';
import { call, nowTimestamp, type SignerClients } from '../src/client/client.js';
import { accessText } from '../src/core/admin/access.js';
import { eventDraft } from '../src/core/audit/draft.js';
import type { AuditStore } from '../src/infra/store/audit.js';
import type { Store } from '../src/infra/store/store.js';
import { adminApproval, type ProposalFields } from './admins.js';
import type { Pki } from './pki.js';
import { eventually, OPEN_POLICY, refused, type TestSigner } from './signer.js';

export const DELAY_S = 20;
const ADMINS = { alice: 'admin-a', bob: 'admin-b', carol: 'admin-c' } as const;
type Admin = keyof typeof ADMINS;
export const ADMIN_CNS = Object.values(ADMINS);
/** The seeded policy: no raw messages, so adding them is a loosening. */
const BASE = { ...OPEN_POLICY, payloadKinds: ['evm', 'digest'] };

/** The signer's config under test (the store section is the caller's). */
export function loosenWriterConfig(pki: Pki) {
  return {
    refreshMs: 300,
    policies: { open: BASE },
    clients: {
      'payment-engine': { roles: ['signer'] },
      'other-engine': { roles: ['signer'] },
      'security-admin': { roles: ['admin'] },
      ...Object.fromEntries(ADMIN_CNS.map((cn) => [cn, { roles: ['admin'] }])),
    },
    keyAccess: { 'hot-*': ['payment-engine'] },
    admins: {
      quorum: 2,
      policyDelaySeconds: DELAY_S,
      members: Object.fromEntries(
        Object.entries(ADMINS).map(([name, cn]) => [name, { certificateFile: pki.files.clients[cn]!.cert }]),
      ),
    },
  };
}

/** What the tests need of the database, as its writer. */
export interface Writer {
  /** Runs one statement (`?` placeholders); returns the rows it changed. */
  run(sql: string, params: unknown[]): Promise<number>;
  /** Runs one query (`?` placeholders); returns its rows. */
  rows(sql: string, params: unknown[]): Promise<Array<Record<string, unknown>>>;
  /** The signer's store opened with the store's own code (while the signer is stopped). */
  openStore(): Promise<Store & AuditStore>;
}

type Proposal = ProposalFields & {
  state: string;
  loosenings: string[];
  approvedAt: { seconds: string; nanos: number } | null;
  activatesAt: { seconds: string; nanos: number } | null;
};
const sha256hex = (b: Uint8Array | string) => createHash('sha256').update(b).digest('hex');
const ms = (ts: { seconds: string; nanos?: number }) => Number(ts.seconds) * 1000 + Math.floor((ts.nanos ?? 0) / 1e6);

export async function loosenWriterTests(
  t: Test,
  ts: TestSigner,
  writer: Writer,
  logLines: ReadonlyArray<Record<string, unknown>>,
): Promise<void> {
  const admin = ts.as('security-admin');
  const engine = ts.as('payment-engine');
  const other = ts.as('other-engine');
  const ka = (name: string, req: object, as = admin) => call<any>(as.keyAdmin, name, req);
  const getPolicy = () => ka('GetPolicy', { name: 'open' }) as Promise<{ version: number; document: string }>;
  const getAccess = () => ka('GetAccess', {}) as Promise<{ version: number; document: string }>;
  const proposal = async (id: string) =>
    ((await ka('ListProposals', {})) as { proposals: Proposal[] }).proposals.find((p) => p.id === id)!;
  const approve = (p: Proposal, who: Admin) =>
    ka(
      'ApproveProposal',
      adminApproval(p, who, ts.pki.clients[ADMINS[who]]!.key),
      ts.as(ADMINS[who]),
    ) as Promise<Proposal>;
  const sign = (as: SignerClients, keyId: string, payload: object) =>
    call<{ signature: Buffer }>(as.signer, 'Sign', {
      keyId,
      requestId: randomUUID(),
      clientTime: nowTimestamp(),
      ...payload,
    });
  const message = Buffer.from('loosen');
  const digest = randomBytes(32);
  const ed = await ka('CreateKey', { keyId: 'hot-ed', algorithm: 'ED25519' });
  const k1 = await ka('CreateKey', { keyId: 'hot-k1', algorithm: 'ECDSA_SECP256K1' });
  const signsDigest = async () => {
    const s = await sign(engine, 'hot-k1', { digest });
    return secp256k1.verify(s.signature, digest, k1.publicKey, { prehash: false, lowS: true });
  };
  const insertPolicy = (version: number, document: string, by: string) =>
    writer.run('INSERT INTO policies (name, version, document, updated_at, updated_by) VALUES (?, ?, ?, ?, ?)', [
      'open',
      version,
      document,
      Date.now(),
      by,
    ]);
  /** The writer's forged `proposal.approve` entries: dated a day back, appended after the real ones. */
  const forgeApproveEntries = async (p: Proposal) => {
    const store = await writer.openStore();
    const dayAgo = new Date(Date.now() - 86_400_000);
    const entry = (who: Admin, signatureHash: string) =>
      eventDraft('proposal.approve', dayAgo, ADMINS[who], {
        payloadHash: createHash('sha256').update(p.document).digest(),
        intent: { proposal: p.id, admin: who, signatureHash },
      });
    // Carol never approved: a made-up hash. Alice's and bob's: the hashes of their real
    // signatures (read from the store), replayed with an earlier time, and a made-up one each.
    const stored = (await store.listProposals()).find((x) => x.id === p.id)!;
    const real = stored.approvals.map((a) => entry(a.admin as Admin, sha256hex(a.signature)));
    await store.appendAudit([
      entry('carol', sha256hex(randomBytes(64))),
      entry('alice', sha256hex(randomBytes(64))),
      entry('bob', sha256hex(randomBytes(64))),
      ...real,
    ]);
    await store.close();
  };
  const backdateApprovals = (p: Proposal) =>
    writer.run('UPDATE proposal_approvals SET approved_at = approved_at - ? WHERE proposal_id = ?', [86_400_000, p.id]);
  /**
   * When the audit log says the proposal's quorum was reached: the time of its second approve
   * entry (read before any forgery, both the signer's own). The signer's own clock may see it a
   * little later (QuorumClock), never earlier.
   */
  const loggedDue = async (p: Proposal) => {
    const rows = await writer.rows('SELECT at_ms, intent FROM audit WHERE kind = ? ORDER BY seq', ['proposal.approve']);
    const mine = rows.filter((r) => {
      const intent = typeof r.intent === 'string' ? JSON.parse(r.intent) : r.intent;
      return intent?.proposal === p.id;
    });
    return Number(mine[1]!.at_ms) + DELAY_S * 1000;
  };
  const untrustedLogged = (kind: 'policy' | 'access', id: string) =>
    logLines.some(
      (l) =>
        typeof l.msg === 'string' &&
        l.msg.startsWith(`stored ${kind} version is neither`) &&
        typeof l.why === 'string' &&
        l.why.includes(`proposal ${id} loosens`),
    );

  await t.test('an approved loosening copied in before its delay is refused; it applies at its time', async (t) => {
    t.ok(await signsDigest(), 'the base policy signs digests');
    await refused(t, sign(engine, 'hot-ed', { message }), status.PERMISSION_DENIED, 'RAW_SIGNING_DISABLED');
    const base = await getPolicy();
    const p = await ka('ProposePolicy', {
      name: 'open',
      document: JSON.stringify({ ...JSON.parse(base.document), payloadKinds: ['digest', 'evm', 'message'] }),
    });
    t.ok(p.loosenings.length > 0, 'a loosening');
    await approve(p, 'alice');
    const approved = await approve(p, 'bob');
    t.equal(approved.state, 'approved');
    const seen = ms(approved.activatesAt!);
    t.equal(seen - ms(approved.approvedAt!), DELAY_S * 1000, 'due after the delay');
    const due = await loggedDue(p);
    t.ok(seen >= due && seen - due < 2000, "as this process saw the quorum: at or just after the log's time");

    // The writer copies the approved document in as the next version, as the signer would at its time.
    t.equal(await insertPolicy(base.version + 1, p.document, `quorum:${p.id}`), 1);
    t.ok(
      await eventually(
        () =>
          sign(engine, 'hot-k1', { digest }).then(
            () => false,
            () => true,
          ),
        5000,
      ),
      'refused once the replica reloads',
    );
    const e = await refused(t, sign(engine, 'hot-k1', { digest }), status.FAILED_PRECONDITION, 'POLICY_UNAVAILABLE');
    t.same(e.metadata, { keyId: 'hot-k1', policy: 'open', version: String(base.version + 1) });
    t.match(e.message, new RegExp(`not trusted \\(proposal ${p.id} loosens the policy .*delay runs until`));
    await refused(t, sign(engine, 'hot-ed', { message }), status.FAILED_PRECONDITION, 'POLICY_UNAVAILABLE');
    t.ok(untrustedLogged('policy', p.id), 'logged: the version and why it is not trusted');
    const audited = await writer.rows('SELECT decision, client FROM audit WHERE key_id = ? AND reason = ?', [
      'hot-k1',
      'POLICY_UNAVAILABLE',
    ]);
    t.ok(
      audited.some((r) => r.decision === 'refused' && r.client === 'payment-engine'),
      'the refusals are audit entries',
    );
    t.equal((await proposal(p.id)).state, 'approved', 'the proposal is not failed for it: it waits');

    // (b) Approval rows moved a day back, and a restart: the delay counts from the audit log.
    t.equal(await backdateApprovals(p), 2);
    await ts.restart();
    t.ok(Date.now() < due, 'still within the delay after the restart');
    await refused(t, sign(engine, 'hot-k1', { digest }), status.FAILED_PRECONDITION, 'POLICY_UNAVAILABLE');
    const after = await proposal(p.id);
    t.equal(after.state, 'approved', 'not applied by the signer either');
    t.equal(ms(after.activatesAt!), due, "due at the audit log's time of the quorum, not the rows'");

    // (c) Forged approve entries, dated a day back, appended to the log while the signer is down.
    await ts.restart(() => forgeApproveEntries(p));
    t.ok(Date.now() < due, 'still within the delay after the forgery');
    await refused(t, sign(engine, 'hot-ed', { message }), status.FAILED_PRECONDITION, 'POLICY_UNAVAILABLE');
    t.equal(ms((await proposal(p.id)).activatesAt!), due, 'forged entries move nothing');

    // At its time: the copied version is trusted, and the proposal is closed without a second copy.
    t.ok(
      await eventually(() => signsDigest().catch(() => false), due - Date.now() + 10_000),
      'signs again once the delay has passed',
    );
    t.ok(Date.now() >= due, 'not before its time');
    const s = await sign(engine, 'hot-ed', { message });
    t.ok(ed25519.verify(s.signature, message, ed.publicKey), 'the loosened rule signs; Ed25519 verifies');
    t.ok(await eventually(async () => (await proposal(p.id)).state === 'activated', 5000), 'activated');
    t.equal((await getPolicy()).version, base.version + 1, 'one version, not a second copy');
  });

  await t.test('an access loosening copied in before its delay grants nothing until then', async (t) => {
    await refused(t, sign(other, 'hot-ed', { message }), status.PERMISSION_DENIED, 'NOT_AUTHORIZED');
    const before = await getAccess();
    const doc = JSON.parse(before.document);
    doc.keyAccess['hot-*'] = ['other-engine', 'payment-engine'];
    const p = await ka('ProposeAccess', { document: JSON.stringify(doc) });
    t.ok(p.loosenings.length > 0, 'a loosening');
    await approve(p, 'alice');
    const approved = await approve(p, 'carol');
    t.equal(approved.state, 'approved');
    const due = await loggedDue(p);
    t.ok(ms(approved.activatesAt!) >= due, 'not before the log says');
    t.equal(
      await writer.run('INSERT INTO access_versions (version, document, updated_at, updated_by) VALUES (?, ?, ?, ?)', [
        before.version + 1,
        accessText(doc),
        Date.now(),
        `quorum:${p.id}`,
      ]),
      1,
    );
    t.ok(await eventually(() => untrustedLogged('access', p.id), 5000), 'logged: not trusted within the delay');
    await refused(t, sign(other, 'hot-ed', { message }), status.PERMISSION_DENIED, 'NOT_AUTHORIZED');
    t.equal((await getAccess()).version, before.version, 'the version in force is unchanged');
    // (b) and (c) at once: approvals backdated, forged entries appended, a restart.
    t.equal(await backdateApprovals(p), 2);
    await ts.restart(() => forgeApproveEntries(p));
    t.ok(Date.now() < due, 'still within the delay after the restart');
    await refused(t, sign(other, 'hot-ed', { message }), status.PERMISSION_DENIED, 'NOT_AUTHORIZED');
    t.equal(ms((await proposal(p.id)).activatesAt!), due, "due at the audit log's time of the quorum");
    t.ok(
      await eventually(
        () =>
          sign(other, 'hot-ed', { message }).then(
            () => true,
            () => false,
          ),
        due - Date.now() + 10_000,
      ),
      'the added client signs once the delay has passed',
    );
    t.ok(Date.now() >= due, 'not before its time');
    t.equal((await getAccess()).version, before.version + 1);
    t.ok(await eventually(async () => (await proposal(p.id)).state === 'activated', 5000), 'activated');
  });

  await t.test(
    'a destroy and an unfreeze keep their delay: approvals backdated, an unfreeze entry appended',
    async (t) => {
      const old = await ka('CreateKey', { keyId: 'hot-old', algorithm: 'ED25519' });
      await ka('DisableKeyVersion', { keyId: 'hot-old', version: old.version });
      const d = await ka('ProposeDestroyKeyVersion', {
        destroy: { keyId: 'hot-old', version: old.version, confirmKeyId: 'hot-old' },
      });
      await approve(d, 'alice');
      t.equal((await approve(d, 'bob')).state, 'approved');
      await ka('CreateKey', { keyId: 'hot-fz', algorithm: 'ED25519' });
      await sign(engine, 'hot-fz', { message });
      await ka('FreezeKey', { keyId: 'hot-fz' }, ts.as('admin-c'));
      const u = await ka('ProposeUnfreeze', { keyId: 'hot-fz' });
      await approve(u, 'alice');
      t.equal((await approve(u, 'carol')).state, 'approved');
      const due = await loggedDue(u);
      t.equal(await backdateApprovals(d), 2);
      t.equal(await backdateApprovals(u), 2);
      await ts.restart(async () => {
        // As the writer: the freeze row goes and the unfreeze's entry is appended, chain intact.
        t.equal(await writer.run('DELETE FROM freezes WHERE kind = ? AND target = ?', ['key', 'hot-fz']), 1);
        const store = await writer.openStore();
        const intent = { target: 'hot-fz', proposal: u.id, approvals: '' };
        await store.appendAudit([eventDraft('key.unfreeze', new Date(), 'quorum', { keyId: 'hot-fz', intent })]);
        await store.close();
      });
      t.ok(Date.now() < due, 'still within the delay after the restart');
      await refused(t, sign(engine, 'hot-fz', { message }), status.FAILED_PRECONDITION, 'KEY_FROZEN');
      const keyState = async () =>
        (
          await call<{ keys: Array<{ keyId: string; state: string }> }>(admin.signer, 'ListKeys', {
            includeInactive: true,
          })
        ).keys.find((k) => k.keyId === 'hot-old')?.state;
      t.equal(await keyState(), 'DISABLED', 'the approved destroy waits');
      t.equal((await proposal(d.id)).state, 'approved');
      t.equal((await proposal(u.id)).state, 'approved');
      t.equal((await ka('CancelProposal', { proposalId: d.id, reason: 'test' })).state, 'cancelled');
      t.ok(
        await eventually(
          () =>
            sign(engine, 'hot-fz', { message }).then(
              () => true,
              () => false,
            ),
          due - Date.now() + 10_000,
        ),
        'the unfreeze lifts the freeze at its time',
      );
      t.ok(Date.now() >= due, 'not before');
      t.equal(await keyState(), 'DISABLED', 'the cancelled destroy never ran');
    },
  );

  await t.test("a writer who marks the proposal activated does not take the admins' cancel away", async (t) => {
    const base = await getPolicy();
    const looser = { ...JSON.parse(base.document), freshness: { maxSkewSeconds: 900 } };
    const p = await ka('ProposePolicy', { name: 'open', document: JSON.stringify(looser) });
    await approve(p, 'alice');
    t.equal((await approve(p, 'bob')).state, 'approved');
    t.equal(await insertPolicy(base.version + 1, p.document, `quorum:${p.id}`), 1);
    t.equal(await writer.run("UPDATE proposals SET state = 'activated' WHERE id = ?", [p.id]), 1);
    const c = await ka('CancelProposal', { proposalId: p.id, reason: 'not ours' }, ts.as('admin-c'));
    t.equal(c.state, 'cancelled', 'one admin still cancels it within the delay');
    const cancels = await writer.rows('SELECT intent FROM audit WHERE kind = ?', ['proposal.cancel']);
    t.ok(
      cancels.some((r) => (typeof r.intent === 'string' ? JSON.parse(r.intent) : r.intent)?.proposal === p.id),
      'the cancellation is in the audit log',
    );
    const e = await refused(t, sign(engine, 'hot-k1', { digest }), status.FAILED_PRECONDITION, 'POLICY_UNAVAILABLE');
    t.match(e.message, new RegExp(`proposal ${p.id} was cancelled \\(audit log\\)`), 'never trusted now');
    // A proposal the signer activated itself, after its delay, is closed: nothing to cancel.
    const done = ((await ka('ListProposals', {})) as { proposals: Proposal[] }).proposals.find(
      (x) => x.kind === 'policy' && x.state === 'activated' && x.id !== p.id,
    )!;
    await refused(
      t,
      ka('CancelProposal', { proposalId: done.id, reason: 'late' }),
      status.FAILED_PRECONDITION,
      'PROPOSAL_CLOSED',
    );
    // The writer's row goes: the trusted version governs again.
    t.equal(await writer.run('DELETE FROM policies WHERE name = ? AND version = ?', ['open', base.version + 1]), 1);
    t.ok(await eventually(() => signsDigest().catch(() => false), 5000), 'the version before it governs again');
  });

  await t.test('an approved tightening copied in by the writer is trusted at once', async (t) => {
    // What the quorum approved applies at once anyway: the copy only does the signer's work.
    // Bob's approval is recorded by another replica that stops before activating it (the
    // store's own code, with its audit entry, as Proposals.approve writes them).
    const base = await getPolicy();
    const tighter = { ...JSON.parse(base.document), payloadKinds: ['digest', 'evm'] };
    const p = await ka('ProposePolicy', { name: 'open', document: JSON.stringify(tighter) });
    t.same(p.loosenings, [], 'only tightens');
    await approve(p, 'alice');
    await ts.restart(async () => {
      const store = await writer.openStore();
      const a = adminApproval(p, 'bob', ts.pki.clients[ADMINS.bob]!.key);
      const now = new Date();
      const intent = { proposal: p.id, admin: 'bob', signatureHash: sha256hex(a.signature) };
      const payloadHash = createHash('sha256').update(p.document).digest();
      await store.addApproval(p.id, { admin: 'bob', signature: a.signature, at: now }, [
        eventDraft('proposal.approve', now, ADMINS.bob, { payloadHash, intent }),
      ]);
      await store.close();
      t.equal(await insertPolicy(base.version + 1, p.document, `quorum:${p.id}`), 1);
    });
    await refused(t, sign(engine, 'hot-ed', { message }), status.PERMISSION_DENIED, 'RAW_SIGNING_DISABLED');
    t.ok(await signsDigest(), 'the tightened version governs and signs');
    t.ok(await eventually(async () => (await proposal(p.id)).state === 'activated', 5000), 'activated');
    t.equal((await getPolicy()).version, base.version + 1, 'one version, not a second copy');
  });
}
