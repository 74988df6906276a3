import { bytesToHex } from '@noble/hashes/utils.js';
import t from 'tap';
import {
  appendLeaves,
  consistencyProof,
  EMPTY_FRONTIER,
  EMPTY_ROOT,
  frontierRoot,
  inclusionProof,
  leafHash,
  type NodeId,
  type NodeReader,
  nodeHash,
  treeHead,
} from '../src/core/audit/merkle.js';
import { MemoryTree } from '../src/core/audit/merkle-memory.js';
import { verifyConsistency, verifyInclusion } from '../src/core/audit/merkle-verify.js';

// A naive reference written straight from RFC 9162 section 2.1 (recursive MTH, PATH, PROOF over
// an array of leaf hashes), independent of the node-store code under test. MTH is memoised per
// range so that the cross-checks below stay fast; the recursion is the RFC's.
class Reference {
  private readonly memo = new Map<string, Uint8Array>();
  constructor(private readonly leaves: readonly Uint8Array[]) {}

  mth(lo: number, hi: number): Uint8Array {
    if (hi - lo === 0) return EMPTY_ROOT;
    if (hi - lo === 1) return this.leaves[lo]!;
    const key = `${lo}:${hi}`;
    let h = this.memo.get(key);
    if (!h) {
      const k = largestPowerBelow(hi - lo);
      h = nodeHash(this.mth(lo, lo + k), this.mth(lo + k, hi));
      this.memo.set(key, h);
    }
    return h;
  }

  path(m: number, lo: number, hi: number): Uint8Array[] {
    if (hi - lo <= 1) return [];
    const k = largestPowerBelow(hi - lo);
    return m < k
      ? [...this.path(m, lo, lo + k), this.mth(lo + k, hi)]
      : [...this.path(m - k, lo + k, hi), this.mth(lo, lo + k)];
  }

  proof(m: number, n: number): Uint8Array[] {
    return this.subproof(m, 0, n, true);
  }

  private subproof(m: number, lo: number, hi: number, b: boolean): Uint8Array[] {
    const n = hi - lo;
    if (m === n) return b ? [] : [this.mth(lo, hi)];
    const k = largestPowerBelow(n);
    return m <= k
      ? [...this.subproof(m, lo, lo + k, b), this.mth(lo + k, hi)]
      : [...this.subproof(m - k, lo + k, hi, false), this.mth(lo, lo + k)];
  }
}

function largestPowerBelow(n: number): number {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

/** A seeded xorshift PRNG: the cross-checks are random but reproducible from the printed seed. */
function prng(seed: number): (n: number) => number {
  let s = seed >>> 0 || 1;
  return (n) => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) % n;
  };
}

const hex = (hs: readonly Uint8Array[]) => hs.map(bytesToHex);
const flip = (h: Uint8Array, bit: number) => {
  const c = Uint8Array.from(h);
  c[bit >> 3]! ^= 1 << (bit & 7);
  return c;
};

const SEED = Number(process.env.MERKLE_SEED ?? Date.now() % 2 ** 31);
const MAX = 300;
const EXHAUSTIVE = 64;

