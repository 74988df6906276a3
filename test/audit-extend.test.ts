import { bytesToHex, utf8ToBytes } from '@noble/hashes/utils.js';
import t from 'tap';
import { entry } from '../harness/audit-export.js';
import { type AuditEntry, GENESIS } from '../src/core/audit/chain.js';
import { extendChecked } from '../src/core/audit/extend.js';
import { entryBytes, entryLeafHash } from '../src/core/audit/leaf.js';
import { EMPTY_FRONTIER, frontierNodes, leafHash, treeHead } from '../src/core/audit/merkle.js';
import { MemoryTree } from '../src/core/audit/merkle-memory.js';

/** n chained entries, as the store would hold them. */
function log(n: number): AuditEntry[] {
  const out: AuditEntry[] = [];
  let prev = GENESIS;
  for (let seq = 1; seq <= n; seq++) {
    const { type: _type, ...e } = entry(seq, prev);
    out.push(e);
    prev = e.hash;
  }
  return out;
}

/** The tree a store would have written for these entries. */
function treeOf(entries: readonly AuditEntry[]): MemoryTree {
  const tree = new MemoryTree();
  tree.append(entries.map(entryLeafHash));
  return tree;
}

t.test('leaf bytes: canonical JSON of every field but hash, in a fixed order', async (t) => {
  const [e] = log(1);
  const text = new TextDecoder().decode(entryBytes(e!));
  t.equal(text.startsWith('{"at":"'), true, 'keys sorted');
  t.notOk(text.includes('"hash"'), 'hash is derived, not leaf data');
  t.ok(text.includes(`"prevHash":"${GENESIS}"`), 'the chain link is leaf data');
  t.same(entryBytes({ ...e!, type: 'entry' } as AuditEntry), entryBytes(e!), 'an export record gives the same bytes');
  t.same(entryLeafHash(e!), leafHash(utf8ToBytes(text)), 'leaf hash is RFC 9162 over those bytes');
  t.throws(() => entryBytes({ ...e!, extra: 1 } as unknown as AuditEntry), /unknown field/);
  const { client: _c, ...missing } = e!;
  t.throws(() => entryBytes(missing as AuditEntry), /missing field "client"/);
  t.not(bytesToHex(entryLeafHash({ ...e!, client: 'other' })), bytesToHex(entryLeafHash(e!)), 'every field counts');
});

t.test('extendChecked: a table of (signed tree, log now, verdict)', async (t) => {
  const entries = log(40);
  const signedAt = (n: number) => treeOf(entries.slice(0, n)).frontier;
  const rewritten = entries.map((e) => (e.seq === 5 ? { ...e, client: 'mallory' } : e));
  const cases: {
    name: string;
    signed: number;
    now: AuditEntry[];
    size?: number;
    nodesOf?: AuditEntry[];
    ok: boolean;
    why?: string;
    range?: { from: number; to: number };
  }[] = [
    { name: 'appends only', signed: 13, now: entries, ok: true },
    { name: 'from the empty tree', signed: 0, now: entries, ok: true },
    { name: 'no new entries', signed: 40, now: entries, ok: true },
    { name: 'tail cut', signed: 40, now: entries.slice(0, 30), ok: false, why: 'shrunk', range: { from: 31, to: 40 } },
    {
      name: 'history rewritten, nodes recomputed',
      signed: 13,
      now: rewritten,
      nodesOf: rewritten,
      ok: false,
      why: 'root-mismatch',
      range: { from: 1, to: 8 },
    },
    {
      name: 'new entry rewritten after its nodes',
      signed: 13,
      now: rewritten.map((e) => (e.seq === 20 ? { ...e, client: 'x' } : e)),
      nodesOf: entries,
      ok: false,
      why: 'root-mismatch',
      range: { from: 14, to: 40 },
    },
    {
      name: 'a gap in the new entries',
      signed: 13,
      now: entries.filter((e) => e.seq !== 20),
      size: 40,
      ok: false,
      why: 'gap',
    },
  ];
  for (const c of cases) {
    const signed = c.signed === 0 ? EMPTY_FRONTIER : signedAt(c.signed);
    const size = c.size ?? c.now.length;
    const stored = treeOf(c.nodesOf ?? c.now);
    const root = size <= stored.size ? await treeHead(stored, size) : stored.root();
    const newEntries = c.now.filter((e) => e.seq > c.signed && e.seq <= size);
    const storedFrontier =
      c.signed > 0 && c.signed <= stored.size ? await stored.readNodes(frontierNodes(c.signed)) : undefined;
    const r = extendChecked(signed, size, newEntries, root, storedFrontier);
    t.equal(r.ok, c.ok, `${c.name}: ${c.ok ? 'extends' : 'refused'}`);
    if (!r.ok) {
      t.equal(r.why, c.why, `${c.name}: ${c.why}`);
      if (c.range) t.same(r.range, c.range, `${c.name}: names entries ${c.range.from}..${c.range.to}`);
    } else {
      t.same(r.root, root, `${c.name}: the new head is the database's`);
    }
  }
});
