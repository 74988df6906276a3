/**
 * Threshold share destruction against REAL cosigner processes (each its own SoftHSM token and
 * SQLite file) and a real signer: a cosigner destroys a committed share only on the admin
 * quorum's order, which it checks itself against the admins pinned in its own config (2 of 3,
 * the P-256 keys of the admins' certificates). An ordered share stops signing at once and is
 * overwritten after the cosigners' delay, unless one admin cancels first (scripts/
 * cancel-share-destroy.ts). The attacker holds the coordinator's certificate: the file on the
 * signer host that every cosigner call is made with.
 */
import { execFile } from 'node:child_process';
import { sign as nodeSign, randomBytes, randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import { status } from '@grpc/grpc-js';
import { ed25519 } from '@noble/curves/ed25519.js';
import Database from 'better-sqlite3';
import t, { type Test } from 'tap';
import {
  ADMIN_CLIENTS,
  adminsConfig,
  COSIGNER_CLIENTS,
  type CosignerNode,
  cosignerClient,
  startCosigners,
  thresholdConfig,
  withAdmins,
} from '../harness/cosigners.js';
import { eventually, refused, startTestSigner } from '../harness/signer.js';
import { repoRoot } from '../harness/token.js';
import { call, nowTimestamp } from '../src/client/client.js';
import { proposalBytes } from '../src/core/admin/proposal.js';
import { canonicalJson } from '../src/core/policy/canonical.js';

/**
 * The cosigners' destroy delay: long enough for three cancels by script on a loaded machine (at
 * load 12 on two cores they took 40 s: a cancel after the delay is refused, as it must be).
 */
const DELAY_S = 60;
let nodes: CosignerNode[] = [];
const ts = await startTestSigner({
  clients: [...COSIGNER_CLIENTS, ...Object.values(ADMIN_CLIENTS)],
  prepare: async (dir, pki) => {
    const admins = adminsConfig(pki, 2, 1);
    nodes = await startCosigners(dir, pki, 3, {}, withAdmins(admins, DELAY_S));
    return {
      threshold: thresholdConfig(nodes, pki),
      admins,
      clients: {
        'payment-engine': { roles: ['signer'] },
        'security-admin': { roles: ['admin'] },
        auditor: { roles: ['auditor'] },
        ...Object.fromEntries(Object.values(ADMIN_CLIENTS).map((cn) => [cn, { roles: ['admin'] }])),
      },
    };
  },
});
t.teardown(async () => {
  await ts.close();
  await Promise.all(nodes.map((n) => n.stop()));
});
const engine = ts.as('payment-engine');
const admin = ts.as('security-admin');
type Admin = keyof typeof ADMIN_CLIENTS;
type Key = { keyId: string; version: number; publicKey: Buffer; state: string };

const create = (keyId: string) => call<Key>(admin.keyAdmin, 'CreateKey', { keyId, algorithm: 'FROST_ED25519' }, 60_000);
const sign = (keyId: string, message: Buffer) =>
  call<{ signature: Buffer; keyVersion: number }>(
    engine.signer,
    'Sign',
    { keyId, requestId: randomUUID(), clientTime: nowTimestamp(), message },
    30_000,
  );
/** An admin's P-256 signature over `bytes` with their certificate's key (Node's crypto, not the code under test). */
const adminSign = (who: Admin | 'coordinator', bytes: Uint8Array) => {
  const cn = who === 'coordinator' ? 'coordinator' : ADMIN_CLIENTS[who];
  return nodeSign('sha256', bytes, { key: ts.pki.clients[cn]!.key, dsaEncoding: 'ieee-p1363' });
};
/** A destroy order as the signer forwards an approved proposal; `signers` approve it. */
function order(keyId: string, version: number, signers: Array<[Admin, Admin | 'coordinator']>) {
  const proposalId = randomBytes(16).toString('hex');
  const document = canonicalJson({ confirmKeyId: keyId, keyId, version });
  const bytes = proposalBytes({ kind: 'destroy-key', id: proposalId, target: keyId, baseVersion: version, document });
  const approvals = signers.map(([name, key]) => ({ admin: name, signature: adminSign(key, bytes) }));
  return { proposalId, document, approvals };
}
/** Asks one cosigner with the coordinator's certificate, as the signer (or its thief) does. */
async function ask<T>(node: CosignerNode, method: string, req: object): Promise<T> {
  const c = cosignerClient(ts.pki, node.address);
  try {
    return await call<T>(c, method, req, 15_000);
  } finally {
    c.close();
  }
}
function read<T>(node: CosignerNode, sql: string, ...args: unknown[]): T[] {
  const db = new Database(node.dbPath, { readonly: true });
  try {
    return db.prepare(sql).all(...args) as T[];
  } finally {
    db.close();
  }
}
const sharesOf = (node: CosignerNode, keyId: string) =>
  read<{ version: number; state: string; session_id: string; sealed: Buffer }>(
    node,
    'SELECT version, state, session_id, sealed FROM shares WHERE key_id = ? ORDER BY version',
    keyId,
  );
const destroysOf = (node: CosignerNode, keyId: string) =>
  read<{ proposal_id: string; version: number; state: string; closed_by: string | null; due_at: number }>(
    node,
    'SELECT proposal_id, version, state, closed_by, due_at FROM share_destroys WHERE key_id = ? ORDER BY ordered_at',
    keyId,
  );
const signsAgain = async (keyId: string, publicKey: Buffer) => {
  const m = randomBytes(32);
  return ed25519.verify((await sign(keyId, m)).signature, m, publicKey);
};

/** The cancel's bytes as the README spells them (not the code under test's cancelBytes). */
const cancelOf = (keyId: string, version: number, proposalId: string) =>
  Buffer.from(`hsm-signer/share-destroy-cancel/v1\n${keyId}\n${version}\n${proposalId}\n`, 'utf8');
/** One admin's cancel sent through the signer (KeyAdmin.CancelShareDestroy) with their own certificate. */
const cancelViaSigner = (who: Admin, keyId: string, version: number, proposalId: string) =>
  call<{ restored: string[] }>(
    ts.as(ADMIN_CLIENTS[who]).keyAdmin,
    'CancelShareDestroy',
    {
      keyId,
      keyVersion: version,
      proposalId,
      admin: who,
      signature: adminSign(who, cancelOf(keyId, version, proposalId)),
    },
    60_000,
  );
const stateOf = async (keyId: string, version: number) =>
  (await call<{ keys: Key[] }>(admin.signer, 'ListKeys', { includeInactive: true })).keys.find(
    (k) => k.keyId === keyId && k.version === version,
  )?.state;
/** The signer's audit entries of a key whose kind matches `like`, oldest first. */
function signerAudit(keyId: string, like: string) {
  const db = new Database(`${ts.dir}/signer.db`, { readonly: true });
  try {
    return db
      .prepare('SELECT kind, intent, at_ms FROM audit WHERE key_id = ? AND kind LIKE ? ORDER BY seq')
      .all(keyId, like) as Array<{ kind: string; intent: string; at_ms: number }>;
  } finally {
    db.close();
  }
}
/**
 * A key whose v1 the admin quorum destroyed through the signer (disabled after a rotation, the
 * destroy proposed and approved by alice and bob); resolves once the signer marks it destroyed.
 */
async function destroyedByQuorum(t: Test, keyId: string) {
  const old = await create(keyId);
  const rotated = await call<{ active: Key }>(admin.keyAdmin, 'RotateKey', { keyId, overlapSeconds: 60 }, 60_000);
  await call(admin.keyAdmin, 'DisableKeyVersion', { keyId, version: old.version });
  const sealed = new Map(nodes.map((n) => [n.id, sharesOf(n, keyId).find((r) => r.version === 1)!.sealed]));
  // Without a quorum configured on the signer this was one call: now it is refused there too.
  await refused(
    t,
    call(admin.keyAdmin, 'DestroyKeyVersion', { keyId, version: 1, confirmKeyId: keyId }),
    status.FAILED_PRECONDITION,
    'QUORUM_REQUIRED',
  );
  const p = await call<{ id: string; kind: string; target: string; baseVersion: number; document: string }>(
    admin.keyAdmin,
    'ProposeDestroyKeyVersion',
    { destroy: { keyId, version: 1, confirmKeyId: keyId } },
  );
  const bytes = proposalBytes({ ...p, kind: 'destroy-key' });
  for (const who of ['alice', 'bob'] as const) {
    await call(
      ts.as(ADMIN_CLIENTS[who]).keyAdmin,
      'ApproveProposal',
      { proposalId: p.id, admin: who, signature: adminSign(who, bytes) },
      30_000,
    );
  }
  t.ok(
    await eventually(async () => (await stateOf(keyId, 1)) === 'DESTROYED', 30_000),
    'the signer marks v1 destroyed',
  );
  return { proposalId: p.id, rotated, sealed };
}

const live = await create('tss-live');

t.test('DestroyShares without the quorum order is refused on every cosigner', async (t) => {
  for (const node of nodes) {
    const d = await refused(
      t,
      ask(node, 'DestroyShares', { keyId: 'tss-live', keyVersion: 1 }),
      status.PERMISSION_DENIED,
      'DESTROY_ORDER_INVALID',
    );
    t.same([d.metadata.cosigner, d.metadata.problem], [String(node.id), 'missing'], `cosigner ${node.id} names itself`);
    // The thief names the session that made the committed share: the ceremony cleanup path.
    const session = sharesOf(node, 'tss-live')[0]!.session_id;
    const s = await refused(
      t,
      ask(node, 'DestroyShares', { keyId: 'tss-live', keyVersion: 1, sessionId: session }),
      status.PERMISSION_DENIED,
      'DESTROY_ORDER_INVALID',
    );
    t.equal(s.metadata.problem, 'committed', 'a session id removes only a pending share');
    t.same(
      sharesOf(node, 'tss-live').map((r) => r.state),
      ['active'],
      `cosigner ${node.id} keeps its share`,
    );
  }
  t.ok(await signsAgain('tss-live', live.publicKey), 'the key still signs');
});

t.test('an order short of the quorum, forged, or for another version is refused', async (t) => {
  const cases: Array<[string, ReturnType<typeof order>, number]> = [
    ['one approval of two', order('tss-live', 1, [['alice', 'alice']]), 1],
    [
      'the same admin twice',
      order('tss-live', 1, [
        ['alice', 'alice'],
        ['alice', 'alice'],
      ]),
      1,
    ],
    [
      "bob's approval made with the coordinator's key",
      order('tss-live', 1, [
        ['alice', 'alice'],
        ['bob', 'coordinator'],
      ]),
      1,
    ],
    [
      'an order for version 2 sent for version 1',
      order('tss-live', 2, [
        ['alice', 'alice'],
        ['bob', 'bob'],
      ]),
      1,
    ],
  ];
  for (const [what, o, version] of cases) {
    for (const node of nodes) {
      const d = await refused(
        t,
        ask(node, 'DestroyShares', { keyId: 'tss-live', keyVersion: version, order: o }),
        status.PERMISSION_DENIED,
        'DESTROY_ORDER_INVALID',
      );
      t.equal(d.metadata.cosigner, String(node.id), `${what}: refused by cosigner ${node.id}`);
    }
  }
  for (const node of nodes) t.same(destroysOf(node, 'tss-live'), [], `cosigner ${node.id} recorded no order`);
  t.ok(await signsAgain('tss-live', live.publicKey), 'the key still signs');
});

t.test("a valid order stops signing at once; one admin's cancel (by script) restores it", async (t) => {
  const o = order('tss-live', 1, [
    ['alice', 'alice'],
    ['carol', 'carol'],
  ]);
  const before = Date.now();
  for (const node of nodes) {
    const r = await ask<{ destroyed: number; dueAt: string }>(node, 'DestroyShares', {
      keyId: 'tss-live',
      keyVersion: 1,
      order: o,
    });
    t.equal(r.destroyed, 1, `cosigner ${node.id} scheduled its share`);
    const due = Date.parse(r.dueAt) - before;
    t.ok(due >= DELAY_S * 1000 - 1000 && due <= DELAY_S * 1000 + 15_000, `due after the delay (${due} ms)`);
  }
  // Straight away: the signer's FROST signing fails, the cosigners name why.
  // (The signer's nonces fetched ahead went with the share: a first try may name NONCE_UNKNOWN.)
  const messages: string[] = [];
  for (let i = 0; i < 3 && !messages.some((m) => /SHARE_DESTROY_SCHEDULED/.test(m)); i++) {
    const d = await refused(t, sign('tss-live', randomBytes(32)), status.UNAVAILABLE, 'THRESHOLD_UNAVAILABLE');
    t.ok(d.metadata.faultyCosigners, 'cosigners left out are named');
    messages.push(d.message);
  }
  t.match(messages.at(-1), /SHARE_DESTROY_SCHEDULED/, 'the cosigners say the share is ordered destroyed');
  for (const node of nodes) {
    const d = await refused(
      t,
      ask(node, 'Commit', { keyId: 'tss-live', keyVersion: 1, count: 1 }),
      status.FAILED_PRECONDITION,
      'SHARE_DESTROY_SCHEDULED',
    );
    t.same([d.metadata.cosigner, d.metadata.proposal], [String(node.id), o.proposalId]);
    t.equal(sharesOf(node, 'tss-live').length, 1, `cosigner ${node.id}: the sealed share is still there`);
    t.same(
      destroysOf(node, 'tss-live').map((r) => r.state),
      ['scheduled'],
    );
  }
  // A thief cannot cancel: the cancel is one admin's signature over its own bytes.
  const run = promisify(execFile);
  const tsx = `${repoRoot}/node_modules/.bin/tsx`;
  /** The script straight to the cosigners (over the coordinator's certificate), or through the signer. */
  const script = (keyFile: string, adminName: string, via: 'cosigners' | 'signer' = 'cosigners') =>
    run(
      tsx,
      [
        `${repoRoot}/scripts/cancel-share-destroy.ts`,
        'tss-live',
        '--version',
        '1',
        '--proposal',
        o.proposalId,
        '--admin',
        adminName,
        '--admin-key',
        keyFile,
        '--ca',
        ts.pki.files.caCert,
        ...(via === 'cosigners'
          ? [
              ...nodes.flatMap((n) => ['--cosigner', n.address]),
              ...['--cert', ts.pki.files.clients.coordinator!.cert, '--key', ts.pki.files.clients.coordinator!.key],
            ]
          : [
              ...['--address', ts.address, '--cert', ts.pki.files.clients[ADMIN_CLIENTS.bob]!.cert],
              ...['--key', ts.pki.files.clients[ADMIN_CLIENTS.bob]!.key],
            ]),
        '--json',
      ],
      { cwd: repoRoot, timeout: 60_000 },
    ).then(
      (r) => ({ code: 0, out: JSON.parse(r.stdout) }),
      (e: { code: number; stdout: string }) => ({ code: e.code, out: JSON.parse(e.stdout) }),
    );
  type Out = Array<{ restored?: number; refused?: { code: number; reason: string } }>;
  // The two forged cancels run side by side: each script's start costs seconds on a loaded machine.
  const [forged, viaSigner] = await Promise.all([
    script(ts.pki.files.clients.coordinator!.key, 'bob'),
    script(ts.pki.files.clients.coordinator!.key, 'bob', 'signer'),
  ]);
  t.equal(forged.code, 1, 'a cancel signed with the coordinator key fails');
  t.same(
    (forged.out as Out).map((r) => [r.refused?.code, r.refused?.reason]),
    nodes.map(() => [status.PERMISSION_DENIED, 'APPROVAL_INVALID']),
  );
  t.equal(viaSigner.code, 1, 'through the signer too: refused there before any cosigner is asked');
  t.same(viaSigner.out.error?.reason, 'APPROVAL_INVALID');
  const ok = await script(ts.pki.files.clients[ADMIN_CLIENTS.bob]!.key, 'bob', 'signer');
  t.equal(ok.code, 0, 'one admin (bob, who did not approve) cancels, through the signer');
  t.same(ok.out.restored, ['1:1', '2:1', '3:1'], 'every cosigner restores its share');
  const db = new Database(`${ts.dir}/signer.db`, { readonly: true });
  const audited = db
    .prepare("SELECT kind, intent FROM audit WHERE key_id = 'tss-live' AND kind LIKE 'shares.%' ORDER BY seq")
    .all() as Array<{ kind: string; intent: string }>;
  db.close();
  t.same(
    audited.map((a) => [a.kind, JSON.parse(a.intent).admin]),
    [
      ['shares.destroy-cancel', 'bob'],
      ['shares.destroy-cancel-result', 'bob'],
    ],
    'the signer audits the cancel and the answers (the refused one never got that far)',
  );
  t.ok(Date.now() - before < DELAY_S * 1000, 'all of it within the delay');
  t.ok(
    await eventually(() => signsAgain('tss-live', live.publicKey).catch(() => false), 10_000),
    'the key signs again',
  );
  for (const node of nodes) {
    t.same(
      destroysOf(node, 'tss-live').map((r) => [r.state, r.closed_by]),
      [['cancelled', 'bob']],
    );
    const d = await refused(
      t,
      ask(node, 'DestroyShares', { keyId: 'tss-live', keyVersion: 1, order: o }),
      status.PERMISSION_DENIED,
      'DESTROY_ORDER_INVALID',
    );
    t.equal(d.metadata.problem, 'cancelled', `cosigner ${node.id}: a cancelled order is never accepted again`);
  }
  const twice = await script(ts.pki.files.clients[ADMIN_CLIENTS.alice]!.key, 'alice');
  t.same(
    (twice.out as Out).map((r) => r.refused?.reason),
    ['PROPOSAL_CLOSED', 'PROPOSAL_CLOSED', 'PROPOSAL_CLOSED'],
    'nothing left to cancel',
  );
});

t.test("a cancel of the quorum's destroy gives the signer's version back as disabled", async (t) => {
  const { proposalId, rotated } = await destroyedByQuorum(t, 'tss-back');
  for (const node of nodes) {
    t.same(
      destroysOf(node, 'tss-back').map((r) => r.state),
      ['scheduled'],
    );
  }
  // Another proposal id (the admin's signature is good, the order is not theirs): nothing changes.
  const other = randomBytes(16).toString('hex');
  const wrong = await refused(
    t,
    cancelViaSigner('carol', 'tss-back', 1, other),
    status.FAILED_PRECONDITION,
    'PROPOSAL_CLOSED',
  );
  t.equal(wrong.metadata.state, 'unknown', 'no cosigner had that order');
  t.equal(await stateOf('tss-back', 1), 'DESTROYED', 'a cancel of no order restores nothing');

  const ok = await cancelViaSigner('carol', 'tss-back', 1, proposalId);
  t.same(ok.restored, ['1:1', '2:1', '3:1'], 'every cosigner restores its share');
  t.equal(await stateOf('tss-back', 1), 'DISABLED', 'the signer has v1 disabled again, as before the destroy');
  const db = new Database(`${ts.dir}/signer.db`, { readonly: true });
  const row = db
    .prepare("SELECT state, state_changed_at FROM keys WHERE key_id = 'tss-back' AND version = 1")
    .get() as { state: string; state_changed_at: number };
  db.close();
  const entries = signerAudit('tss-back', 'shares.destroy-cancel%');
  const last = entries.at(-1)!;
  t.same(
    [last.kind, JSON.parse(last.intent).keyState, JSON.parse(last.intent).proposal],
    ['shares.destroy-cancel-result', 'disabled', proposalId],
    'the result entry records the state change',
  );
  t.same(
    [row.state, row.state_changed_at],
    ['disabled', last.at_ms],
    'state and entry written together (one transaction, one time)',
  );
  for (const node of nodes) {
    t.same(
      destroysOf(node, 'tss-back').map((r) => [r.state, r.closed_by]),
      [['cancelled', 'carol']],
    );
    // The share is the cosigner's signing share again (it commits nonces for v1).
    const c = await ask<{ commitments: unknown[] }>(node, 'Commit', { keyId: 'tss-back', keyVersion: 1, count: 1 });
    t.equal(c.commitments.length, 1, `cosigner ${node.id}: v1's share takes part again`);
  }
  // A replay of the same cancel finds nothing to cancel and changes nothing.
  const again = await refused(
    t,
    cancelViaSigner('alice', 'tss-back', 1, proposalId),
    status.FAILED_PRECONDITION,
    'PROPOSAL_CLOSED',
  );
  t.equal(again.metadata.state, 'cancelled');
  // Disabled again means what it meant: a new destroy proposal for v1 is accepted.
  const p2 = await call<{ id: string; state: string }>(admin.keyAdmin, 'ProposeDestroyKeyVersion', {
    destroy: { keyId: 'tss-back', version: 1, confirmKeyId: 'tss-back' },
  });
  t.ok(p2.id, 'v1 can be proposed for destruction again');
  await call(admin.keyAdmin, 'CancelProposal', { proposalId: p2.id, reason: 'test' });
  t.ok(await signsAgain('tss-back', rotated.active.publicKey), 'v2 signs throughout');
});

t.test("the signer's quorum flow destroys the shares on every cosigner after the delay", async (t) => {
  const { proposalId, rotated, sealed } = await destroyedByQuorum(t, 'tss-old');
  // The raw database file and its WAL, as a thief with the disk reads them; any 16 bytes of the
  // ciphertext's body (past the format byte and IV) identify the sealed share.
  const onDisk = async (node: CosignerNode) => {
    const files = await Promise.all(
      [node.dbPath, `${node.dbPath}-wal`].map((f) => readFile(f).catch(() => Buffer.alloc(0))),
    );
    return files.some((f) => f.includes(sealed.get(node.id)!.subarray(13, 29)));
  };
  for (const node of nodes) t.ok(await onDisk(node), `cosigner ${node.id}: the search finds the live share on disk`);
  const ordered = Date.now();
  for (const node of nodes) {
    t.same(
      destroysOf(node, 'tss-old').map((r) => [r.proposal_id, r.version, r.state]),
      [[proposalId, 1, 'scheduled']],
      `cosigner ${node.id} scheduled the quorum's order`,
    );
    t.ok(
      sharesOf(node, 'tss-old').some((r) => r.version === 1),
      `cosigner ${node.id}: v1's share waits the delay`,
    );
    await refused(
      t,
      ask(node, 'Commit', { keyId: 'tss-old', keyVersion: 1, count: 1 }),
      status.FAILED_PRECONDITION,
      'SHARE_DESTROY_SCHEDULED',
    );
  }
  // The order is durable: a cosigner killed during the delay still refuses after its restart.
  await nodes[0]!.stop('SIGKILL');
  await nodes[0]!.restart();
  await refused(
    t,
    ask(nodes[0]!, 'Commit', { keyId: 'tss-old', keyVersion: 1, count: 1 }),
    status.FAILED_PRECONDITION,
    'SHARE_DESTROY_SCHEDULED',
  );
  t.ok(
    await eventually(() => signsAgain('tss-old', rotated.active.publicKey).catch(() => false), 20_000),
    'v2 still signs',
  );
  const audit = signerAudit('tss-old', '%destroy%');
  t.same(
    audit.map((a) => a.kind),
    ['shares.destroy-order', 'shares.destroy-result', 'key.destroy'],
    'the order, the answers and the destroy are audited',
  );
  t.equal(JSON.parse(audit[0]!.intent).proposal, proposalId);
  t.match(JSON.parse(audit[2]!.intent).sharesDueAt, /^1:\d{4}-.*,2:.*,3:/, 'each cosigner with its due time');

  t.ok(
    await eventually(
      () => nodes.every((n) => !sharesOf(n, 'tss-old').some((r) => r.version === 1)),
      (DELAY_S + 30) * 1000,
    ),
    'after the delay, every cosigner overwrote v1',
  );
  t.ok(Date.now() - ordered >= (DELAY_S - 2) * 1000, 'not before the delay');
  for (const node of nodes) {
    t.same(
      destroysOf(node, 'tss-old').map((r) => [r.state, r.closed_by]),
      [['done', 'delay']],
    );
    t.notOk(await onDisk(node), `cosigner ${node.id}: no copy of the sealed share in the database file or its WAL`);
  }
  t.ok(await signsAgain('tss-old', rotated.active.publicKey), 'v2 still signs');

  // Too late: one admin's cancel after the delay finds nothing to restore, and says so.
  const late = await refused(
    t,
    cancelViaSigner('carol', 'tss-old', 1, proposalId),
    status.FAILED_PRECONDITION,
    'PROPOSAL_CLOSED',
  );
  t.same([late.metadata.state, late.metadata.cosigners], ['done', '1,2,3'], 'every cosigner overwrote its share');
  t.match(late.message, /delay passed/);
  t.equal(await stateOf('tss-old', 1), 'DESTROYED', 'the signer keeps v1 destroyed');
  const result = signerAudit('tss-old', 'shares.destroy-cancel%').map((a) => [a.kind, JSON.parse(a.intent)]);
  t.same(
    result.map(([kind, intent]) => [kind, intent.admin, intent.keyState]),
    [
      ['shares.destroy-cancel', 'carol', undefined],
      ['shares.destroy-cancel-result', 'carol', undefined],
    ],
    'the late cancel is audited, with no state change',
  );
});
