import { execFile } from 'node:child_process';
import { generateKeyPairSync, sign as nodeSign, randomBytes, randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { promisify } from 'node:util';
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
  OPEN_POLICY_V1,
  startCosigners,
  thresholdConfig,
} from '../harness/cosigners.js';
import { OPEN_POLICY, refused, startTestSigner } from '../harness/signer.js';
import { call, nowTimestamp } from '../src/client/client.js';
import { proposalBytes } from '../src/core/admin/proposal.js';
import { type AuditRow, verifyCosignerAudit } from '../src/cosigner/records.js';

// A signer host compromised: the attacker holds the coordinator's certificate and key (files on
// that host) and talks to each real cosigner process directly, over real mTLS, with real
// SoftHSM shares behind it. Every cosigner must refuse, with the signer's status and reason,
// and audit the refusal in its own hash-chained log; the normal path through the signer still
// yields FROST signatures that @noble/curves verifies.

/** The admin quorum the cosigners pin (2 of 3 Ed25519 keys); the signer here runs without one. */
const admins = ['a1', 'a2', 'a3'].map((name) => ({ name, ...generateKeyPairSync('ed25519') }));
const adminsConfig = {
  quorum: 2,
  members: Object.fromEntries(
    admins.map((a) => [a.name, { publicKey: a.publicKey.export({ type: 'spki', format: 'pem' }).toString() }]),
  ),
};

let nodes: CosignerNode[] = [];
const ts = await startTestSigner({
  clients: COSIGNER_CLIENTS,
  prepare: async (dir, pki) => {
    nodes = await startCosigners(dir, pki, 3, {}, (c) => ({ ...c, admins: adminsConfig }));
    return { threshold: thresholdConfig(nodes, pki) };
  },
});
t.teardown(async () => {
  await ts.close();
  await Promise.all(nodes.map((n) => n.stop()));
});
const engine = ts.as('payment-engine');
const admin = ts.as('security-admin');
type Key = { keyId: string; version: number; publicKey: Buffer };
const create = (keyId: string, algorithm: string) =>
  call<Key>(admin.keyAdmin, 'CreateKey', { keyId, algorithm }, 60_000);
const ed = await create('tss-ed', 'FROST_ED25519');
const tr = await create('tss-btc', 'FROST_SECP256K1_TR');
const down = await create('tss-down', 'FROST_ED25519');

/** The attacker's connections: the coordinator's own certificate, straight to each cosigner. */
const stolen = nodes.map((n) => cosignerClient(ts.pki, n.address, 'coordinator'));
t.teardown(() => stolen.forEach((c) => c.close()));

type Commitment = { id: string; cosignerId: number; hiding: Buffer; binding: Buffer };

/**
 * Asks cosigner `i` for a share of `payload` under `key` with fresh nonces of its own and of the
 * next cosigner (a valid commitment list), plus whatever `extra` fields the attacker sends.
 */
async function askShare(i: number, key: Key, kind: 'message' | 'digest', payload: Buffer, extra: object) {
  const ids = [i, (i + 1) % nodes.length];
  const commits = await Promise.all(
    ids.map((j) =>
      call<{ commitments: Commitment[]; epoch: number }>(stolen[j]!, 'Commit', {
        keyId: key.keyId,
        keyVersion: key.version,
        count: 1,
      }),
    ),
  );
  const list = commits.map((c) => c.commitments[0]!);
  return call<{ share: Buffer }>(stolen[i]!, 'SignShare', {
    keyId: key.keyId,
    keyVersion: key.version,
    epoch: commits[0]!.epoch,
    client: 'payment-engine',
    requestId: randomUUID(),
    payloadKind: kind,
    payload,
    replayScope: null,
    nonceId: list[0]!.id,
    commitments: list,
    ...extra,
  });
}

function auditOf(node: CosignerNode): AuditRow[] {
  const db = new Database(node.dbPath, { readonly: true });
  try {
    return db.prepare('SELECT * FROM cosigner_audit ORDER BY seq').all() as AuditRow[];
  } finally {
    db.close();
  }
}

/** Every cosigner refuses `ask(i)` with `code`/`reason`, names itself, and audits the refusal. */
async function everyCosignerRefuses(
  t: Test,
  ask: (i: number) => Promise<unknown>,
  code: grpc.status,
  reason: string,
  why?: string,
) {
  for (const [i, node] of nodes.entries()) {
    const before = auditOf(node).length;
    const d = await refused(t, ask(i), code, reason);
    t.equal(d.metadata.cosigner, String(node.id), `cosigner ${node.id} names itself`);
    if (why) t.equal(d.metadata.why, why, `why: ${why}`);
    const rows = auditOf(node);
    t.equal(rows.length, before + 1, `cosigner ${node.id} audited it`);
    const last = JSON.parse(rows.at(-1)!.details) as { reason: string; decision: string };
    t.same([rows.at(-1)!.kind, last.decision, last.reason], ['share.refused', 'refused', reason]);
    t.ok(verifyCosignerAudit(rows).ok, 'its audit chain verifies');
  }
}