t.test(`generation vs verification vs the naive reference, sizes 1..${MAX} (seed ${SEED})`, async (t) => {
  const rand = prng(SEED);
  // Distinct entries of random lengths (two equal leaves would make "another leaf" verify).
  const leaves = Array.from({ length: MAX }, (_, i) => {
    const bytes = Array.from({ length: rand(40) }, () => rand(256));
    return leafHash(Uint8Array.from([...Buffer.from(`${i}:`), ...bytes]));
  });
  const ref = new Reference(leaves);
  const tree = new MemoryTree();
  let failures = 0;
  const check = (ok: boolean, what: string) => {
    if (!ok) {
      failures++;
      if (failures < 20) t.fail(what);
    }
  };
  let proofs = 0;
  while (tree.size < MAX) {
    // Random batch sizes, so that appends cross subtree boundaries in every way.
    tree.append(leaves.slice(tree.size, Math.min(MAX, tree.size + 1 + rand(9))));
  }
  // Every index and every old size up to EXHAUSTIVE leaves; above, the edges and random ones.
  const picks = (n: number, from: number) =>
    n <= EXHAUSTIVE
      ? Array.from({ length: n }, (_, i) => i + from)
      : [...new Set([from, from + 1, n - 2 + from, n - 1 + from, ...Array.from({ length: 8 }, () => from + rand(n))])];
  for (let n = 1; n <= MAX; n++) {
    const root = await treeHead(tree, n);
    check(bytesToHex(root) === bytesToHex(ref.mth(0, n)), `root of size ${n}`);
    for (const i of picks(n, 0)) {
      const proof = await inclusionProof(tree, i, n);
      proofs++;
      check(hex(proof).join() === hex(ref.path(i, 0, n)).join(), `inclusion proof of ${i} in ${n}`);
      check(verifyInclusion(i, n, leaves[i]!, proof, root), `inclusion proof of ${i} in ${n} verifies`);
      // Tampering that must fail: a flipped bit, a component removed or added, another leaf.
      if (proof.length > 0) {
        const j = rand(proof.length);
        const bad = proof.map((p, x) => (x === j ? flip(p, rand(256)) : p));
        check(!verifyInclusion(i, n, leaves[i]!, bad, root), `flipped bit in inclusion proof ${i}/${n}`);
        check(!verifyInclusion(i, n, leaves[i]!, proof.slice(0, -1), root), `truncated inclusion proof ${i}/${n}`);
      }
      check(!verifyInclusion(i, n, leaves[i]!, [...proof, root], root), `extended inclusion proof ${i}/${n}`);
      if (n > 1) check(!verifyInclusion(i, n, leaves[(i + 1) % n]!, proof, root), `another leaf at ${i}/${n}`);
      if ((i ^ 1) < n) check(!verifyInclusion(i ^ 1, n, leaves[i]!, proof, root), `wrong index ${i ^ 1}/${n}`);
    }
    for (const m of picks(n, 1)) {
      const proof = await consistencyProof(tree, m, n);
      proofs++;
      const root1 = ref.mth(0, m);
      check(hex(proof).join() === hex(ref.proof(m, n)).join(), `consistency proof ${m} -> ${n}`);
      check(verifyConsistency(m, n, proof, root1, root), `consistency proof ${m} -> ${n} verifies`);
      if (proof.length > 0) {
        const j = rand(proof.length);
        const bad = proof.map((p, x) => (x === j ? flip(p, rand(256)) : p));
        check(!verifyConsistency(m, n, bad, root1, root), `flipped bit in consistency proof ${m} -> ${n}`);
        check(!verifyConsistency(m, n, proof.slice(0, -1), root1, root), `truncated consistency proof ${m} -> ${n}`);
        check(!verifyConsistency(m, n, proof, root, root1), `swapped roots ${m} -> ${n}`);
      }
      check(!verifyConsistency(m, n, [...proof, root], root1, root), `extended consistency proof ${m} -> ${n}`);
      check(!verifyConsistency(m, n, proof, flip(root1, rand(256)), root), `another old root ${m} -> ${n}`);
    }
  }
  t.equal(failures, 0, `${proofs} proofs generated and checked, tampered copies refused`);
});

t.test('appendLeaves stores exactly the perfect subtrees, whatever the batches', async (t) => {
  const rand = prng(SEED + 1);
  const n = 1000;
  const leaves = Array.from({ length: n }, (_, i) => leafHash(Uint8Array.of(i & 0xff, i >> 8)));
  const ref = new Reference(leaves);
  let frontier = EMPTY_FRONTIER;
  const stored = new Map<string, string>();
  while (frontier.size < n) {
    const batch = leaves.slice(frontier.size, frontier.size + rand(70));
    const out = appendLeaves(frontier, batch);
    for (const node of out.nodes) {
      t.notOk(stored.has(`${node.level}/${node.index}`), `node ${node.level}/${node.index} written once`);
      stored.set(`${node.level}/${node.index}`, bytesToHex(node.hash));
    }
    frontier = out.frontier;
    t.equal(bytesToHex(frontierRoot(frontier)), bytesToHex(ref.mth(0, frontier.size)), `head at ${frontier.size}`);
  }
  let perfect = 0;
  let mismatched = 0;
  for (let level = 0; 2 ** level <= n; level++) {
    for (let index = 0; (index + 1) * 2 ** level <= n; index++) {
      perfect++;
      const want = bytesToHex(ref.mth(index * 2 ** level, (index + 1) * 2 ** level));
      if (stored.get(`${level}/${index}`) !== want) mismatched++;
    }
  }
  const perLeaf = (perfect / n).toFixed(3);
  t.equal(stored.size, perfect, `${perfect} perfect subtrees in ${n} leaves, each stored (${perLeaf} per leaf)`);
  t.equal(mismatched, 0, 'every stored node is its subtree hash');
  t.equal(bytesToHex(frontierRoot(EMPTY_FRONTIER)), bytesToHex(EMPTY_ROOT), 'the empty tree');
});

