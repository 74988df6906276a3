/**
 * Upgrading a database made before numbered migrations: test/fixtures/main-3cdd848/ holds the
 * DDL main ran at 3cdd848 (copied verbatim) and rows that main's store wrote into every table
 * (make.ts). Each dialect builds that database exactly, opens it with today's store and checks
 * that every row is still there, byte for byte, readable through the store API, and that the
 * audit chain still verifies offline (an export through signer/audit/export.ts, checked by
 * core/audit/verify.ts with the fixture's audit public key) and continues from its head.
 */

import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { ed25519 } from '@noble/curves/ed25519.js';
import Database from 'better-sqlite3';
import pg from 'pg';
import t, { type Test } from 'tap';
import { startPostgres } from '../harness/postgres.js';
import { tempDir } from '../harness/token.js';
import type { AuditDraft } from '../src/core/audit/draft.js';
import { entryLeafHash } from '../src/core/audit/leaf.js';
import { MemoryTree } from '../src/core/audit/merkle-memory.js';
import { verifyInclusion } from '../src/core/audit/merkle-verify.js';
import { verifyExport } from '../src/core/audit/verify.js';
import { V1_TABLES } from '../src/infra/store/migrations/migrations.js';
import { POSTGRES_MIGRATIONS } from '../src/infra/store/migrations/postgres.js';
import { SQLITE_MIGRATIONS } from '../src/infra/store/migrations/sqlite.js';
import { PostgresStore } from '../src/infra/store/postgres.js';
import { SqliteStore } from '../src/infra/store/sqlite.js';
import type { KeyRecord } from '../src/infra/store/store.js';
import { Checkpointer } from '../src/signer/audit/checkpointer.js';
import { exportRecords } from '../src/signer/audit/export.js';
import { readChain, type TestStore } from './store.suite.js';

type Value = string | number | null | { hex: string };
interface Fixture {
  auditKey: { keyId: string; version: number; publicKey: string };
  tables: Record<string, Array<Record<string, Value>>>;
}

const dir = new URL('./fixtures/main-3cdd848/', import.meta.url);
const fixture = JSON.parse(readFileSync(new URL('rows.json', dir), 'utf8')) as Fixture;
const ddl = (dialect: 'sqlite' | 'postgres') => readFileSync(new URL(`${dialect}-schema.sql`, dir), 'utf8');
const TABLES = Object.keys(fixture.tables);
const rowsOf = (table: string) => fixture.tables[table]!;
const bytes = (v: Value) => Buffer.from((v as { hex: string }).hex, 'hex');
const param = (v: Value) => (v !== null && typeof v === 'object' ? bytes(v) : v);
const big = (v: Value) => BigInt(v as string);
const hex = (b: Uint8Array | undefined) => (b ? Buffer.from(b).toString('hex') : undefined);

/** The fixture's audit key (make.ts): a test key derived from a public string. */
const AUDIT_SECRET = createHash('sha256').update('hsm-signer test fixture audit key (public, for tests only)').digest();

/** Every row of every table, in insertion order, as the driver reads it. */
const dump = (db: Database.Database) =>
  Object.fromEntries(
    TABLES.map((table) => [table, db.prepare(`SELECT * FROM ${table} ORDER BY rowid`).safeIntegers(true).all()]),
  );

/** Columns later migrations add to version 1's tables (audit.request, requests.attempt). */
const ADDED_COLUMNS: Record<string, string[]> = { audit: ['request'], requests: ['attempt'] };

/** A dump without the added columns, after checking they are NULL in every row that was already there. */
function withoutAdded(t: Test, d: Record<string, unknown[]>): Record<string, unknown[]> {
  const out: Record<string, unknown[]> = {};
  for (const [table, rows] of Object.entries(d)) {
    out[table] = rows.map((r) => {
      const row = { ...(r as Record<string, unknown>) };
      for (const c of ADDED_COLUMNS[table] ?? []) {
        if (row[c] !== null) t.fail(`${table}.${c} of an old row is not NULL`);
        delete row[c];
      }
      return row;
    });
  }
  return out;
}

