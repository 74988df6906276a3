import { randomBytes, randomUUID } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type * as grpc from '@grpc/grpc-js';
import { status } from '@grpc/grpc-js';
import { ed25519 } from '@noble/curves/ed25519.js';
import { schnorr } from '@noble/curves/secp256k1.js';
import Database from 'better-sqlite3';
import t, { type Test } from 'tap';
import {
  COSIGNER_CLIENTS,
  type CosignerNode,
  clientSignedFields,
  cosignerClient,
  startCosigners,
  thresholdConfig,
} from '../harness/cosigners.js';
import { eventually, refused, startTestSigner } from '../harness/signer.js';
import { call, nowTimestamp } from '../src/client/client.js';

let nodes: CosignerNode[] = [];
const ts = await startTestSigner({
  clients: COSIGNER_CLIENTS,
  // tss-sched's shares are refreshed by schedule, every few seconds once they are 3 s old.
  config: { rotation: { schedules: { 'tss-sched': { cron: '*/2 * * * * *', action: 'refresh', minAgeSeconds: 3 } } } },
  prepare: async (dir, pki) => {
    nodes = await startCosigners(dir, pki, 3);
    return { threshold: thresholdConfig(nodes, pki) };
  },
});
t.teardown(async () => {
  await ts.close();
  await Promise.all(nodes.map((n) => n.stop()));
});
const engine = ts.as('payment-engine');
const admin = ts.as('security-admin');

type Key = {
  keyId: string;
  version: number;
  algorithm: string;
  publicKey: Buffer;
  threshold: { minSigners: number; cosigners: number[]; epoch: number } | null;
};
type SignRes = { signature: Buffer; keyVersion: number; algorithm: string };

const create = (keyId: string, algorithm: string) =>
  call<Key>(admin.keyAdmin, 'CreateKey', { keyId, algorithm }, 60_000);
const sign = (keyId: string, payload: object, extra: object = {}) =>
  call<SignRes>(
    engine.signer,
    'Sign',
    { keyId, requestId: randomUUID(), clientTime: nowTimestamp(), ...payload, ...extra },
    30_000,
  );

/** Every audit entry of a kind, from the signer's SQLite store. */
function auditEntries(kind: string): Array<{ intent: Record<string, string> }> {
  const db = new Database(join(ts.dir, 'signer.db'), { readonly: true });
  try {
    return (
      db.prepare('SELECT intent FROM audit WHERE kind = ? ORDER BY seq').all(kind) as Array<{ intent: string }>
    ).map((r) => ({ intent: JSON.parse(r.intent) }));
  } finally {
    db.close();
  }
}

function sharesOf(
  node: CosignerNode,
): Array<{ key_id: string; version: number; epoch: number; state: string; sealed: Buffer; public_package: string }> {
  const db = new Database(node.dbPath, { readonly: true });
  try {
    return db
      .prepare(
        'SELECT key_id, version, epoch, state, sealed, public_package FROM shares ORDER BY key_id, version, epoch',
      )
      .all() as never;
  } finally {
    db.close();
  }
}

/**
 * After cosigner restarts: every cosigner answers, and the signer's channels (reconnect backoff
 * at most 1 s) have had time to reconnect.
 */
async function settle(): Promise<void> {
  for (const n of nodes) {
    const c = cosignerClient(ts.pki, n.address);
    try {
      await call(c, 'Info', {}, 10_000);
    } finally {
      c.close();
    }
  }
  await new Promise((r) => setTimeout(r, 1200));
}

const ed = await create('tss-ed', 'FROST_ED25519');
const tr = await create('tss-btc', 'FROST_SECP256K1_TR');

