/**
 * The admin quorum's store contract on both dialects (real SQLite file, real PostgreSQL
 * cluster): every change commits with its audit entries or not at all; a proposal closes once,
 * even when two stores (replicas) race to close it.
 */
import { createHash } from 'node:crypto';
import { ed25519 } from '@noble/curves/ed25519.js';
import pg from 'pg';
import t from 'tap';
import { startPostgres } from '../harness/postgres.js';
import { tempDir } from '../harness/token.js';
import type { AdminSet } from '../src/core/admin/approvals.js';
import { proposalBytes } from '../src/core/admin/proposal.js';
import { eventDraft } from '../src/core/audit/draft.js';
import type { AuditStore } from '../src/infra/store/audit.js';
import { PostgresStore } from '../src/infra/store/postgres.js';
import { SqliteStore } from '../src/infra/store/sqlite.js';
import { ApprovalExistsError, type Store } from '../src/infra/store/store.js';
import { FreezeLedger } from '../src/signer/policy/freeze-ledger.js';

type S = Store & AuditStore;
const at = new Date('2026-01-01T00:00:00Z');
const draft = (kind: string) => [eventDraft(kind, at, 'tester', { intent: { k: kind } })];

async function kinds(s: S): Promise<string[]> {
  const head = await s.auditHead();
  const out: string[] = [];
  if (head) for await (const e of s.readAudit(1, head.seq)) out.push(e.kind);
  return out;
}

