/**
 * Witnesses as real child processes (role "witness", and cosigners), each with its own SoftHSM
 * token and SQLite file: they cosign only checkpoints consistent with the last one they cosigned,
 * refuse forks and rollbacks of a log whose database was rewritten, keep that state across a
 * restart, and admit only the configured client certificate.
 *
 * The log under witness here is a stand-in: entries in a SQLite file, the RFC 9162 tree
 * recomputed from the rows, and an Ed25519 log key that signs whatever head the file holds, as a
 * compromised signer would. The real signer no longer signs a rewritten head (it seeds from the
 * witnesses at start and checks the database first), so the witnesses' own fork and rollback
 * refusals are exercised here; test/witness-signer.test.ts runs the tampering case against a
 * real signer process and its SQLite file.
 */

import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { status } from '@grpc/grpc-js';
import { ed25519 } from '@noble/curves/ed25519.js';
import Database from 'better-sqlite3';
import t from 'tap';
import { auditKey, exportRecords, toLines } from '../harness/audit-export.js';
import { type CosignerNode, startCosigners } from '../harness/cosigners.js';
import { makePki } from '../harness/pki.js';
import { tsx } from '../harness/process.js';
import { repoRoot, tempDir } from '../harness/token.js';
import {
  loggedWitnessKey,
  startWitnesses,
  type WitnessNode,
  witnessClient,
  witnessConfig,
} from '../harness/witnesses.js';
import { call } from '../src/client/client.js';
import { decodeError } from '../src/client/errors.js';
import { openCheckpoint, signCheckpoint } from '../src/core/audit/checkpoint.js';
import { cosignatureVerifier } from '../src/core/audit/cosignature.js';
import { consistencyProof, leafHash } from '../src/core/audit/merkle.js';
import { MemoryTree } from '../src/core/audit/merkle-memory.js';
import { addSignatures, ed25519Signer, ed25519Verifier, type NoteSignature } from '../src/core/audit/note.js';
import { createLogger } from '../src/infra/log.js';
import { attachWitnesses, WitnessPublisher } from '../src/signer/audit/witnesses.js';

const ORIGIN = 'audit.test/hsm-signer/witness-test';

/** The stand-in log: rows in a SQLite file, the tree and checkpoints computed from them. */
class FileLog {
  private readonly db: Database.Database;
  readonly publicKey: Uint8Array;

  constructor(
    readonly path: string,
    private readonly secret: Uint8Array,
  ) {
    this.publicKey = ed25519.getPublicKey(secret);
    this.db = new Database(path);
    this.db.exec('CREATE TABLE IF NOT EXISTS audit (seq INTEGER PRIMARY KEY, entry BLOB NOT NULL)');
  }

  append(n: number): void {
    const next = this.size();
    const insert = this.db.prepare('INSERT INTO audit (seq, entry) VALUES (?, ?)');
    for (let i = 0; i < n; i++)
      insert.run(next + i + 1, Buffer.from(`entry ${next + i + 1} ${randomBytes(8).toString('hex')}`));
  }

  size(): number {
    return (this.db.prepare('SELECT count(*) AS n FROM audit').get() as { n: number }).n;
  }

  /** A tree recomputed from the rows as they are now (whoever wrote them). */
  tree(): MemoryTree {
    const tree = new MemoryTree();
    const rows = this.db.prepare('SELECT entry FROM audit ORDER BY seq').all() as Array<{ entry: Buffer }>;
    tree.append(rows.map((r) => leafHash(r.entry)));
    return tree;
  }

  /** The log key signs the head the file holds: it cannot tell a rewritten file from an honest one. */
  checkpoint(): Promise<string> {
    const tree = this.tree();
    const signer = ed25519Signer(ORIGIN, this.publicKey, async (m) => ed25519.sign(m, this.secret));
    return signCheckpoint({ origin: ORIGIN, size: tree.size, root: tree.root() }, signer);
  }

  proof = (from: number, to: number) => consistencyProof(this.tree(), from, to);

  exec(sql: string): void {
    this.db.exec(sql);
  }

  close(): void {
    this.db.close();
  }
}

const dir = await tempDir('witness');
const pki = await makePki(dir.path, ['coordinator', 'auditor', 'cosigner-1', 'cosigner-2']);
const logKey = auditKey();
const log = new FileLog(join(dir.path, 'log.db'), logKey.secretKey);
const logs = [{ origin: ORIGIN, publicKey: Buffer.from(log.publicKey).toString('base64') }];
const witnesses: WitnessNode[] = await startWitnesses(dir.path, pki, logs, { n: 2 });
let cosigners: CosignerNode[] = [];
/** What the sink got: the cosignatures the checkpointer would add to the stored note of `size`. */
const stored: Array<{ size: number; witnesses: readonly string[] }> = [];
let lastNote = '';
const quiet = createLogger('fatal');
const publisherFor = (nodes: Array<Pick<WitnessNode, 'name' | 'address' | 'publicKey'>>, required: number) =>
  new WitnessPublisher(
    witnessConfig(nodes, pki, required),
    pki.files.caCert,
    log.proof,
    async (size, sigs) => {
      stored.push({ size, witnesses: sigs.map((s) => s.name) });
    },
    quiet,
  );