t.test('DKG across three cosigners gives one group key; each holds only a sealed share', async (t) => {
  t.equal(ed.algorithm, 'FROST_ED25519');
  t.equal(ed.publicKey.length, 32);
  t.same(ed.threshold, { minSigners: 2, cosigners: [1, 2, 3], epoch: 1 });
  t.equal(tr.publicKey.length, 32, 'x-only BIP340 key');
  for (const node of nodes) {
    const rows = sharesOf(node).filter((r) => r.key_id === 'tss-ed');
    t.equal(rows.length, 1, `cosigner ${node.id} holds one share row`);
    t.equal(rows[0]!.state, 'active');
    t.equal(rows[0]!.sealed[0], 1, 'sealed format version');
    t.equal(rows[0]!.sealed.length, 1 + 12 + 64 + 16, 'iv, ciphertext of identifier||share, tag: nothing else');
    const pub = JSON.parse(rows[0]!.public_package) as { commitments: string[] };
    t.equal(pub.commitments[0], Buffer.from(ed.publicKey).toString('hex'), 'same group key on every cosigner');
  }
  await refused(t, create('tss-ed', 'FROST_ED25519'), status.ALREADY_EXISTS, 'KEY_EXISTS');
});

t.test('2-of-3 signatures verify with independent verifiers, with every cosigner up', async (t) => {
  for (let i = 0; i < 6; i++) {
    const message = randomBytes(48 + i);
    const a = await sign('tss-ed', { message });
    t.equal(a.algorithm, 'FROST_ED25519');
    t.ok(ed25519.verify(a.signature, message, ed.publicKey, { zip215: false }), 'ed25519 (RFC 8032 strict) verifies');
    const digest = randomBytes(32);
    const b = await sign('tss-btc', { digest });
    t.ok(schnorr.verify(b.signature, digest, tr.publicKey), 'BIP340 verifies under the x-only key');
  }
  await refused(t, sign('tss-ed', { digest: randomBytes(32) }), status.INVALID_ARGUMENT, 'PAYLOAD_KIND_UNSUPPORTED');
});

t.test('a batch of threshold signatures queues at the signer and every item verifies', async (t) => {
  const messages = Array.from({ length: 40 }, () => randomBytes(32));
  const r = await call<{ results: Array<{ signed?: SignRes; error?: { reason: string } }> }>(
    engine.signer,
    'SignBatch',
    {
      batchId: randomUUID(),
      keyId: 'tss-ed',
      clientTime: nowTimestamp(),
      items: messages.map((message) => ({ message })),
    },
    120_000,
  );
  t.equal(r.results.length, 40);
  t.ok(
    r.results.every((x, i) => x.signed && ed25519.verify(x.signed.signature, messages[i]!, ed.publicKey)),
    'all 40 signed, in order, each verifies',
  );
});

t.test('a retry replays the stored signature; a second payload for a declared nonce is refused', async (t) => {
  const requestId = randomUUID();
  const message = randomBytes(40);
  const scope = { replayScope: { chainId: '101', accountNonce: '7' } };
  const first = await sign('tss-ed', { message }, { requestId, ...scope });
  const again = await sign('tss-ed', { message }, { requestId, ...scope });
  t.same(again.signature, first.signature, 'idempotent replay');
  await refused(t, sign('tss-ed', { message: randomBytes(40) }, scope), status.ALREADY_EXISTS, 'NONCE_ALREADY_SIGNED');
  // Request ids are per client, at the signer and at every cosigner.
  const shared = await create('shared-tss', 'FROST_ED25519');
  const other = ts.as('other-engine');
  const [a, b] = [randomBytes(24), randomBytes(24)];
  const mine = await sign('shared-tss', { message: a }, { requestId: 'order-1' });
  const theirs = await call<SignRes>(
    other.signer,
    'Sign',
    { keyId: 'shared-tss', requestId: 'order-1', clientTime: nowTimestamp(), message: b },
    30_000,
  );
  t.ok(
    ed25519.verify(mine.signature, a, shared.publicKey) && ed25519.verify(theirs.signature, b, shared.publicKey),
    'two clients, one request id, two payloads: both signed',
  );
});

t.test('signing goes on with one cosigner down', async (t) => {
  const down = nodes[0]!;
  await down.stop('SIGKILL');
  for (let i = 0; i < 4; i++) {
    const message = randomBytes(32);
    const a = await sign('tss-ed', { message });
    t.ok(ed25519.verify(a.signature, message, ed.publicKey), `signed with cosigner ${down.id} down`);
  }
  await down.restart();
  await settle();
  const message = randomBytes(32);
  t.ok(
    ed25519.verify((await sign('tss-ed', { message })).signature, message, ed.publicKey),
    'and after it restarted (its nonces are gone, refetched)',
  );
});

