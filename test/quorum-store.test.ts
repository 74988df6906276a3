/**
 * The admin quorum's store contract on both dialects (real SQLite file, real PostgreSQL
 * cluster): every change commits with its audit entries or not at all; a proposal closes once,
 * even when two stores (replicas) race to close it.
 */
import pg from 'pg';
import t from 'tap';
import { startPostgres } from '../harness/postgres.js';
import { tempDir } from '../harness/token.js';
import { eventDraft } from '../src/core/audit/draft.js';
import type { AuditStore } from '../src/infra/store/audit.js';
import { PostgresStore } from '../src/infra/store/postgres.js';
import { SqliteStore } from '../src/infra/store/sqlite.js';
import { ApprovalExistsError, type Store } from '../src/infra/store/store.js';

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