const publisher = publisherFor(witnesses, 2);
t.teardown(async () => {
  publisher.close();
  await Promise.all([...witnesses, ...cosigners].map((w) => w.stop()));
  log.close();
  await dir.cleanup();
});

const trust = (required: number, nodes: Array<Pick<WitnessNode, 'name' | 'publicKey'>> = witnesses) => ({
  origin: ORIGIN,
  log: ed25519Verifier(ORIGIN, log.publicKey),
  witnesses: nodes.map((w) => cosignatureVerifier(w.name, Buffer.from(w.publicKey, 'base64'))),
  required,
});

async function latest(w: WitnessNode): Promise<{ size: number; checkpoint: string }> {
  const c = witnessClient(pki, w.address);
  try {
    const r = await call<{ size: string; checkpoint: string }>(c, 'GetLatest', { origin: ORIGIN });
    return { size: Number(r.size), checkpoint: r.checkpoint };
  } finally {
    c.close();
  }
}

t.test('two witnesses cosign a new log and each consistent extension of it', async (t) => {
  log.append(5);
  const first = await publisher.publish(await log.checkpoint());
  t.ok(first.published, 'published with 2 of 2 cosignatures');
  t.same(
    first.outcomes.map((o) => o.ok),
    [true, true],
  );
  const opened = openCheckpoint(first.note, trust(2));
  t.equal(opened.checkpoint.size, 5);
  t.equal(opened.cosignatures.length, 2, 'the stored note carries both cosignature lines');
  t.same(stored.at(-1), { size: 5, witnesses: witnesses.map((w) => w.name) }, 'both handed to the store');

  log.append(7);
  const second = await publisher.publish(await log.checkpoint());
  t.ok(second.published, 'an extension with a consistency proof from 5 to 12 is cosigned');
  t.equal(openCheckpoint(second.note, trust(2)).checkpoint.size, 12);
  for (const w of witnesses) {
    const l = await latest(w);
    t.equal(l.size, 12, `${w.name} recorded size 12`);
    t.equal(openCheckpoint(l.checkpoint, trust(1, [w])).cosignatures.length, 1, 'GetLatest returns its cosigned note');
  }
  // Republishing the same head is consistent (equal sizes, equal roots).
  t.ok((await publisher.publish(await log.checkpoint())).published);
});

t.test('attached to a checkpointer, each signed note gets its cosignatures stored in order', async (t) => {
  // Stand-in for the Merkle checkpointer (audit branch): its onSigned hook and addCosignatures.
  const notes = new Map<number, string>();
  const listeners: Array<(c: { size: number; note: string }) => void> = [];
  const checkpointer = {
    onSigned: (l: (c: { size: number; note: string }) => void) => void listeners.push(l),
    addCosignatures: async (size: number, sigs: readonly NoteSignature[]) => {
      notes.set(size, addSignatures(notes.get(size)!, sigs));
    },
  };
  const attached = attachWitnesses(checkpointer, witnessConfig(witnesses, pki, 2), pki.files.caCert, log.proof, quiet);
  for (const n of [2, 3]) {
    log.append(n);
    const note = await log.checkpoint();
    notes.set(log.size(), note);
    for (const l of listeners) l({ size: log.size(), note });
  }
  await attached.drain();
  for (const size of [14, 17]) {
    t.equal(
      openCheckpoint(notes.get(size)!, trust(2)).cosignatures.length,
      2,
      `the note of size ${size} has 2 cosignatures`,
    );
  }
  lastNote = notes.get(17)!;
});