const tmp = await tempDir('store-migrate-');
t.teardown(() => tmp.cleanup());

t.test('the fixture covers every table of schema version 1, and its audit key is the one above', async (t) => {
  t.equal(Buffer.from(ed25519.getPublicKey(AUDIT_SECRET)).toString('hex'), fixture.auditKey.publicKey);
  t.same(TABLES.sort(), Object.keys(V1_TABLES).sort());
  for (const table of TABLES) t.ok(rowsOf(table).length > 0, `${table} has rows`);
});

/** What main's rows must read as through the store API, for either dialect. */
/** Migration 2 built the Merkle tree of main's log: its head is the one the entries' leaves give. */
async function treeBuilt(t: Test, s: TestStore): Promise<void> {
  const chain = await readChain(s);
  const reference = new MemoryTree();
  reference.append(chain.map(entryLeafHash));
  t.same(
    await s.treeHead(chain.length),
    reference.root(),
    `the tree of main's ${chain.length} entries was built from their content`,
  );
  const last = chain.length;
  const proof = await s.inclusionProof(1, last);
  t.ok(verifyInclusion(0, last, entryLeafHash(chain[0]!), proof, reference.root()), 'and proves their inclusion');
}

async function checkThroughStore(t: Test, s: TestStore): Promise<void> {
  await treeBuilt(t, s);
  const keys = await s.listKeys();
  t.equal(keys.length, rowsOf('keys').length, 'every key version');
  for (const row of rowsOf('keys')) {
    const k = keys.find((x) => x.keyId === row.key_id && x.version === row.version);
    if (!t.ok(k, `key ${row.key_id} v${row.version} is listed`)) continue;
    t.same(
      {
        algorithm: k!.algorithm,
        state: k!.state,
        ckaId: hex(k!.ckaId),
        publicKey: hex(k!.publicKey),
        createdAt: k!.createdAt.getTime(),
        retireAt: k!.retireAt?.getTime() ?? null,
      },
      {
        algorithm: row.algorithm,
        state: row.state,
        ckaId: hex(bytes(row.cka_id!)),
        publicKey: hex(bytes(row.public_key!)),
        createdAt: row.created_at,
        retireAt: row.retire_at,
      },
      `key ${row.key_id} v${row.version} reads as stored`,
    );
    const changed = row.state_changed_at ?? row.created_at;
    t.equal(k!.stateChangedAt.getTime(), changed, 'state change time (creation when never recorded)');
    t.same(k!.threshold, row.threshold === null ? null : JSON.parse(row.threshold as string), 'threshold info');
  }
  const policies = await s.listPolicies();
  t.same(
    policies.map((p) => [p.name, p.version]),
    [
      ['cold', 1],
      ['hot', 2],
    ],
    'the latest version of each policy',
  );
  const history = await s.policyHistory('hot');
  t.same(
    history.map((p) => [p.version, p.document, p.updatedBy, p.updatedAt.getTime()]),
    rowsOf('policies')
      .filter((r) => r.name === 'hot')
      .map((r) => [r.version, r.document, r.updated_by, r.updated_at]),
    'every version of a policy',
  );

  // The replay records, as a reservation sees them (a decide that writes nothing).
  const now = new Date((rowsOf('requests').at(-1)!.created_at as number) + 1000);
  const requests = rowsOf('requests');
  const nonceOf = (requestId: string) => rowsOf('nonces').find((n) => n.request_id === requestId);
  const items = requests.map((r) => {
    const n = nonceOf(r.request_id as string);
    return {
      client: r.client as string,
      requestId: r.request_id as string,
      keyId: r.key_id as string,
      payloadHash: bytes(r.payload_hash!),
      value: 0n,
      ...(n
        ? {
            nonce: {
              account: n.key_id as string,
              chainId: BigInt(n.chain_id as number),
              nonce: BigInt(n.nonce as number),
              intentHash: bytes(n.intent_hash!),
              maxFeePerGas: 1n,
              maxPriorityFeePerGas: 1n,
            },
          }
        : {}),
    };
  });
  const velocity = [
    { scope: 'key' as const, subject: 'hot-1', windowSeconds: 3600 },
    { scope: 'client' as const, subject: 'payment-engine', windowSeconds: 3600 },
  ];
  const view = await s.reserve(
    { items, velocity, batch: { client: 'payment-engine', batchId: 'b-1' }, leaseMs: 1000, now },
    (v) => ({ outcome: v, writes: [] }),
  );
  requests.forEach((r, i) => {
    const v = view.items[i]!;
    t.same(
      [hex(v.request?.payloadHash), v.request?.state, hex(v.request?.result)],
      [hex(bytes(r.payload_hash!)), r.state, r.result === null ? undefined : hex(bytes(r.result!))],
      `request ${r.request_id}`,
    );
    const n = nonceOf(r.request_id as string);
    if (n) {
      const held = v.nonce;
      t.same(
        [held?.requestId, held?.state, hex(held?.intentHash), held?.maxFeePerGas, held?.maxPriorityFeePerGas],
        [n.request_id, n.state, hex(bytes(n.intent_hash!)), big(n.max_fee!), big(n.max_priority_fee!)],
        `nonce ${n.nonce} held by ${n.request_id}`,
      );
      const highest = Math.max(...rowsOf('nonces').map((x) => x.nonce as number));
      t.equal(v.nextNonce, BigInt(highest + 1), 'next nonce of the account');
    }
  });
  const usage = (scope: string, subject: string) => {
    const rows = rowsOf('velocity').filter((r) => r.scope === scope && r.subject === subject);
    const count = rows.reduce((a, r) => a + (r.count as number), 0);
    return { count, value: rows.reduce((a, r) => a + BigInt(r.value as string), 0n) };
  };
  const expected = [usage('key', 'hot-1'), usage('client', 'payment-engine')];
  t.same(view.velocity, expected, 'velocity sums, wei past 2^64 exact');
  t.equal(hex(view.batch?.itemsHash), hex(bytes(rowsOf('batches')[0]!.items_hash!)), 'the batch record');

  // The audit log: every entry and checkpoint, and an export of it that verifies offline.
  const entries = await readChain(s);
  t.same(
    entries.map((e) => [e.seq, e.kind, e.prevHash, e.hash]),
    rowsOf('audit').map((r) => [r.seq, r.kind, r.prev_hash, r.hash]),
    'every audit entry, with its stored chain fields',
  );
  t.same(await s.auditHead(), { seq: entries.at(-1)!.seq, hash: entries.at(-1)!.hash }, 'the head');
  t.same(
    (await s.checkpoints(1, Number.MAX_SAFE_INTEGER)).map((c) => [c.seq, c.headHash, c.signature]),
    rowsOf('audit_checkpoints').map((r) => [r.seq, r.head_hash, r.signature]),
    'every checkpoint',
  );
  await verifies(t, s, 'the audit chain made by main verifies');
}