function suite(name: string, open: () => Promise<S>) {
  t.test(name, async (t) => {
    const s = await open();
    const b = await open();
    t.teardown(async () => {
      await s.close();
      await b.close();
    });
    const base = { kind: 'policy' as const, target: 'p1', baseVersion: 0, proposedBy: 'adm', proposedAt: at };
    await s.insertProposal({ ...base, id: 'a'.repeat(32), document: '{"x":1}' }, draft('proposal.propose'));
    const [p] = await s.listProposals();
    t.match(p, { id: 'a'.repeat(32), state: 'open', document: '{"x":1}', approvals: [] });

    const sig = new Uint8Array([1, 2, 3]);
    t.equal(await s.addApproval(p!.id, { admin: 'alice', signature: sig, at }, draft('proposal.approve')), true);
    await t.rejects(
      b.addApproval(p!.id, { admin: 'alice', signature: sig, at }, draft('proposal.approve')),
      ApprovalExistsError,
      'a second approval by one admin is refused by the database',
    );
    const approvals = (await b.listProposals())[0]!.approvals;
    t.same(
      approvals.map((a) => [a.admin, Buffer.from(a.signature).toString('hex')]),
      [['alice', '010203']],
    );

    // Two replicas close the same proposal at once: one wins, the other writes nothing.
    const effects = { policy: { name: 'p1', document: '{"x":1}', updatedBy: 'quorum' } };
    const close = (st: S) =>
      st.closeProposal(p!.id, { state: 'activated', at, by: 'quorum', note: 'n' }, effects, (v) =>
        draft(`proposal.activate.v${v}`),
      );
    const results = await Promise.all([close(s), close(b)]);
    t.equal(results.filter((r) => r !== null).length, 1, 'exactly one close');
    t.equal(results.find((r) => r !== null)!.policy!.version, 1);
    t.same(
      (await s.policyHistory('p1')).map((r) => [r.version, r.updatedBy]),
      [[1, 'quorum']],
    );
    t.equal(
      await s.addApproval(p!.id, { admin: 'bob', signature: sig, at }, draft('late')),
      false,
      'closed: no approval',
    );
    const closed = (await s.listProposals())[0]!;
    t.match(closed, { state: 'activated', closedBy: 'quorum', note: 'n' });

    // Freezes: once; lifted by a proposal's effects.
    const f = { kind: 'key' as const, target: 'k1', frozenAt: at, frozenBy: 'adm' };
    t.equal(await s.freeze(f, draft('key.freeze')), true);
    t.equal(await b.freeze(f, draft('key.freeze.again')), false, 'frozen already: nothing written');
    t.same(
      (await b.listFreezes()).map((x) => [x.kind, x.target]),
      [['key', 'k1']],
    );
    await s.insertProposal(
      { ...base, kind: 'unfreeze-key', target: 'k1', id: 'b'.repeat(32), document: '' },
      draft('proposal.propose'),
    );
    const unfrozen = await b.closeProposal(
      'b'.repeat(32),
      { state: 'activated', at, by: 'quorum', note: '' },
      { unfreeze: { kind: 'key', target: 'k1' } },
      () => draft('key.unfreeze'),
    );
    t.same(unfrozen, { policy: null });
    t.same(await s.listFreezes(), []);

    t.same(await kinds(s), [
      'proposal.propose',
      'proposal.approve',
      'proposal.activate.v1',
      'key.freeze',
      'proposal.propose',
      'key.unfreeze',
    ]);

    // Access versions: the config's seed, then a proposal's activation; two replicas race to it.
    t.equal((await s.putAccess('{"a":1}', 'config', at, (v) => draft(`access.set.v${v}`))).version, 1);
    const acc = { ...base, kind: 'access' as const, target: 'access', baseVersion: 1, id: 'c'.repeat(32) };
    await s.insertProposal({ ...acc, document: '{"a":2}' }, draft('proposal.propose'));
    const closeAccess = (st: S) =>
      st.closeProposal(
        acc.id,
        { state: 'activated', at, by: 'quorum', note: '' },
        { access: { document: '{"a":2}', updatedBy: `quorum:${acc.id}` } },
        (v) => draft(`access.set.v${v}`),
      );
    const raced = await Promise.all([closeAccess(s), closeAccess(b)]);
    t.equal(raced.filter((r) => r !== null).length, 1, 'exactly one activation');
    t.same(
      (await b.accessHistory()).map((r) => [r.version, r.updatedBy, r.document]),
      [
        [1, 'config', '{"a":1}'],
        [2, `quorum:${acc.id}`, '{"a":2}'],
      ],
    );
    t.same((await kinds(s)).slice(-3), ['access.set.v1', 'proposal.propose', 'access.set.v2']);

    // Freezes read back from the audit log: k2's unfreeze, approved by the (1 of 1) admin, lifts
    // it; k3's, whose approval is no admin's signature, lifts nothing though its row is gone.
    const secret = ed25519.utils.randomSecretKey();
    const admins: AdminSet = {
      quorum: 1,
      delaySeconds: 0,
      members: new Map([['alice', { algorithm: 'ed25519', publicKey: ed25519.getPublicKey(secret) }]]),
    };
    const ev = (kind: string, fields: Parameters<typeof eventDraft>[3]) => [eventDraft(kind, at, 'adm', fields)];
    const k2 = { kind: 'key' as const, target: 'k2', frozenAt: at, frozenBy: 'adm' };
    await s.freeze(k2, ev('key.freeze', { keyId: 'k2' }));
    const un = { ...base, kind: 'unfreeze-key' as const, target: 'k2', id: 'd'.repeat(32), document: '' };
    await s.insertProposal(un, ev('proposal.propose', { intent: { proposal: un.id } }));
    const signature = ed25519.sign(proposalBytes(un), secret);
    // As the signer writes it: the approval's entry names the admin and the hash of the signature.
    const approveEntry = (proposal: string, sig: Uint8Array, when = at) => [
      eventDraft('proposal.approve', when, 'adm', {
        intent: { proposal, admin: 'alice', signatureHash: createHash('sha256').update(sig).digest('hex') },
      }),
    ];
    await s.addApproval(un.id, { admin: 'alice', signature, at: new Date(0) }, approveEntry(un.id, signature));
    await b.closeProposal(
      un.id,
      { state: 'activated', at, by: 'quorum', note: '' },
      { unfreeze: { kind: 'key', target: 'k2' } },
      () => ev('key.unfreeze', { keyId: 'k2', intent: { target: 'k2', proposal: un.id } }),
    );
    await s.freeze({ ...k2, target: 'k3' }, ev('key.freeze', { keyId: 'k3' }));
    const forged = { ...un, target: 'k3', id: 'e'.repeat(32) };
    await s.insertProposal(forged, ev('proposal.propose', { intent: { proposal: forged.id } }));
    await s.addApproval(
      forged.id,
      { admin: 'alice', signature: new Uint8Array(64), at },
      approveEntry(forged.id, new Uint8Array(64)),
    );
    await s.closeProposal(
      forged.id,
      { state: 'activated', at, by: 'quorum', note: '' },
      { unfreeze: { kind: 'key', target: 'k3' } },
      () => ev('key.unfreeze', { keyId: 'k3', intent: { target: 'k3', proposal: forged.id } }),
    );
    t.same(await b.listFreezes(), [], 'no freeze rows left');
    const ledger = new FreezeLedger(b, admins);
    await ledger.catchUp();
    t.equal(ledger.broken, null, 'the chain reads back whole');
    const all = await b.listProposals();
    t.same([...ledger.frozen(all)], ['key:k3'], 'k3 stays frozen, k2 is lifted');
    // The quorum's time is the approval entry's, not the (backdated) approval row's.
    t.same(ledger.quorumTime(all.find((p) => p.id === un.id)!), at, "the log's time, not the row's");
    t.equal(ledger.quorumTime(all.find((p) => p.id === forged.id)!), null, 'no quorum, no time');
    // An approval whose own entry lacks its hash, and a matching entry appended later, dated
    // 1970: the entry counts at the log's time so far, never before an earlier entry's.
    const late = { ...un, kind: 'unfreeze-key' as const, target: 'k4', id: 'f'.repeat(32) };
    await s.insertProposal(late, ev('proposal.propose', { intent: { proposal: late.id } }));
    const lateSig = ed25519.sign(proposalBytes(late), secret);
    await s.addApproval(late.id, { admin: 'alice', signature: lateSig, at }, draft('proposal.approve'));
    await s.appendAudit(approveEntry(late.id, lateSig, new Date(0)));
    await ledger.catchUp();
    const lateRecord = (await b.listProposals()).find((p) => p.id === late.id)!;
    t.same(ledger.quorumTime(lateRecord), at, 'a back-dated entry does not move time back');
    // With a day's delay, the unfreeze entry (appended as the signer would, or as a writer
    // could) lifts nothing until a day after the logged quorum.
    const slow = new FreezeLedger(b, { ...admins, delaySeconds: 86_400 });
    await slow.catchUp();
    t.same([...slow.frozen(all, at.getTime() + 86_399_000)].sort(), ['key:k2', 'key:k3'], 'within the delay');
    t.same([...slow.frozen(all, at.getTime() + 86_400_000)], ['key:k3'], 'once it has passed');
  });
}

// Both backends before any test starts: tap ends the file once its running tests finish.
const server = await startPostgres();
const admin = new pg.Client({ connectionString: server.url });
await admin.connect();
t.teardown(async () => {
  await admin.end();
  await server.stop();
});
const dir = await tempDir('quorum-store-');
t.teardown(() => dir.cleanup());
let sqliteFile: string | undefined;
suite('sqlite', async () => {
  sqliteFile ??= `${dir.path}/store.db`;
  return new SqliteStore(sqliteFile);
});

let schema: string | undefined;
suite('postgres', async () => {
  if (!schema) {
    schema = 'quorum';
    await admin.query(`CREATE SCHEMA ${schema}`);
  }
  const url = new URL(server.url);
  url.searchParams.set('options', `-c search_path=${schema}`);
  return PostgresStore.open(url.toString());
});