t.test('verify-audit --witnesses k checks the cosignatures of a checkpoint', async (t) => {
  const exportFile = join(dir.path, 'export.jsonl');
  await writeFile(
    exportFile,
    `${toLines([...exportRecords({ count: 20, every: 5, keys: [logKey] })], 'jsonl').join('\n')}\n`,
  );
  const noteFile = join(dir.path, 'checkpoint.note');
  await writeFile(noteFile, lastNote);
  const keyArgs = (ws: Array<Pick<WitnessNode, 'name' | 'publicKey'>>) =>
    ws.flatMap((w) => ['--witness-key', `${w.name}=${w.publicKey}`]);
  const verify = (args: string[]) =>
    // The export here is not the stand-in log's: only the note's signatures are checked.
    promisify(execFile)(
      tsx,
      ['scripts/verify-audit.ts', exportFile, '--checkpoint', noteFile, '--signatures-only', ...args],
      {
        cwd: repoRoot,
        timeout: 60_000,
      },
    ).then(
      (r) => ({ code: 0, out: r.stdout }),
      (e: { code: number; stdout: string }) => ({ code: e.code, out: e.stdout }),
    );
  const good = await verify(['--witnesses', '2', ...keyArgs(witnesses)]);
  t.equal(good.code, 0, 'a checkpoint cosigned by both witnesses passes --witnesses 2');
  t.match(good.out, /2 of 2 required witness cosignatures/);
  t.match(good.out, /OK: checkpoint witnessed/);
  const impostor = {
    name: witnesses[1]!.name,
    publicKey: Buffer.from(ed25519.getPublicKey(ed25519.utils.randomSecretKey())).toString('base64'),
  };
  const wrongKey = await verify(['--witnesses', '2', ...keyArgs([witnesses[0]!, impostor])]);
  t.equal(wrongKey.code, 1, 'a cosignature that does not verify under the trusted key fails');
  await writeFile(noteFile, await log.checkpoint());
  const unwitnessed = await verify(['--witnesses', '1', ...keyArgs(witnesses)]);
  t.equal(unwitnessed.code, 1, 'a checkpoint without cosignatures fails --witnesses 1');
  t.match(unwitnessed.out, /too-few-cosignatures/);
  t.equal((await verify([])).code, 0, 'with --witnesses 0 the log signature alone is checked');
});

t.test('a database rewritten under the log cannot get a fork or a rollback cosigned', async (t) => {
  const honest = join(dir.path, 'log-honest.db');
  log.exec(`VACUUM INTO '${honest}'`);
  const before = await Promise.all(witnesses.map(latest));
  const held = log.size();

  // Entry 3 rewritten in place: same size, another root.
  log.exec(`UPDATE audit SET entry = X'${Buffer.from('forged entry 3').toString('hex')}' WHERE seq = 3`);
  const sameSize = await publisher.publish(await log.checkpoint());
  t.notOk(sameSize.published, 'nothing cosigned at the same size with another root');
  t.same(
    sameSize.outcomes.map((o) => o.why),
    ['WITNESS_FORK', 'WITNESS_FORK'],
  );

  // ...and grown: the proof from the cosigned size computed over the rewritten rows does not verify.
  log.append(4);
  const grown = await publisher.publish(await log.checkpoint());
  t.same(
    grown.outcomes.map((o) => o.why),
    ['WITNESS_FORK', 'WITNESS_FORK'],
    'the extended fork is refused',
  );
  t.same(
    grown.outcomes.map((o) => o.latestSize),
    [held, held],
    'the witnesses say which size they hold',
  );

  // The tail cut and history rewritten below the cosigned size: a rollback.
  log.exec('DELETE FROM audit WHERE seq > 8');
  const cut = await publisher.publish(await log.checkpoint());
  t.same(
    cut.outcomes.map((o) => o.why),
    ['WITNESS_ROLLBACK', 'WITNESS_ROLLBACK'],
  );

  // A direct call with a well-formed but wrong proof from the right old size is a fork too.
  log.append(held - 8 + 6);
  const c = witnessClient(pki, witnesses[0]!.address);
  const err = await call(c, 'AddCheckpoint', {
    oldSize: String(held),
    consistencyProof: await log.proof(held, held + 6),
    checkpoint: await log.checkpoint(),
  }).catch((e) => e);
  c.close();
  t.equal(err.code, status.FAILED_PRECONDITION);
  t.equal(decodeError(err).reason, 'WITNESS_FORK');
  t.equal(decodeError(err).metadata.latest_size, String(held));
  t.match(err.details, `consistency proof from size ${held} to ${held + 6} does not verify`);

  const after = await Promise.all(witnesses.map(latest));
  t.same(after, before, 'each witness keeps its last cosigned checkpoint');
  for (const w of witnesses) t.match(w.proc.logs(), /witness refused/, `${w.name} logged the refusal`);

  // The honest database is put back and grows: cosigned again from the held size.
  log.exec(`DELETE FROM audit; ATTACH '${honest}' AS h; INSERT INTO audit SELECT * FROM h.audit; DETACH h`);
  log.append(3);
  const healed = await publisher.publish(await log.checkpoint());
  t.ok(healed.published, 'the honest log, extended, is cosigned');
  t.equal(openCheckpoint(healed.note, trust(2)).checkpoint.size, held + 3);
});