/** Exports the whole log through the signer's export path and verifies it offline. */
async function verifies(t: Test, s: TestStore, what: string, expected?: { entries: number }): Promise<void> {
  const key = { ...fixture.auditKey, publicKey: Buffer.from(fixture.auditKey.publicKey, 'hex') };
  // The fixture's checkpoints cover main's head; an export of a longer log ends with one more.
  const sign = async (message: Uint8Array) => ed25519.sign(message, AUDIT_SECRET);
  const checkpointer = new Checkpointer(s, key, sign, {
    everyEntries: 1000,
    everyMs: 60_000,
    origin: 'test.example/log',
  });
  const lines: string[] = [];
  for await (const r of exportRecords(s, checkpointer, [key], { from: null, to: null })) lines.push(JSON.stringify(r));
  const report = await verifyExport(
    (async function* () {
      yield* lines;
    })(),
  );
  t.ok(report.ok, `${what}: ${JSON.stringify(report)}`);
  if (report.ok) t.equal(report.entries, expected?.entries ?? rowsOf('audit').length, 'every entry verified');
}

/** After the upgrade the store writes on: a change and its entry chain onto main's head. */
async function continuesChain(t: Test, s: TestStore): Promise<void> {
  const head = (await s.auditHead())!;
  const at = new Date(Date.UTC(2026, 1, 1));
  const k: KeyRecord = {
    keyId: 'new-1',
    version: 1,
    algorithm: 'ed25519',
    ckaId: Buffer.alloc(16, 7),
    publicKey: Buffer.alloc(32, 8),
    state: 'active',
    createdAt: at,
    stateChangedAt: at,
    retireAt: null,
  };
  const draft: AuditDraft = {
    kind: 'key.create',
    at,
    client: 'security-admin',
    keyId: 'new-1',
    keyVersion: 1,
    requestId: null,
    payloadHash: null,
    intent: { algorithm: 'ed25519' },
    decision: 'done',
    reason: null,
    signatureHash: null,
  };
  await s.insertKey(k, [draft]);
  const entries = await readChain(s);
  const last = entries.at(-1)!;
  t.same([last.seq, last.prevHash], [head.seq + 1, head.hash], "the next entry links to main's head");
  t.equal((await s.listKeys()).length, rowsOf('keys').length + 1);
  await verifies(t, s, "main's chain with the new entry verifies", { entries: rowsOf('audit').length + 1 });
}