t.test('a hung cosigner misses its deadline, is named, and the others sign', async (t) => {
  const hung = nodes[2]!;
  process.kill(hung.proc.child.pid!, 'SIGSTOP');
  t.teardown(async () => {
    process.kill(hung.proc.child.pid!, 'SIGCONT');
    await settle();
  });
  const before = auditEntries('threshold.fault').length;
  for (let i = 0; i < 4; i++) {
    const message = randomBytes(32);
    t.ok(
      ed25519.verify((await sign('tss-ed', { message })).signature, message, ed.publicKey),
      `signed with cosigner ${hung.id} hung`,
    );
  }
  const faults = auditEntries('threshold.fault').slice(before);
  t.ok(
    faults.some((f) => f.intent.cosigner === String(hung.id) && f.intent.why === 'deadline'),
    `cosigner ${hung.id} named for missing the deadline`,
  );
  t.ok(
    faults.every((f) => f.intent.cosigner === String(hung.id)),
    'and nobody else',
  );
});

t.test('a cosigner returning corrupted shares is named, and the others sign', async (t) => {
  const bad = nodes[1]!;
  await bad.restart('corrupt-sign-share');
  await settle();
  t.teardown(async () => {
    await bad.restart();
    await settle();
  });
  const before = auditEntries('threshold.fault').length;
  // Signers are picked round-robin among those with pooled nonces: sign until the bad one has
  // been asked (every signature must verify meanwhile), at most 12 times.
  for (let i = 0; i < 12 && auditEntries('threshold.fault').length === before; i++) {
    const message = randomBytes(32);
    const a = await sign('tss-ed', { message });
    t.ok(ed25519.verify(a.signature, message, ed.publicKey), 'valid signature despite the bad cosigner');
  }
  const faults = auditEntries('threshold.fault').slice(before);
  t.ok(faults.length >= 1, 'the fault is in the audit log');
  t.ok(
    faults.every((f) => f.intent.cosigner === String(bad.id) && f.intent.why === 'invalid share'),
    `cosigner ${bad.id} named for an invalid share`,
  );
  const metrics = await ts.signer.metrics.registry.getSingleMetricAsString('signer_cosigner_faults_total');
  t.match(metrics, new RegExp(`cosigner="${bad.id}",why="invalid share"`), 'and in the metrics');
});

t.test('with two of three cosigners down, signing fails with the cosigners named', async (t) => {
  await nodes[0]!.stop('SIGKILL');
  await nodes[2]!.stop('SIGKILL');
  t.teardown(async () => {
    await nodes[0]!.restart();
    await nodes[2]!.restart();
    await settle();
  });
  const d = await refused(t, sign('tss-ed', { message: randomBytes(32) }), status.UNAVAILABLE, 'THRESHOLD_UNAVAILABLE');
  t.match(d.message, /left out: /);
  t.ok(d.metadata.faultyCosigners!.split(',').length >= 1, 'error details name the cosigners');
});

t.test('refresh keeps the public key, replaces every share and destroys the old ones', async (t) => {
  const before = nodes.map((n) => sharesOf(n).find((r) => r.key_id === 'tss-btc')!);
  const k = await call<Key>(admin.keyAdmin, 'RefreshShares', { keyId: 'tss-btc' }, 60_000);
  t.same(k.publicKey, tr.publicKey, 'same public key (same address)');
  t.equal(k.threshold!.epoch, 2);
  for (const [i, node] of nodes.entries()) {
    const rows = sharesOf(node).filter((r) => r.key_id === 'tss-btc');
    t.same(
      rows.map((r) => [r.epoch, r.state]),
      [[2, 'active']],
      `cosigner ${node.id}: only the new share remains`,
    );
    t.not(rows[0]!.public_package, before[i]!.public_package, 'verifying shares moved');
    for (const f of [node.dbPath, `${node.dbPath}-wal`]) {
      const bytes = await readFile(f).catch(() => Buffer.alloc(0));
      t.equal(
        bytes.indexOf(before[i]!.sealed.subarray(13, 45)),
        -1,
        `the old sealed share is gone from ${f.endsWith('-wal') ? 'the WAL' : 'the database file'}`,
      );
    }
  }
  const digest = randomBytes(32);
  t.ok(
    schnorr.verify((await sign('tss-btc', { digest })).signature, digest, tr.publicKey),
    'new shares sign under the same key',
  );
  const refreshed = auditEntries('key.refresh');
  t.equal(refreshed.at(-1)!.intent.epoch, '2', 'the refresh is audited');
  await refused(t, call(admin.keyAdmin, 'RefreshShares', { keyId: 'nope' }), status.NOT_FOUND, 'KEY_NOT_FOUND');
});