const digest = () => randomBytes(32);
const fields = (o: Parameters<typeof clientSignedFields>[1]) => clientSignedFields(ts.pki, o);

t.test('the normal path: signed requests through the signer give FROST signatures that verify', async (t) => {
  for (let i = 0; i < 3; i++) {
    const message = randomBytes(40);
    const a = await call<{ signature: Buffer }>(engine.signer, 'Sign', {
      keyId: 'tss-ed',
      requestId: randomUUID(),
      clientTime: nowTimestamp(),
      message,
    });
    t.ok(ed25519.verify(a.signature, message, ed.publicKey, { zip215: false }), 'Ed25519 verifies');
    const d = digest();
    const b = await call<{ signature: Buffer }>(engine.signer, 'Sign', {
      keyId: 'tss-btc',
      requestId: randomUUID(),
      clientTime: nowTimestamp(),
      digest: d,
    });
    t.ok(schnorr.verify(b.signature, d, tr.publicKey), 'BIP340 verifies');
  }
  const granted = nodes.flatMap((n) => auditOf(n)).filter((r) => r.kind === 'share.granted');
  t.ok(granted.length >= 12, 'two shares per signature were granted and audited');
  const entry = JSON.parse(granted[0]!.details) as { client: string; request: { message: string } };
  t.equal(entry.client, 'payment-engine', 'the verified client');
  t.match(Buffer.from(entry.request.message, 'hex').toString(), /^hsm-signer\/sign-request\/v1\n/);
});

t.test('a stolen coordinator certificate gets no share without a client signature', async (t) => {
  await everyCosignerRefuses(
    t,
    (i) => askShare(i, tr, 'digest', digest(), {}),
    status.UNAUTHENTICATED,
    'REQUEST_SIGNATURE_REQUIRED',
  );
});

t.test('nor with a client signature of another payload, or of another key', async (t) => {
  await everyCosignerRefuses(
    t,
    (i) => {
      const requestId = randomUUID();
      const signedOther = fields({ keyId: 'tss-btc', requestId, kind: 'digest', payload: digest() });
      return askShare(i, tr, 'digest', digest(), { ...signedOther, requestId });
    },
    status.UNAUTHENTICATED,
    'REQUEST_SIGNATURE_INVALID',
    'other_payload',
  );
  await everyCosignerRefuses(
    t,
    (i) => {
      const requestId = randomUUID();
      const payload = digest();
      const forEd = fields({ keyId: 'tss-ed', requestId, kind: 'digest', payload });
      return askShare(i, tr, 'digest', payload, { ...forEd, requestId });
    },
    status.UNAUTHENTICATED,
    'REQUEST_SIGNATURE_INVALID',
    'other_key',
  );
  // A signature that verifies under no key of the client: its bytes altered.
  await everyCosignerRefuses(
    t,
    (i) => {
      const requestId = randomUUID();
      const payload = digest();
      const f = fields({ keyId: 'tss-btc', requestId, kind: 'digest', payload });
      f.requestSignature[f.requestSignature.length - 2]! ^= 1;
      return askShare(i, tr, 'digest', payload, { ...f, requestId });
    },
    status.UNAUTHENTICATED,
    'REQUEST_SIGNATURE_INVALID',
  );
});

t.test('nor with a client signature made long ago (the cosigner reads its own clock)', async (t) => {
  await everyCosignerRefuses(
    t,
    (i) => {
      const requestId = randomUUID();
      const payload = digest();
      const old = fields({ keyId: 'tss-btc', requestId, kind: 'digest', payload, clientTimeMs: Date.now() - 3600_000 });
      return askShare(i, tr, 'digest', payload, { ...old, requestId });
    },
    status.FAILED_PRECONDITION,
    'STALE_REQUEST',
  );
});

/** A policy version approved by `signers` of the pinned admins (proposal bytes, core/admin). */
function approved(name: string, version: number, doc: object, signers: typeof admins) {
  const document = JSON.stringify(doc);
  const id = randomBytes(16).toString('hex');
  const bytes = proposalBytes({ kind: 'policy', id, target: name, baseVersion: version - 1, document });
  const approvals = signers.map((a, k) => ({
    admin: a.name,
    signature: nodeSign(null, bytes, a.privateKey),
    atMs: String(Date.now() + k),
  }));
  return { name, version, document, proposalId: id, approvals };
}

