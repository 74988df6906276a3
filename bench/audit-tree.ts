// Costs of the audit Merkle tree at scale (issue 10, point 6): fills a SQLite store with
// 1,000,000 entries through the one audit-append path (batched appendAudit calls, so every entry
// gets its nodes as in production), then measures a checkpoint (the checkpointer's full check:
// read the new entries, recompute their leaves, compare with the stored head, sign, store), an
// inclusion proof and a consistency proof from the store, and the bytes each entry costs.
// AUDIT_TREE_ENTRIES overrides the size.
import { statSync } from 'node:fs';
import { ed25519 } from '@noble/curves/ed25519.js';
import Database from 'better-sqlite3';
import { tempDir } from '../harness/token.js';
import { eventDraft } from '../src/core/audit/draft.js';
import { entryLeafHash } from '../src/core/audit/leaf.js';
import { frontierNodes } from '../src/core/audit/merkle.js';
import { SqliteStore } from '../src/infra/store/sqlite.js';
import { Checkpointer } from '../src/signer/audit/checkpointer.js';

const ENTRIES = Number(process.env.AUDIT_TREE_ENTRIES ?? 1_000_000);
const BATCH = 5000;
/** Entries between two checkpoints in the steady-state measurement (the default checkpointEveryEntries). */
const EVERY = 1000;
const SAMPLES = 1000;
/** Checkpoints measured (after a warm-up one), each over EVERY new entries. */
const ROUNDS = 9;
/** Entries whose leaves are recomputed to estimate a cold start (linear in the log's size). */
const COLD = 20_000;

const tmp = await tempDir('audit-tree-');
try {
  const path = `${tmp.path}/audit.db`;
  const store = new SqliteStore(path);
  // The HSM is not what is measured here: a software Ed25519 key stands in for the audit key.
  const secret = ed25519.utils.randomSecretKey();
  const key = { keyId: '_audit', version: 1, publicKey: ed25519.getPublicKey(secret) };
  const checkpointer = new Checkpointer(store, key, async (m) => ed25519.sign(m, secret), {
    everyEntries: EVERY,
    everyMs: 3_600_000,
    origin: 'bench.example/hsm-signer',
  });
  const drafts = (from: number, n: number) =>
    Array.from({ length: n }, (_, k) =>
      eventDraft('sign', new Date(Date.UTC(2026, 0, 1) + (from + k) * 1000), 'payment-engine', {
        keyId: 'hot-1',
        keyVersion: 1,
        payloadHash: new Uint8Array(32).fill((from + k) % 251),
        intent: {
          chainId: '1',
          nonce: String(from + k),
          to: '0x000000000000000000000000000000000000a11c',
          value: '1000',
        },
      }),
    );
  const fill0 = performance.now();
  const base = ENTRIES - (ROUNDS + 1) * EVERY;
  for (let i = 0; i < base; i += BATCH) await store.appendAudit(drafts(i, Math.min(BATCH, base - i)));
  const fillS = (performance.now() - fill0) / 1000;

  // The first checkpoint of a process with no trusted note recomputes every leaf (cold start):
  // measured on the first COLD entries only (it is linear); then the checkpointer is seeded with
  // the stored frontier at the base size, as from a trusted mark.
  const coldN = Math.min(base, COLD);
  const cold0 = performance.now();
  for await (const e of store.readAudit(1, coldN)) entryLeafHash(e);
  const coldMs = ((performance.now() - cold0) * base) / coldN;
  await checkpointer.seed([], { frontier: { size: base, hashes: [...(await store.readNodes(frontierNodes(base)))] } });
  // Steady state: EVERY new entries since the last signed tree, ROUNDS times after one warm-up
  // (the first signature of a process builds the Ed25519 tables): the median, and the spread,
  // since one sample on a shared machine says more about the neighbours than about the code.
  const cpMs: number[] = [];
  for (let r = 0; r <= ROUNDS; r++) {
    await store.appendAudit(drafts(base + r * EVERY, EVERY));
    const cp0 = performance.now();
    const signed = await checkpointer.checkpointHead();
    if (r > 0) cpMs.push(performance.now() - cp0);
    if (signed?.size !== base + (r + 1) * EVERY) throw new Error(`checkpoint of size ${signed?.size}`);
  }
  cpMs.sort((a, b) => a - b);
  const checkpointMs = cpMs[Math.floor(ROUNDS / 2)]!;
  const size = base + (ROUNDS + 1) * EVERY;

  const time = async (f: (i: number) => Promise<unknown>) => {
    const ms: number[] = [];
    for (let i = 0; i < SAMPLES; i++) {
      const t0 = performance.now();
      await f(i);
      ms.push(performance.now() - t0);
    }
    ms.sort((a, b) => a - b);
    return {
      p50: ms[Math.floor(SAMPLES / 2)]!,
      p99: ms[Math.floor(SAMPLES * 0.99)]!,
      mean: ms.reduce((a, b) => a + b) / SAMPLES,
    };
  };
  const rnd = (n: number) => 1 + Math.floor(Math.random() * n);
  const incl = await time(() => store.inclusionProof(rnd(size), size));
  const cons = await time(() => {
    const a = rnd(size - 1);
    return store.consistencyProof(a, a + rnd(size - a));
  });
  await store.close();

  const db = new Database(path);
  db.pragma('wal_checkpoint(TRUNCATE)');
  let perTable: Record<string, number> = {};
  try {
    const rows = db
      .prepare(
        "SELECT name, sum(pgsize) AS bytes FROM dbstat WHERE name IN ('audit', 'audit_nodes', 'audit_at', 'sqlite_autoindex_audit_1') GROUP BY name",
      )
      .all() as Array<{ name: string; bytes: number }>;
    perTable = Object.fromEntries(rows.map((r) => [r.name, r.bytes / ENTRIES]));
  } catch {
    // dbstat is an optional SQLite module; the file size below is always there.
  }
  const nodes = (db.prepare('SELECT count(*) AS n FROM audit_nodes').get() as { n: number }).n;
  db.close();
  const fileBytes = statSync(path).size;
  const f = (x: number) => x.toFixed(3);
  console.log(
    `audit tree: ${base} entries appended in ${fillS.toFixed(1)} s (${Math.round(base / fillS)}/s, batches of ${BATCH}), ${ENTRIES} with the checkpoint rounds; ${nodes} nodes (${(nodes / ENTRIES).toFixed(2)} per entry)`,
  );
  console.log(
    `checkpoint at ${ENTRIES} (${EVERY} new entries: read, recompute leaves, compare, sign, store): median ${checkpointMs.toFixed(1)} ms of ${ROUNDS} (${cpMs[0]!.toFixed(1)}..${cpMs.at(-1)!.toFixed(1)})  [target <= 100 ms]`,
  );
  console.log(
    `first checkpoint of a process with no trusted note (recomputes all ${base} leaves), from ${COLD}: ~${(coldMs / 1000).toFixed(1)} s`,
  );
  console.log(`inclusion proof at ${ENTRIES}: p50 ${f(incl.p50)} ms, p99 ${f(incl.p99)} ms  [target <= 10 ms]`);
  console.log(`consistency proof at ${ENTRIES}: p50 ${f(cons.p50)} ms, p99 ${f(cons.p99)} ms  [target <= 10 ms]`);
  const tables = Object.entries(perTable)
    .map(([k, v]) => `${k} ${v.toFixed(0)} B`)
    .join(', ');
  console.log(
    `bytes per entry: ${(fileBytes / ENTRIES).toFixed(0)} B of database file in all${tables ? ` (${tables})` : ''}`,
  );
} finally {
  await tmp.cleanup();
}