t.test('sqlite: a database made by main is adopted as version 1 with nothing lost', async (t) => {
  const path = `${tmp.path}/main.db`;
  const db = new Database(path);
  db.exec(ddl('sqlite'));
  for (const table of TABLES) {
    for (const row of rowsOf(table)) {
      const cols = Object.keys(row);
      const insert = db.prepare(`INSERT INTO ${table} (${cols.join(', ')}) VALUES (${cols.map(() => '?').join(', ')})`);
      insert.run(...cols.map((c) => param(row[c]!)));
    }
  }
  const before = dump(db);
  db.close();

  const s = new SqliteStore(path);
  const raw = new Database(path, { readonly: true });
  t.teardown(() => raw.close());
  const versions = raw.prepare('SELECT version, name FROM schema_version').all();
  t.same(
    versions,
    SQLITE_MIGRATIONS.map((m) => ({ version: m.version, name: m.name })),
    'adopted as version 1, then every later one',
  );
  t.same(versions.slice(0, 2), [
    { version: 1, name: 'initial' },
    { version: 2, name: 'audit merkle tree' },
  ]);
  t.same(withoutAdded(t, dump(raw)), before, 'every row of every table, byte for byte');
  await checkThroughStore(t, s);
  await continuesChain(t, s);
  await s.close();

  const again = new SqliteStore(path);
  t.teardown(() => again.close());
  t.same(
    raw.prepare('SELECT version FROM schema_version').all(),
    SQLITE_MIGRATIONS.map((m) => ({ version: m.version })),
    'reopening migrates nothing',
  );
  t.equal((await readChain(again)).length, rowsOf('audit').length + 1);
});

t.test('sqlite: a database of a release before the last key columns gains them', async (t) => {
  const path = `${tmp.path}/older.db`;
  const db = new Database(path);
  // main's DDL without the three columns its ALTERs used to add.
  db.exec(ddl('sqlite').replace(/\n\s*state_changed_at INTEGER,\n\s*retire_at\s+INTEGER,\n\s*threshold\s+TEXT,/, ''));
  const columns = (db.prepare('PRAGMA table_info(keys)').all() as Array<{ name: string }>).map((c) => c.name);
  t.notOk(columns.includes('threshold'), 'the old shape');
  db.prepare(
    `INSERT INTO keys (key_id, version, algorithm, cka_id, public_key, state, created_at)
     VALUES ('k', 1, 'ed25519', ?, ?, 'active', 5)`,
  ).run(Buffer.alloc(16, 1), Buffer.alloc(32, 2));
  db.close();
  const s = new SqliteStore(path);
  t.teardown(() => s.close());
  const [k] = await s.listKeys();
  const read = [k!.keyId, k!.stateChangedAt.getTime(), k!.retireAt, k!.threshold];
  t.same(read, ['k', 5, null, null], 'its rows read with the new columns empty');
});