t.test('a refresh schedule refreshes the shares of its key and keeps its public key', async (t) => {
  const k = await create('tss-sched', 'FROST_ED25519');
  await settle();
  const refreshed = await eventually(async () => ts.signer.keys.get('tss-sched').threshold!.epoch >= 2, 20_000);
  t.ok(refreshed, 'the scheduler refreshed the shares');
  const now = ts.signer.keys.get('tss-sched');
  t.same(Buffer.from(now.publicKey), k.publicKey, 'same public key');
  const entry = auditEntries('key.refresh').find((e) => e.intent.trigger === 'schedule');
  t.ok(entry, 'audited as a scheduled refresh');
  const message = randomBytes(32);
  t.ok(
    ed25519.verify((await sign('tss-sched', { message })).signature, message, k.publicKey),
    'the refreshed shares sign',
  );
});

/** Discards a test DKG: cosigner 1 refused its round 2 (and dropped it), 2 and 3 still run it. */
async function discardEvil(t: Test, clients: grpc.Client[], sessionId: string): Promise<void> {
  const round1 = {
    sessionId: randomBytes(18).toString('base64url'),
    ceremony: 'DKG',
    keyId: 'evil-dkg',
    keyVersion: 1,
    algorithm: 'frost-ed25519',
    minSigners: 2,
    participants: [1, 2, 3],
    epoch: 0,
    groupId: randomBytes(16),
  };
  await refused(t, call(clients[2]!, 'Round1', round1), status.ABORTED, 'KEY_ROTATION_CONFLICT');
  await refused(
    t,
    call(clients[0]!, 'Finish', { sessionId, commit: false }),
    status.FAILED_PRECONDITION,
    'CEREMONY_NOT_PENDING',
  );
  for (const c of clients.slice(1)) t.same(await call(c, 'Finish', { sessionId, commit: false }), {});
}

