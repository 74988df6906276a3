import { randomBytes } from 'node:crypto';
import pkcs11js from 'pkcs11js';
import t from 'tap';
import { makeToken, tempDir } from '../harness/token.js';
import type { TreeHead } from '../src/core/audit/rollback.js';
import { Hsm } from '../src/infra/hsm/hsm.js';
import { HsmMark, markLabel } from '../src/infra/hsm/mark.js';

// The mark on a real SoftHSM token, written by its worker thread (src/infra/hsm/mark-writer.ts)
// and read back through the signer's own sessions and through a separate process.
const tmp = await tempDir('mark-hsm-');
const token = await makeToken(tmp.path);
Object.assign(process.env, token.env);
const hsm = await Hsm.open({ uri: token.uri, sessions: 1, recoveryIntervalMs: 100 });
const mark = await HsmMark.open(hsm, 'r1');
const slot = await hsm.withSession('hot', (s) => hsm.p11.C_GetSessionInfo(s).slotID);
t.teardown(async () => {
  await mark.close();
  await hsm.close();
  await tmp.cleanup();
});

const at = (size: number): TreeHead => ({ size, root: new Uint8Array(randomBytes(32)) });
const same = (a: TreeHead | undefined, b: TreeHead) =>
  a?.size === b.size && Buffer.from(a.root).equals(Buffer.from(b.root));

/** The mark as another program logged in to the token reads it (its own module instance and session). */
async function readElsewhere(): Promise<string> {
  const { execFile } = await import('node:child_process');
  const { promisify } = await import('node:util');
  const script = `
    const pkcs11js = require('pkcs11js');
    const p11 = new pkcs11js.PKCS11();
    p11.load(${JSON.stringify(token.modulePath)});
    p11.C_Initialize();
    const slot = p11.C_GetSlotList(true).find((s) => p11.C_GetTokenInfo(s).label.trim() === ${JSON.stringify(token.label)});
    const s = p11.C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION);
    p11.C_Login(s, pkcs11js.CKU_USER, ${JSON.stringify(token.userPin)});
    p11.C_FindObjectsInit(s, [{ type: pkcs11js.CKA_APPLICATION, value: Buffer.from(${JSON.stringify(markLabel('r1'))}) }]);
    const [h] = p11.C_FindObjects(s, 2);
    p11.C_FindObjectsFinal(s);
    process.stdout.write(p11.C_GetAttributeValue(s, h, [{ type: pkcs11js.CKA_LABEL }])[0].value.toString());
    p11.C_Finalize();`;
  const { stdout } = await promisify(execFile)(process.execPath, ['-e', script], {
    env: { ...process.env, ...token.env },
  });
  return stdout;
}

t.test('advance writes from its own thread and session, never waiting for a hot one', async (t) => {
  const first = at(3);
  await mark.advance(first);
  t.ok(same(await mark.read(), first), "the token holds the head (read on the signer's session)");
  t.match(await readElsewhere(), / size=3 tree=[0-9a-f]{64}$/, 'and another process sees it');

  // The only hot session is held (a signature in flight): the mark write does not wait for it.
  let free: () => void = () => {};
  const held = hsm.withSession('hot', () => new Promise<void>((r) => (free = r)));
  const next = at(9);
  const wrote = await Promise.race([
    mark.advance(next).then(() => 'written'),
    new Promise((r) => setTimeout(() => r('waited for the session'), 1500)),
  ]);
  free();
  await held;
  t.equal(wrote, 'written', 'written while every hot session is busy');
  t.ok(same(await mark.read(), next), 'the token holds the new head');

  await t.rejects(mark.advance(at(9)), /never lowered/, 'the same size is refused');
  t.ok(same(mark.head, next), 'and the mark kept');
});

t.test('a recovery that closes every session of the slot: the writer opens a new one', async (t) => {
  const before = mark.head!;
  await mark.advance(at(before.size + 1));
  // What Hsm.recover does before it logs in again: the writer's session is gone with the others.
  hsm.p11.C_CloseAllSessions(slot);
  const s = hsm.p11.C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION);
  hsm.p11.C_Login(s, pkcs11js.CKU_USER, token.userPin);
  const after = at(before.size + 2);
  await mark.advance(after);
  t.ok(same(mark.head, after), 'the write after the recovery succeeded');
  t.match(await readElsewhere(), new RegExp(` size=${after.size} tree=${Buffer.from(after.root).toString('hex')}$`));
  hsm.p11.C_CloseSession(s);
});

t.test('a token without the user logged in: the write fails to its caller and the mark stays', async (t) => {
  const kept = mark.head!;
  // Every session closed, and no login: a private object cannot be found nor written.
  hsm.p11.C_CloseAllSessions(slot);
  await t.rejects(mark.advance(at(kept.size + 5)), 'the write is refused');
  t.ok(same(mark.head, kept), 'the mark in memory is unchanged');
  t.match(await readElsewhere(), new RegExp(` size=${kept.size} `), 'and on the token');
  // Logged in again (what recovery does): writes go through.
  const s = hsm.p11.C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION);
  hsm.p11.C_Login(s, pkcs11js.CKU_USER, token.userPin);
  const next = at(kept.size + 6);
  await mark.advance(next);
  t.ok(same(mark.head, next), 'written after the login');
  t.match(await readElsewhere(), new RegExp(` size=${next.size} tree=${Buffer.from(next.root).toString('hex')}$`));
  hsm.p11.C_CloseSession(s);
});