t.test('sqlite: a database of another shape or a newer version is not opened', async (t) => {
  const foreign = `${tmp.path}/foreign.db`;
  const db = new Database(foreign);
  db.exec('CREATE TABLE audit (seq INTEGER PRIMARY KEY, note TEXT)');
  db.close();
  const shape = /another shape than schema version 1 \(missing audit\.at, audit\.at_ms,/;
  t.throws(() => new SqliteStore(foreign), shape, 'a same-named table of another shape');
  const check = new Database(foreign, { readonly: true });
  const created = check.prepare("SELECT 1 FROM sqlite_schema WHERE name IN ('keys', 'schema_version')").get();
  t.notOk(created, 'and nothing was created');
  check.close();

  const newer = `${tmp.path}/newer.db`;
  new SqliteStore(newer).close();
  const n = new Database(newer);
  const future = SQLITE_MIGRATIONS.length + 1;
  n.prepare("INSERT INTO schema_version (version, name, applied_at) VALUES (?, 'from the future', 0)").run(future);
  n.close();
  const why = new RegExp(`schema is at version ${future}, newer than this build's ${future - 1}`);
  t.throws(() => new SqliteStore(newer), why);
});

t.test('postgres', async (t) => {
  const server = await startPostgres();
  const admin = new pg.Client({ connectionString: server.url });
  await admin.connect();
  t.teardown(async () => {
    await admin.end();
    await server.stop();
  });
  const urlFor = (schema: string) => {
    const url = new URL(server.url);
    url.searchParams.set('options', `-c search_path=${schema}`);
    return url.toString();
  };
  const dump = async (schema: string) => {
    const out: Record<string, unknown[]> = {};
    for (const table of TABLES) out[table] = (await admin.query(`SELECT * FROM ${schema}.${table} ORDER BY ctid`)).rows;
    return out;
  };

  t.test('a database made by main is adopted as version 1 with nothing lost', async (t) => {
    await admin.query('CREATE SCHEMA main_db');
    await admin.query('SET search_path = main_db');
    await admin.query(ddl('postgres'));
    for (const table of TABLES) {
      for (const row of rowsOf(table)) {
        const cols = Object.keys(row);
        const params = cols.map((_, i) => `$${i + 1}`).join(', ');
        const values = cols.map((c) => param(row[c]!));
        await admin.query(`INSERT INTO ${table} (${cols.join(', ')}) VALUES (${params})`, values);
      }
    }
    await admin.query('RESET search_path');
    const before = await dump('main_db');
    const s = await PostgresStore.open(urlFor('main_db'));
    const versions = (await admin.query('SELECT version, name FROM main_db.schema_version')).rows;
    t.same(
      versions,
      POSTGRES_MIGRATIONS.map((m) => ({ version: m.version, name: m.name })),
      'adopted as version 1, then every later one',
    );
    t.same(versions.slice(0, 2), [
      { version: 1, name: 'initial' },
      { version: 2, name: 'audit merkle tree' },
    ]);
    t.same(withoutAdded(t, await dump('main_db')), before, 'every row of every table, byte for byte');
    await checkThroughStore(t, s);
    await continuesChain(t, s);
    await s.close();
    const again = await PostgresStore.open(urlFor('main_db'));
    t.teardown(() => again.close());
    const after = (await admin.query('SELECT version FROM main_db.schema_version')).rows;
    t.same(
      after,
      POSTGRES_MIGRATIONS.map((m) => ({ version: m.version })),
      'reopening migrates nothing',
    );
    t.equal((await readChain(again)).length, rowsOf('audit').length + 1);
  });

  t.test('a newer schema version is not opened', async (t) => {
    await admin.query('CREATE SCHEMA newer_db');
    await (await PostgresStore.open(urlFor('newer_db'))).close();
    const future = POSTGRES_MIGRATIONS.length + 1;
    await admin.query("INSERT INTO newer_db.schema_version (version, name, applied_at) VALUES ($1, 'future', 0)", [
      future,
    ]);
    const why = new RegExp(`schema is at version ${future}, newer than this build's ${future - 1}`);
    await t.rejects(PostgresStore.open(urlFor('newer_db')), why);
  });
});