t.test('a compromised coordinator cannot get a share for a second payload on a nonce, or reuse a nonce', async (t) => {
  const clients = nodes.map((n) => cosignerClient(ts.pki, n.address));
  t.teardown(() => clients.forEach((c) => c.close()));
  const commits = await Promise.all(
    clients.slice(0, 2).map((c) =>
      call<{
        commitments: Array<{ id: string; cosignerId: number; hiding: Buffer; binding: Buffer }>;
        epoch: number;
      }>(c, 'Commit', { keyId: 'tss-ed', keyVersion: 1, count: 2 }),
    ),
  );
  const list = (j: number) => commits.map((c) => c.commitments[j]!);
  // Each payload comes with a request payment-engine really signed (captured by the attacker).
  const ask = (j: number, payload: Buffer, requestId: string) =>
    call<{ share: Buffer }>(clients[0]!, 'SignShare', {
      keyId: 'tss-ed',
      keyVersion: 1,
      epoch: commits[0]!.epoch,
      client: 'payment-engine',
      requestId,
      payloadKind: 'message',
      payload,
      replayScope: { chainId: '5', accountNonce: '42' },
      nonceId: list(j)[0]!.id,
      commitments: list(j),
      ...clientSignedFields(ts.pki, {
        keyId: 'tss-ed',
        requestId,
        kind: 'message',
        payload,
        scope: { chainId: 5n, nonce: 42n },
      }),
    });
  const first = await ask(0, Buffer.from('pay alice 1'), 'r-1');
  t.equal(first.share.length, 32, 'a share for the first payload');
  await refused(t, ask(0, Buffer.from('pay alice 1'), 'r-1'), status.FAILED_PRECONDITION, 'NONCE_UNKNOWN');
  await refused(t, ask(1, Buffer.from('pay mallory 9'), 'r-2'), status.ALREADY_EXISTS, 'NONCE_ALREADY_SIGNED');
  // In a DKG it cannot substitute a cosigner's transport key to read the shares meant for it:
  // every round-1 output is signed by its cosigner's identity certificate.
  const round1 = async () => {
    const sessionId = randomBytes(18).toString('base64url');
    const params = {
      sessionId,
      ceremony: 'DKG',
      keyId: 'evil-dkg',
      keyVersion: 1,
      algorithm: 'frost-ed25519',
      minSigners: 2,
      participants: [1, 2, 3],
      epoch: 0,
      groupId: randomBytes(16),
    };
    const r1 = await Promise.all(
      clients.map((c) =>
        call<{ package: string; transportKey: Buffer; identityCert: string; signature: Buffer }>(c, 'Round1', params),
      ),
    );
    return { sessionId, honest: r1.map((o, i) => ({ cosignerId: i + 1, ...o })) };
  };
  const a = await round1();
  const forged = a.honest.map((e) => (e.cosignerId === 2 ? { ...e, transportKey: randomBytes(32) } : e));
  const d = await refused(
    t,
    call(clients[0]!, 'Round2', { sessionId: a.sessionId, round1: forged }),
    status.FAILED_PRECONDITION,
    'CEREMONY_FAILED',
  );
  t.equal(d.metadata.faultyCosigner, '2', 'the substituted entry is refused, naming whose it claims to be');
  t.match(d.message, /not signed by its identity/);
  const ok = await call<{ shares: unknown[] }>(clients[1]!, 'Round2', { sessionId: a.sessionId, round1: a.honest });
  t.equal(ok.shares.length, 2, 'control: the untouched entries pass');
  // Cosigner 1 dropped the ceremony when it refused; 2 and 3 still run it, and no second DKG of
  // the key version starts on them until it is discarded by its own session.
  await discardEvil(t, clients, a.sessionId);
  const b = await round1();
  const stolen = b.honest.map((e) =>
    e.cosignerId === 3 ? { ...e, identityCert: ts.pki.clients['cosigner-2']!.cert.toString() } : e,
  );
  const d2 = await refused(
    t,
    call(clients[0]!, 'Round2', { sessionId: b.sessionId, round1: stolen }),
    status.FAILED_PRECONDITION,
    'CEREMONY_FAILED',
  );
  t.match(d2.message, /not for CN=cosigner-3/, "another cosigner's certificate does not pass for cosigner 3");
  await discardEvil(t, clients, b.sessionId);
  const foreign = cosignerClient(ts.pki, nodes[0]!.address, 'payment-engine');
  t.teardown(() => foreign.close());
  await refused(
    t,
    call(foreign, 'Commit', { keyId: 'tss-ed', keyVersion: 1, count: 1 }),
    status.PERMISSION_DENIED,
    'NOT_AUTHORIZED',
  );
});

t.test('a DKG with a cheating cosigner aborts and names it', async (t) => {
  for (const [fault, who] of [
    ['bad-proof', 3],
    ['bad-share', 2],
  ] as const) {
    const cheat = nodes[who - 1]!;
    await cheat.restart(fault);
    await settle();
    const d = await refused(
      t,
      create(`tss-cheat-${who}`, 'FROST_ED25519'),
      status.FAILED_PRECONDITION,
      'PARTICIPANT_FAULT',
    );
    t.equal(d.metadata.cosigner, String(who), `${fault}: cosigner ${who} named`);
    await cheat.restart();
    await settle();
    for (const node of nodes)
      t.notOk(
        sharesOf(node).some((r) => r.key_id === `tss-cheat-${who}`),
        `cosigner ${node.id} kept no share of the aborted key`,
      );
    await refused(
      t,
      call(engine.signer, 'GetPublicKey', { keyId: `tss-cheat-${who}` }),
      status.NOT_FOUND,
      'KEY_NOT_FOUND',
    );
  }
});

/**
 * Positions in `bytes` where an Ed25519 share of identifier `id` lies in the clear: the 32-byte
 * little-endian identifier followed by a scalar s with s*G equal to the verifying share.
 */