t.test('a restarted witness keeps its state', async (t) => {
  const w = witnesses[0]!;
  const before = await latest(w);
  const key = w.publicKey;
  await w.restart();
  t.same(await latest(w), before, 'the same latest checkpoint after a restart');
  t.equal(loggedWitnessKey(w.proc.logs()), key, 'the same key, found in its token');
  const copy = join(dir.path, 'log-before-fork.db');
  log.exec(`VACUUM INTO '${copy}'`);
  log.exec(`UPDATE audit SET entry = X'00' WHERE seq = 1`);
  const fork = await publisherFor([w], 1).publish(await log.checkpoint());
  t.same(
    fork.outcomes.map((o) => o.why),
    ['WITNESS_FORK'],
    'it still refuses a fork of what it cosigned',
  );
  log.exec(`DELETE FROM audit; ATTACH '${copy}' AS h; INSERT INTO audit SELECT * FROM h.audit; DETACH h`);
  log.append(1);
  const p = publisherFor([w], 1);
  t.ok((await p.publish(await log.checkpoint())).published, 'and cosigns the honest extension');
  p.close();
});

t.test('only the configured client certificate may call a witness', async (t) => {
  const wrongCn = witnessClient(pki, witnesses[0]!.address, 'auditor');
  const e1 = await call(wrongCn, 'GetLatest', { origin: ORIGIN }).catch((e) => e);
  wrongCn.close();
  t.equal(e1.code, status.PERMISSION_DENIED, 'a certificate of our CA with another CN is refused');
  t.equal(decodeError(e1).reason, 'NOT_AUTHORIZED');
  const foreign = witnessClient(pki, witnesses[0]!.address, 'foreign');
  const e2 = await call(
    foreign,
    'AddCheckpoint',
    { oldSize: '0', consistencyProof: [], checkpoint: await log.checkpoint() },
    5000,
  ).catch((e) => e);
  foreign.close();
  t.equal(e2.code, status.UNAVAILABLE, 'a certificate from another CA fails the TLS handshake');
  t.equal((await latest(witnesses[0]!)).size, log.size(), 'nothing was recorded');
});

t.test('checkpoints not signed by the pinned log key, or of another origin, are refused', async (t) => {
  const c = witnessClient(pki, witnesses[1]!.address);
  const other = ed25519.utils.randomSecretKey();
  const tree = log.tree();
  const forger = ed25519Signer(ORIGIN, ed25519.getPublicKey(other), async (m) => ed25519.sign(m, other));
  const forged = await signCheckpoint({ origin: ORIGIN, size: tree.size + 1, root: tree.root() }, forger);
  const e1 = await call(c, 'AddCheckpoint', { oldSize: '0', consistencyProof: [], checkpoint: forged }).catch((e) => e);
  t.equal(e1.code, status.INVALID_ARGUMENT);
  t.equal(decodeError(e1).reason, 'CHECKPOINT_SIGNATURE_INVALID');
  const stranger = await signCheckpoint({ origin: 'elsewhere.test/log', size: 1, root: tree.root() }, forger);
  const e2 = await call(c, 'AddCheckpoint', { oldSize: '0', consistencyProof: [], checkpoint: stranger }).catch(
    (e) => e,
  );
  t.equal(e2.code, status.NOT_FOUND);
  t.equal(decodeError(e2).reason, 'WITNESS_UNKNOWN_ORIGIN');
  const e3 = await call(c, 'AddCheckpoint', { oldSize: '0', consistencyProof: [], checkpoint: 'not a note\n' }).catch(
    (e) => e,
  );
  t.equal(decodeError(e3).reason, 'CHECKPOINT_SIGNATURE_INVALID');
  const stale = await call(c, 'AddCheckpoint', {
    oldSize: '0',
    consistencyProof: [],
    checkpoint: await log.checkpoint(),
  }).catch((e) => e);
  t.equal(stale.code, status.ABORTED, 'a requester that does not know the latest size is told it');
  t.equal(decodeError(stale).reason, 'WITNESS_CONFLICT');
  t.equal(decodeError(stale).metadata.latest_size, String((await latest(witnesses[1]!)).size));
  c.close();
});

t.test('every cosigner node is a witness too, with its own key and file', async (t) => {
  cosigners = await startCosigners(dir.path, pki, 2, {}, (c) => c, logs);
  const nodes = cosigners.map((c) => ({
    name: `cosigner-${c.id}.witness`,
    address: c.address,
    publicKey: loggedWitnessKey(c.proc.logs()),
  }));
  t.not(nodes[0]!.publicKey, nodes[1]!.publicKey, 'each cosigner has its own witness key');
  const p = publisherFor(nodes, 2);
  const pub = await p.publish(await log.checkpoint());
  t.ok(pub.published, 'both cosigners cosigned');
  t.equal(openCheckpoint(pub.note, trust(2, nodes)).cosignatures.length, 2);
  log.exec(`UPDATE audit SET entry = X'01' WHERE seq = 2`);
  log.append(2);
  const fork = await p.publish(await log.checkpoint());
  t.same(
    fork.outcomes.map((o) => o.why),
    ['WITNESS_FORK', 'WITNESS_FORK'],
    'cosigners refuse a fork as well',
  );
  p.close();
});