/**
 * A consistent tree of any size without storing it: leaf i is leaf (i mod 16) of a fixed block,
 * so every node at level >= 4 has the same hash and lower ones depend on their offset in the block.
 */
class PeriodicTree implements NodeReader {
  readonly ids: NodeId[][] = [];
  private readonly ref: Reference;
  private readonly high: Uint8Array[] = [];
  constructor() {
    this.ref = new Reference(Array.from({ length: 16 }, (_, i) => leafHash(Uint8Array.of(i))));
    this.high[4] = this.ref.mth(0, 16);
    for (let l = 5; l <= 53; l++) this.high[l] = nodeHash(this.high[l - 1]!, this.high[l - 1]!);
  }
  leaf(i: number): Uint8Array {
    return this.ref.mth(i % 16, (i % 16) + 1);
  }
  async readNodes(ids: readonly NodeId[]): Promise<readonly Uint8Array[]> {
    this.ids.push([...ids]);
    return ids.map(({ level, index }) => {
      if (level >= 4) return this.high[level]!;
      const start = (index * 2 ** level) % 16;
      return this.ref.mth(start, start + 2 ** level);
    });
  }
}

t.test('a head or a proof is one read of O(log n) nodes, up to 2^53 - 1 leaves', async (t) => {
  for (const n of [1_000_000, 2 ** 32 + 7, 2 ** 40 + 12_345, Number.MAX_SAFE_INTEGER]) {
    const tree = new PeriodicTree();
    const bound = 2 * Math.ceil(Math.log2(n)) + 1;
    const root = await treeHead(tree, n);
    for (const i of [0, 1, Math.floor(n / 3), n - 2, n - 1]) {
      const proof = await inclusionProof(tree, i, n);
      t.ok(verifyInclusion(i, n, tree.leaf(i), proof, root), `inclusion of ${i} in ${n} verifies`);
    }
    for (const m of [1, 2, 3, Math.floor(n / 2) + 1, n - 1, n]) {
      const proof = await consistencyProof(tree, m, n);
      t.ok(verifyConsistency(m, n, proof, await treeHead(tree, m), root), `consistency ${m} -> ${n} verifies`);
    }
    const widest = Math.max(...tree.ids.map((r) => r.length));
    t.ok(widest <= bound, `size ${n}: at most ${widest} nodes per read (bound ${bound})`);
    // The root, 5 inclusion proofs, 6 old heads, 5 consistency proofs (m = n needs no node).
    t.equal(tree.ids.length, 1 + 5 + 6 + 5, 'one read per head and per proof');
  }
});

t.test('proof generation refuses what does not exist', async (t) => {
  const tree = new MemoryTree();
  tree.append([leafHash(Uint8Array.of(1)), leafHash(Uint8Array.of(2)), leafHash(Uint8Array.of(3))]);
  const cases: [string, () => Promise<unknown>][] = [
    ['index = size', () => inclusionProof(tree, 3, 3)],
    ['negative index', () => inclusionProof(tree, -1, 3)],
    ['fractional size', () => inclusionProof(tree, 0, 2.5)],
    ['size1 = 0', () => consistencyProof(tree, 0, 3)],
    ['size1 > size2', () => consistencyProof(tree, 3, 2)],
    ['size above 2^53', () => treeHead(tree, 2 ** 53)],
  ];
  for (const [what, run] of cases) {
    await t.rejects(run(), { name: 'SignerError', reason: 'REQUEST_INVALID' }, what);
  }
  const beyond = 'a size beyond the store: the missing node is an error, not a guess';
  await t.rejects(treeHead(tree, 4), /no node 2\/0/, beyond);
  t.equal(bytesToHex(await treeHead(tree, 0)), bytesToHex(EMPTY_ROOT), 'size 0 is the empty root, no read');
  t.same(await consistencyProof(tree, 3, 3), [], 'equal sizes: the empty proof');
  t.throws(() => appendLeaves(EMPTY_FRONTIER, [new Uint8Array(31)]), /32-byte/, 'a leaf hash is 32 bytes');
  t.throws(() => appendLeaves({ size: 3, hashes: [] }, []), /frontier/, 'a frontier must match its size');
  const lying: NodeReader = { readNodes: async (ids) => ids.slice(1).map(() => new Uint8Array(32)) };
  await t.rejects(treeHead(lying, 3), /returned 1 nodes for 2/, 'a store that answers short is refused');
});
