import t from 'tap';
import { consistencyProof, leafHash } from '../src/core/audit/merkle.js';
import { MemoryTree } from '../src/core/audit/merkle-memory.js';
import { checkAddCheckpoint } from '../src/core/audit/witness-check.js';

const tree = (entries: string[]) => {
  const m = new MemoryTree();
  m.append(entries.map((e) => leafHash(new TextEncoder().encode(e))));
  return m;
};
const log = Array.from({ length: 20 }, (_, i) => `entry ${i}`);
const t7 = tree(log.slice(0, 7));
const t20 = tree(log);
const forked = tree([...log.slice(0, 3), 'forged', ...log.slice(4)]);
const cp = (m: MemoryTree) => ({ origin: 'o', size: m.size, root: m.root() });
const head = (m: MemoryTree) => ({ size: m.size, root: m.root() });

t.test('the first checkpoint of an origin: old size 0 and no proof', async (t) => {
  t.same(checkAddCheckpoint(undefined, 0, [], cp(t7)), { ok: true });
  t.match(checkAddCheckpoint(undefined, 3, [], cp(t7)), { ok: false, kind: 'conflict', latestSize: 0 });
  t.match(checkAddCheckpoint(undefined, 0, [new Uint8Array(32)], cp(t7)), { ok: false, kind: 'bad-request' });
});

t.test('an extension with a valid proof from the recorded size is accepted', async (t) => {
  const proof = await consistencyProof(t20, 7, 20);
  t.same(checkAddCheckpoint(head(t7), 7, proof, cp(t20)), { ok: true });
  t.same(checkAddCheckpoint(head(t20), 20, [], cp(t20)), { ok: true }, 'the same head again');
});

t.test('a fork, a rollback, a stale requester and a bad request are told apart', async (t) => {
  const forkProof = await consistencyProof(forked, 7, 20);
  t.match(checkAddCheckpoint(head(t7), 7, forkProof, cp(forked)), { ok: false, kind: 'fork', latestSize: 7 });
  t.match(checkAddCheckpoint(head(t20), 20, [], cp(forked)), { ok: false, kind: 'fork' }, 'same size, other root');
  const honestProof = await consistencyProof(t20, 7, 20);
  t.match(
    checkAddCheckpoint(head(t7), 7, honestProof, cp(forked)),
    { ok: false, kind: 'fork' },
    "another tree's proof",
  );
  t.match(checkAddCheckpoint(head(t20), 20, [], cp(t7)), { ok: false, kind: 'rollback', latestSize: 20 });
  t.match(
    checkAddCheckpoint(head(t20), 3, [], cp(t7)),
    { ok: false, kind: 'rollback' },
    'whatever old size is claimed',
  );
  t.match(checkAddCheckpoint(head(t7), 5, honestProof, cp(t20)), { ok: false, kind: 'conflict', latestSize: 7 });
  t.match(checkAddCheckpoint(head(t7), 21, [], cp(t20)), { ok: false, kind: 'bad-request' });
  t.match(checkAddCheckpoint(head(t7), -1, [], cp(t20)), { ok: false, kind: 'bad-request' });
  t.match(checkAddCheckpoint(head(t7), 7, [], cp(t20)), { ok: false, kind: 'fork' }, 'no proof at all');
});