t.test('nor under a forged policy, nor a downgraded one', async (t) => {
  const wide = { ...OPEN_POLICY, clients: ['payment-engine', 'mallory'] };
  const forgedCases = [
    // The wide text, presented as if the signer's config had set it: no cosigner pins it.
    { ...OPEN_POLICY_V1, version: 2, document: JSON.stringify(wide) },
    // Approved by one admin only, then by a key that is no admin's.
    approved('open', 2, wide, admins.slice(0, 1)),
    {
      ...approved('open', 2, wide, admins.slice(0, 2)),
      approvals: approved('open', 2, wide, admins.slice(0, 1)).approvals.concat({
        admin: 'a2',
        signature: nodeSign(null, Buffer.from('not the proposal'), admins[1]!.privateKey),
        atMs: '1',
      }),
    },
  ];
  for (const policy of forgedCases) {
    await everyCosignerRefuses(
      t,
      (i) => {
        const requestId = randomUUID();
        const payload = digest();
        const f = fields({ keyId: 'tss-btc', requestId, kind: 'digest', payload, policy });
        return askShare(i, tr, 'digest', payload, { ...f, requestId });
      },
      status.FAILED_PRECONDITION,
      'POLICY_UNAVAILABLE',
      'unapproved',
    );
  }
  // A key's own policy, approved by the quorum at version 2 and used for a share on every cosigner.
  const own = { ...OPEN_POLICY, keys: ['tss-down'] };
  const v1 = approved('down', 1, { ...own, clients: ['payment-engine', 'mallory'] }, admins.slice(0, 2));
  const v2 = approved('down', 2, own, admins.slice(1, 3));
  for (const i of nodes.keys()) {
    const requestId = randomUUID();
    const message = randomBytes(32);
    const f = fields({ keyId: 'tss-down', requestId, kind: 'message', payload: message, policy: v2 });
    const got = await askShare(i, down, 'message', message, { ...f, requestId });
    t.equal(got.share.length, 32, `cosigner ${i + 1}: a share under version 2 of the key's own policy`);
  }
  const ask = (policy: object) => (i: number) => {
    const requestId = randomUUID();
    const message = randomBytes(32);
    const f = fields({ keyId: 'tss-down', requestId, kind: 'message', payload: message, policy });
    return askShare(i, down, 'message', message, { ...f, requestId });
  };
  // Version 1 is quorum-approved too, but older than one already signed under.
  await everyCosignerRefuses(t, ask(v1), status.FAILED_PRECONDITION, 'POLICY_UNAVAILABLE', 'downgrade');
  // The catch-all config policy is genuine, but the key has a more specific one.
  await everyCosignerRefuses(t, ask(OPEN_POLICY_V1), status.FAILED_PRECONDITION, 'POLICY_UNAVAILABLE', 'downgrade');
  // And a policy version that does not govern the key at all.
  const other = approved('elsewhere', 1, { ...OPEN_POLICY, keys: ['cold-*'] }, admins.slice(0, 2));
  await everyCosignerRefuses(t, ask(other), status.PERMISSION_DENIED, 'NO_POLICY');
});

t.test("each cosigner's audit log verifies offline, and a rewritten entry is found", async (t) => {
  const run = promisify(execFile);
  const node = nodes[0]!;
  const ok = await run('npx', ['tsx', 'scripts/verify-cosigner-audit.ts', node.dbPath]);
  t.match(ok.stdout, /^OK: \d+ entries \(\d+ granted, \d+ refused\)/, ok.stdout.trim());
  const copy = join(ts.dir, 'tampered.db');
  // The live file is in WAL mode: copy a consistent snapshot with SQLite's own backup.
  const src = new Database(node.dbPath, { readonly: true });
  await src.backup(copy);
  src.close();
  const db = new Database(copy);
  const row = db.prepare("SELECT seq, details FROM cosigner_audit WHERE kind = 'share.refused' LIMIT 1").get() as {
    seq: number;
    details: string;
  };
  const details = JSON.parse(row.details) as { reason: string };
  details.reason = 'NONE';
  db.prepare('UPDATE cosigner_audit SET details = ? WHERE seq = ?').run(JSON.stringify(details), row.seq);
  db.close();
  const bad = await run('npx', ['tsx', 'scripts/verify-cosigner-audit.ts', copy]).then(
    () => ({ code: 0, stderr: '' }),
    (e: { code: number; stderr: string }) => e,
  );
  t.equal(bad.code, 1, 'exit 1');
  t.match(bad.stderr, new RegExp(`BROKEN at seq ${row.seq}: hash does not match`));
});