function clearShares(bytes: Uint8Array, id: Buffer, verifying: string): { found: number[]; candidates: number } {
  const buf = Buffer.from(bytes);
  const found: number[] = [];
  let candidates = 0;
  for (let i = buf.indexOf(id); i !== -1 && i + 64 <= buf.length; i = buf.indexOf(id, i + 1)) {
    const s = BigInt(
      `0x${Buffer.from(buf.subarray(i + 32, i + 64))
        .reverse()
        .toString('hex')}`,
    );
    if (s === 0n || s >= ed25519.Point.Fn.ORDER) continue;
    candidates++;
    if (ed25519.Point.BASE.multiply(s).toHex() === verifying) found.push(i);
  }
  return { found, candidates };
}

t.test('no cosigner file holds a share in the clear', async (t) => {
  // The search works: a share written in the clear among other bytes is found.
  const s = BigInt(`0x${randomBytes(31).toString('hex')}`) + 1n; // below the group order
  const planted = Buffer.concat([
    randomBytes(100),
    Buffer.from([1, ...Array(31).fill(0)]),
    Buffer.from(ed25519.Point.Fn.toBytes(s)),
    randomBytes(50),
  ]);
  const one = Buffer.alloc(32);
  one[0] = 1;
  t.same(
    clearShares(planted, one, ed25519.Point.BASE.multiply(s).toHex()).found,
    [100],
    'control: a planted share is found',
  );

  const pub = JSON.parse(ts.signer.keys.get('tss-ed').threshold!.publicPackage) as {
    verifyingShares: Record<string, string>;
  };
  for (const node of nodes) {
    const id = Buffer.alloc(32);
    id[0] = node.id;
    const verifying = pub.verifyingShares[id.toString('hex')]!;
    const tokenFiles = (await readdir(join(node.dir, 'tokens'), { recursive: true, withFileTypes: true }))
      .filter((f) => f.isFile())
      .map((f) => join(f.parentPath, f.name));
    const files = [node.dbPath, `${node.dbPath}-wal`, ...tokenFiles];
    let candidates = 0;
    for (const file of files) {
      const r = clearShares(await readFile(file).catch(() => Buffer.alloc(0)), id, verifying);
      candidates += r.candidates;
      t.same(r.found, [], `cosigner ${node.id}: ${file.slice(node.dir.length + 1)} holds no share in the clear`);
    }
    t.ok(
      tokenFiles.length > 0,
      `cosigner ${node.id}: database, WAL and ${tokenFiles.length} token files searched (${candidates} candidate positions)`,
    );
  }
});

t.test("rotating a threshold key runs a new DKG; destroying a version takes the quorum's order", async (t) => {
  const r = await call<{ active: Key; previous: Key }>(
    admin.keyAdmin,
    'RotateKey',
    { keyId: 'shared-tss', overlapSeconds: 60 },
    60_000,
  );
  t.equal(r.active.version, 2);
  t.notSame(r.active.publicKey, r.previous.publicKey, 'a new group key (a new address)');
  const message = randomBytes(32);
  t.ok(
    ed25519.verify((await sign('shared-tss', { message })).signature, message, r.active.publicKey),
    'the new version signs',
  );
  await call(admin.keyAdmin, 'DisableKeyVersion', { keyId: 'shared-tss', version: 1 });
  // No admin quorum here: the cosigners destroy a share only on its order (test/cosigner-destroy.test.ts).
  await refused(
    t,
    call(admin.keyAdmin, 'DestroyKeyVersion', { keyId: 'shared-tss', version: 1, confirmKeyId: 'shared-tss' }, 30_000),
    status.FAILED_PRECONDITION,
    'QUORUM_REQUIRED',
  );
  for (const node of nodes) {
    const rows = sharesOf(node).filter((x) => x.key_id === 'shared-tss');
    t.same(
      rows.map((x) => x.version),
      [1, 2],
      `cosigner ${node.id} keeps both versions' shares`,
    );
  }
  await refused(
    t,
    sign('shared-tss', { message }, { keyVersion: 1 }),
    status.FAILED_PRECONDITION,
    'KEY_VERSION_RETIRED',
  );
});
