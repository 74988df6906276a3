import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { bytesToHex, hexToBytes } from '@noble/hashes/utils.js';
import t from 'tap';
import { consistencyProof, inclusionProof, leafHash, treeHead } from '../src/core/audit/merkle.js';
import { MemoryTree } from '../src/core/audit/merkle-memory.js';
import { verifyConsistency, verifyInclusion } from '../src/core/audit/merkle-verify.js';

// transparency-dev/merkle testdata (test/vectors/rfc6962/README.md): every case, valid and mutated.
const root = fileURLToPath(new URL('./vectors/rfc6962/', import.meta.url));

interface InclusionCase {
  leafIdx: number;
  treeSize: number;
  root: string;
  leafHash: string;
  proof: string[] | null;
  desc: string;
  wantErr: boolean;
}

interface ConsistencyCase {
  size1: number;
  size2: number;
  root1: string;
  root2: string;
  proof: string[] | null;
  desc: string;
  wantErr: boolean;
}

function files(dir: string): string[] {
  return readdirSync(dir)
    .sort()
    .flatMap((name) => {
      const p = join(dir, name);
      return statSync(p).isDirectory() ? files(p) : p.endsWith('.json') ? [p] : [];
    });
}

const b64 = (s: string) => new Uint8Array(Buffer.from(s, 'base64'));
const proofOf = (p: string[] | null) => (p ?? []).map(b64);
const rel = (p: string) => p.slice(root.length);

// The classic 8-leaf tree the happy paths are built on (test/vectors/rfc6962/README.md).
const LEAVES = ['', '00', '10', '2021', '3031', '40414243', '5051525354555657', '606162636465666768696a6b6c6d6e6f'];
const classic = new MemoryTree();
classic.append(LEAVES.map((h) => leafHash(hexToBytes(h))));

t.test('the classic 8-leaf tree has the published root', async (t) => {
  t.equal(bytesToHex(classic.root()), '5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328');
  t.equal(bytesToHex(await treeHead(classic, 8)), bytesToHex(classic.root()), 'from stored nodes as from the frontier');
});

const inclusionFiles = files(join(root, 'inclusion'));
const consistencyFiles = files(join(root, 'consistency'));

t.test('inclusion vectors: valid proofs verify, every wantErr case is refused', async (t) => {
  t.equal(inclusionFiles.length, 98, 'all 98 inclusion cases of the vendored set');
  let valid = 0;
  for (const f of inclusionFiles) {
    const c = JSON.parse(readFileSync(f, 'utf8')) as InclusionCase;
    const ok = verifyInclusion(c.leafIdx, c.treeSize, b64(c.leafHash), proofOf(c.proof), b64(c.root));
    t.equal(ok, !c.wantErr, `${rel(f)}: ${c.desc}`);
    if (!c.wantErr) valid++;
  }
  t.equal(valid, 6, 'six valid inclusion cases');
});

t.test('consistency vectors: valid proofs verify, every wantErr case is refused', async (t) => {
  t.equal(consistencyFiles.length, 98, 'all 98 consistency cases of the vendored set');
  let valid = 0;
  for (const f of consistencyFiles) {
    const c = JSON.parse(readFileSync(f, 'utf8')) as ConsistencyCase;
    const ok = verifyConsistency(c.size1, c.size2, proofOf(c.proof), b64(c.root1), b64(c.root2));
    t.equal(ok, !c.wantErr, `${rel(f)}: ${c.desc}`);
    if (!c.wantErr) valid++;
  }
  t.equal(valid, 6, 'six valid consistency cases');
});

t.test('the generator reproduces every valid inclusion proof byte for byte', async (t) => {
  for (const f of inclusionFiles) {
    const c = JSON.parse(readFileSync(f, 'utf8')) as InclusionCase;
    if (c.wantErr) continue;
    // The happy paths are over the classic tree; the single-entry case over a one-leaf tree
    // whose leaf hash the case gives.
    const onClassic = bytesToHex(b64(c.leafHash)) === bytesToHex(leafHash(hexToBytes(LEAVES[c.leafIdx]!)));
    const tree = onClassic ? classic : new MemoryTree();
    if (!onClassic) {
      t.equal(c.treeSize, 1, `${rel(f)}: a case off the classic tree is a one-leaf tree`);
      tree.append([b64(c.leafHash)]);
    }
    const proof = await inclusionProof(tree, c.leafIdx, c.treeSize);
    t.same(proof.map(bytesToHex), proofOf(c.proof).map(bytesToHex), `${rel(f)}: proof`);
    t.equal(bytesToHex(await treeHead(tree, c.treeSize)), bytesToHex(b64(c.root)), `${rel(f)}: root`);
  }
});

t.test('the generator reproduces every valid consistency proof byte for byte', async (t) => {
  for (const f of consistencyFiles) {
    const c = JSON.parse(readFileSync(f, 'utf8')) as ConsistencyCase;
    if (c.wantErr) continue;
    const proof = await consistencyProof(classic, c.size1, c.size2);
    t.same(proof.map(bytesToHex), proofOf(c.proof).map(bytesToHex), `${rel(f)}: proof`);
    if (b64(c.root1).length !== 32) continue; // the "sizes equal, roots equal" case uses stand-in roots
    t.equal(bytesToHex(await treeHead(classic, c.size1)), bytesToHex(b64(c.root1)), `${rel(f)}: root1`);
    t.equal(bytesToHex(await treeHead(classic, c.size2)), bytesToHex(b64(c.root2)), `${rel(f)}: root2`);
  }
});
