import { ed25519 } from '@noble/curves/ed25519.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { bytesToHex, utf8ToBytes } from '@noble/hashes/utils.js';
import t from 'tap';
import {
  type Checkpoint,
  formatCheckpoint,
  openCheckpoint,
  parseCheckpoint,
  signCheckpoint,
} from '../src/core/audit/checkpoint.js';
import {
  cosignatureSigner,
  cosignatureTime,
  cosignatureVerifier,
  cosignedMessage,
} from '../src/core/audit/cosignature.js';
import {
  addSignatures,
  decodeBase64,
  ed25519Signer,
  ed25519Verifier,
  encodeVerifierKey,
  formatNote,
  keyId,
  NoteError,
  type NoteSignature,
  openNote,
  parseNote,
  parseVerifierKey,
  SIG_TYPE_COSIGNATURE_V1,
  SIG_TYPE_ED25519,
  signText,
} from '../src/core/audit/note.js';

// Keys made here stand in for the HSM audit key and the witnesses' token keys: this module is
// pure, the HSM-backed signers are wired and tested with the checkpointer and the witness role.
function keyPair() {
  const secret = ed25519.utils.randomSecretKey();
  const publicKey = ed25519.getPublicKey(secret);
  return { publicKey, sign: async (msg: Uint8Array) => ed25519.sign(msg, secret) };
}

const ORIGIN = 'audit.example.com/hsm-signer/test';
const auditKey = keyPair();
const logSigner = ed25519Signer(ORIGIN, auditKey.publicKey, auditKey.sign);
const logVerifier = ed25519Verifier(ORIGIN, auditKey.publicKey);
const cp: Checkpoint = { origin: ORIGIN, size: 12345, root: sha256(utf8ToBytes('root')) };

interface Asserts {
  ok(v: unknown, message: string): unknown;
  fail(message: string): unknown;
}

/** Throws a NoteError of the given kind, or fails the test. */
function refuses(t: Asserts, run: () => unknown, kind: NoteError['kind'], what: string) {
  try {
    run();
    t.fail(`${what}: accepted`);
  } catch (e) {
    const got = e instanceof NoteError ? `${e.kind}: ${e.message}` : String(e);
    t.ok(e instanceof NoteError && e.kind === kind, `${what}: ${got}`);
  }
}

t.test('public vectors of other implementations', async (t) => {
  // golang.org/x/mod/sumdb/note (note_test.go / example_test.go): verify, and sign byte for byte.
  const peter = parseVerifierKey('PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW');
  t.equal(peter.keyId, 0xc74f20a3, 'key ID recomputed from name, type and key');
  const text = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
  const goNote =
    `${text}\n— PeterNeumann ` +
    'x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n';
  t.equal(openNote(goNote, [ed25519Verifier(peter.name, peter.publicKey)]).verified.length, 1, 'Go note verifies');
  const seed = decodeBase64('AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz')!.slice(1); // its PRIVATE+KEY
  const signer = ed25519Signer(peter.name, peter.publicKey, async (m) => ed25519.sign(m, seed));
  t.equal(formatNote({ text, sigs: [await signText(text, signer)] }), goNote, 'our signing reproduces it');

  // c2sp.org/signed-note's own example key and message (as tested by tlog-scales).
  const foo = parseVerifierKey('example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k');
  const fooNote =
    'This is an example message.\n\n— example.com/foo ' +
    'Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n';
  t.equal(openNote(fooNote, [ed25519Verifier(foo.name, foo.publicKey)]).verified.length, 1, 'signed-note example');

  // A production checkpoint of the arche2025h1 CT log with witness cosignatures: the log's Ed25519
  // line (among a type 0x05 line from the same name, ignored) and remora.n621.de's cosignature/v1.
  const log = parseVerifierKey(
    'arche2025h1.staging.ct.transparency.dev+ba2f06c0+AU0vHmlGCS/PdN8b2OaGmKprLI8HKM+dJ472xgFYh15f',
  );
  const remora = parseVerifierKey('remora.n621.de+da77ade7+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2');
  t.equal(remora.type, SIG_TYPE_COSIGNATURE_V1, 'a native cosignature/v1 verifier key');
  const trust = {
    origin: log.name,
    log: ed25519Verifier(log.name, log.publicKey),
    witnesses: [cosignatureVerifier(remora.name, remora.publicKey)],
    required: 1,
  };
  const opened = openCheckpoint(ARCHE, trust);
  t.equal(opened.checkpoint.size, 1432088532);
  const root = decodeBase64('U7WM79jrzyhGZ5/GUBTpM7NzwdyfFx61t3RovgcC4Ro=')!;
  t.equal(bytesToHex(opened.checkpoint.root), bytesToHex(root));
  t.same(
    opened.cosignatures.map((c) => [c.name, cosignatureTime(c.sig)]),
    [['remora.n621.de', 1779573024]],
  );
  refuses(t, () => openCheckpoint(ARCHE.replace('1432088532', '1432088533'), trust), 'bad-signature', 'size edited');

  // transparency-dev/formats note_cosigv1_test.go: a cosignature's timestamp.
  const sig = decodeBase64(
    'ZGhGuQAAAABm/qTPeyKXD+R2rzyQsxPiP8mXum7qq/iF0u4vanlqJyocWODBt97w9uL+8qT7S5gxEHWWOworDcFiEBYJXORmnFBOBA==',
  )!;
  t.equal(cosignatureTime(sig.slice(4)), 1727964367, 'cosignature timestamp');
  t.equal(cosignatureTime(sig.slice(4, 68)), null, 'a plain Ed25519 signature is not a cosignature');
  // tlog-cosignature's example of the signed message.
  const body = 'example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n';
  t.equal(
    new TextDecoder().decode(cosignedMessage(body, 1679315147)),
    `cosignature/v1\ntime 1679315147\n${body}`,
    'the cosigned message',
  );
});

t.test('a checkpoint: body format, sign, open', async (t) => {
  const text = formatCheckpoint(cp);
  t.equal(text, `${ORIGIN}\n12345\n${Buffer.from(cp.root).toString('base64')}\n`, 'the tlog-checkpoint body');
  t.same(parseCheckpoint(text), { ...cp, extensions: [] }, 'parses back');
  const note = await signCheckpoint(cp, logSigner);
  t.ok(note.startsWith(`${text}\n`), 'the body, then a blank line');
  const sigLine = /^— audit\.example\.com\/hsm-signer\/test [A-Za-z0-9+/]{91}=\n$/;
  t.match(note.slice(text.length + 1), sigLine, 'one line, our name');
  const opened = openCheckpoint(note, { origin: ORIGIN, log: logVerifier });
  t.same(opened.checkpoint, { ...cp, extensions: [] });
  t.equal(opened.text, text);
  const empty = await signCheckpoint({ origin: ORIGIN, size: 0, root: sha256(new Uint8Array(0)) }, logSigner);
  t.equal(openCheckpoint(empty, { origin: ORIGIN, log: logVerifier }).checkpoint.size, 0, 'the empty tree');
  const ext = await signCheckpoint({ ...cp, extensions: ['x-ext one', 'two'] }, logSigner);
  t.same(openCheckpoint(ext, { origin: ORIGIN, log: logVerifier }).checkpoint.extensions, ['x-ext one', 'two']);
  t.equal(keyId(ORIGIN, SIG_TYPE_ED25519, auditKey.publicKey), logVerifier.keyId);
  const vkey = encodeVerifierKey(ORIGIN, SIG_TYPE_ED25519, auditKey.publicKey);
  t.same(parseVerifierKey(vkey), { name: ORIGIN, keyId: logVerifier.keyId, type: 1, publicKey: auditKey.publicKey });
});

t.test('checkpoint verification: tampered, wrong key, wrong origin', async (t) => {
  const note = await signCheckpoint(cp, logSigner);
  const other = keyPair();
  const sameNameOtherKey = ed25519Signer(ORIGIN, other.publicKey, other.sign);
  const forgedId = { ...sameNameOtherKey, keyId: logSigner.keyId }; // claims our key ID
  const otherLog = ed25519Signer('other.example.com/log', other.publicKey, other.sign);
  const trust = { origin: ORIGIN, log: logVerifier };
  const rows: [string, () => Promise<string> | string, NoteError['kind']][] = [
    ['size changed', () => note.replace('\n12345\n', '\n12346\n'), 'bad-signature'],
    ['root changed', () => note.replace(/\n[A-Za-z0-9+/]{43}=\n/, `\n${'A'.repeat(43)}=\n`), 'bad-signature'],
    ['signature bit flipped', () => flipLastSig(note), 'bad-signature'],
    ['signed by another key under our name', () => signCheckpoint(cp, sameNameOtherKey), 'unknown-key'],
    ['another key claiming our key ID', () => signCheckpoint(cp, forgedId), 'bad-signature'],
    ['signed by another log only', () => signCheckpoint(cp, otherLog), 'unknown-key'],
    ['our key, another origin', () => signCheckpoint({ ...cp, origin: otherLog.name }, logSigner), 'wrong-origin'],
    ['our line removed', () => note.replace(/— .*\n$/, `— ${otherLog.name} ${'A'.repeat(94)}==\n`), 'unknown-key'],
  ];
  for (const [what, make, kind] of rows) {
    const bad = await make();
    refuses(t, () => openCheckpoint(bad, trust), kind, what);
  }
  // A stranger's line is ignored (spec: unknown keys MUST be ignored); ours still decides.
  const stranger: NoteSignature = { name: 'stranger.example', keyId: 7, sig: new Uint8Array(64) };
  t.equal(openCheckpoint(addSignatures(note, [stranger]), trust).cosignatures.length, 0, 'unknown line ignored');
});

t.test('checkpoint bodies that are refused', async (t) => {
  const root = Buffer.from(cp.root).toString('base64');
  const rows: [string, string][] = [
    ['two lines', `${ORIGIN}\n1\n`],
    ['empty origin', `\n1\n${root}\n`],
    ['leading zero', `${ORIGIN}\n01\n${root}\n`],
    ['negative size', `${ORIGIN}\n-1\n${root}\n`],
    ['size above 2^53', `${ORIGIN}\n9007199254740993\n${root}\n`],
    ['root of 31 bytes', `${ORIGIN}\n1\n${Buffer.alloc(31).toString('base64')}\n`],
    ['root not canonical base64', `${ORIGIN}\n1\n${root.slice(0, 42)}B=\n`],
    ['root without padding', `${ORIGIN}\n1\n${root.slice(0, 43)}\n`],
    ['empty extension line', `${ORIGIN}\n1\n${root}\n\nx\n`],
    ['no final newline', `${ORIGIN}\n1\n${root}`],
  ];
  for (const [what, text] of rows) refuses(t, () => parseCheckpoint(text), 'malformed', what);
  refuses(t, () => formatCheckpoint({ ...cp, origin: 'has space' }), 'malformed', 'an origin we could not sign as');
  refuses(t, () => formatCheckpoint({ ...cp, size: 1.5 }), 'malformed', 'a fractional size');
  refuses(t, () => formatCheckpoint({ ...cp, extensions: ['a\nb'] }), 'malformed', 'a multi-line extension');
});

t.test('signed notes that are refused', async (t) => {
  const note = await signCheckpoint(cp, logSigner);
  const line = note.slice(note.lastIndexOf('\n\n') + 2);
  const body = note.slice(0, note.lastIndexOf('\n\n') + 1);
  const many = Array.from({ length: 101 }, (_, i) => `— k${i} ${Buffer.alloc(68, i).toString('base64')}\n`).join('');
  const rows: [string, string | Uint8Array][] = [
    ['missing final newline', note.slice(0, -1)],
    ['no blank line', note.replace('\n\n', '\n')],
    ['no signature line', `${body}\n`],
    ['hyphens for the em dash', note.replace('— ', '-- ')],
    ['no space after the name', note.replace(`— ${ORIGIN} `, `— ${ORIGIN}`)],
    ['bad base64', note.replace(/ [A-Za-z0-9+/]{10}/, ' !!!!!!!!!!')],
    ['base64 of 4 bytes', `${body}\n— ${ORIGIN} AAAAAA==\n`],
    ['name with a plus', `${body}\n— a+b ${line.split(' ')[2]}`],
    ['empty name', `${body}\n—  ${line.split(' ')[2]}`],
    ['duplicate line', `${note}${line}`],
    ['carriage return', note.replace('\n12345\n', '\r\n12345\n')],
    ['tab', note.replace(ORIGIN, `${ORIGIN}\t`)],
    ['lone surrogate', note.replace(ORIGIN, `${ORIGIN}\ud800`)],
    ['invalid UTF-8', Uint8Array.from([...utf8ToBytes(body), 0xff, ...utf8ToBytes(`\n${line}`)])],
    ['101 signatures', `${body}\n${many}`],
    ['a blank line after the signatures', `${note}\n`],
  ];
  for (const [what, msg] of rows) refuses(t, () => parseNote(msg), 'malformed', what);
  t.equal(parseNote(utf8ToBytes(note)).text, body, 'the same note as bytes parses');
  const ok = Array.from({ length: 16 }, (_, i) => ({ name: `w${i}`, keyId: i, sig: new Uint8Array(64) }));
  t.equal(parseNote(addSignatures(note, ok)).sigs.length, 17, 'the spec floor of 16 signatures (plus ours) parses');
  refuses(
    t,
    () => parseVerifierKey(`${ORIGIN}+00000000+${Buffer.from([1, ...auditKey.publicKey]).toString('base64')}`),
    'malformed',
    'a verifier key whose ID does not match',
  );
});

t.test('cosignatures: a witness cosigns, the log collects, a verifier counts', async (t) => {
  const note = await signCheckpoint(cp, logSigner);
  const w1 = keyPair();
  const w2 = keyPair();
  let clock = 1_700_000_000;
  const c1 = cosignatureSigner('witness-1.example', w1.publicKey, w1.sign, () => clock);
  const c2 = cosignatureSigner('witness-2.example', w2.publicKey, w2.sign, () => clock);
  const v1 = cosignatureVerifier('witness-1.example', w1.publicKey);
  const v2 = cosignatureVerifier('witness-2.example', w2.publicKey, { notAfter: () => 1_800_000_000 });
  const text = parseNote(note).text;
  const s1 = await signText(text, c1);
  t.equal(cosignatureTime(s1.sig), clock, 'the witness clock is in the signature');
  t.ok(ed25519.verify(s1.sig.slice(8), cosignedMessage(text, clock), w1.publicKey), 'over the cosignature/v1 message');
  clock += 5;
  const s2 = await signText(text, c2);
  const both = addSignatures(note, [s1, s2]);
  const trust = (required: number) => ({ origin: ORIGIN, log: logVerifier, witnesses: [v1, v2], required });
  t.equal(openCheckpoint(both, trust(2)).cosignatures.length, 2, 'two of two');
  t.equal(openCheckpoint(addSignatures(note, [s1]), trust(1)).cosignatures.length, 1, 'one of two, one required');
  const one = addSignatures(note, [s1]);
  refuses(t, () => openCheckpoint(one, trust(2)), 'too-few-cosignatures', 'one of two, two required');
  refuses(t, () => openCheckpoint(note, trust(1)), 'too-few-cosignatures', 'none');
  const retimed = { ...s1, sig: Uint8Array.from(s1.sig) };
  retimed.sig[7]! ^= 1; // another timestamp under the same signature
  refuses(t, () => openCheckpoint(addSignatures(note, [retimed]), trust(1)), 'bad-signature', 'timestamp edited');
  // The same witness key as a plain Ed25519 verifier has another key ID: the line is not its.
  const plain = ed25519Verifier('witness-1.example', w1.publicKey);
  const asPlain = { origin: ORIGIN, log: logVerifier, witnesses: [plain], required: 1 };
  refuses(t, () => openCheckpoint(addSignatures(note, [s1]), asPlain), 'too-few-cosignatures', 'type 0x01 verifier');
  // A cosignature of another checkpoint does not transfer.
  const otherText = formatCheckpoint({ ...cp, size: cp.size + 1 });
  const moved = await signText(otherText, c1);
  const wrongTree = addSignatures(note, [moved]);
  refuses(t, () => openCheckpoint(wrongTree, trust(1)), 'bad-signature', 'cosignature of another tree');
  clock = 1_900_000_000;
  const future = await signText(text, c2);
  refuses(t, () => openCheckpoint(addSignatures(note, [future]), trust(1)), 'bad-signature', 'dated after notAfter');
  const notCheckpoint = signText('not a checkpoint\n', c1);
  await t.rejects(notCheckpoint, { name: 'NoteError', kind: 'malformed' }, 'witnesses cosign checkpoints only');
});

function flipLastSig(note: string): string {
  const i = note.lastIndexOf(' ') + 10;
  const c = note[i] === 'A' ? 'B' : 'A';
  return note.slice(0, i) + c + note.slice(i + 1);
}

// A checkpoint the arche2025h1 log served, as quoted in the tests of the tlog-scales package; wrapped.
const ARCHE = `${[
  'arche2025h1.staging.ct.transparency.dev',
  '1432088532',
  'U7WM79jrzyhGZ5/GUBTpM7NzwdyfFx61t3RovgcC4Ro=',
  '',
  '— arche2025h1.staging.ct.transparency.dev zTM8sQAAAZ5W0WdjBAMARjBEAiBjW5IQf9pvsYLfQFX6hoGREPMHbd' +
    'Q3urbllzalApkptQIgIpwtEroeW2BXaHAI4kJXFbon5Ch9MNL5zRNZ55lvGt0=',
  '— arche2025h1.staging.ct.transparency.dev ui8GwCF1+kWqZrxGdhj4aX3gcw7XUlXQQabg/27lefwhUkzbC3NygN' +
    'I75MdhL1bfTW9g8Ei59RA23oHP7Ry1k3ZFWwQ=',
  '— transparency.dev/DEV:witness-little-garden 2AQqhwAAAABqEiEgzgFIqqhbUoDwjMWE6UP8nd8/KYTzwZ2rhIg' +
    'cqoXHAwVkjZr4AscylP3v7sEodkRAErumC2q44vdgJY096st5BQ==',
  '— witness1.smartit.nu/witness1 pIyCDwAAAABqEiEghIp82KWebrw7/oHQwlTAm3g2RKS4+eebl8eO0WH+/iEcxZ75W' +
    '3u5hNI7TOQtmJbqmNWVuE0tgh0XwzdZsDsUAQ==',
  '— remora.n621.de 2net5wAAAABqEiEgPlfF3V06o0Y+fHM+J5J9s27wgxxcOVSpZ/2g/KSiXCg9DEZI+aVCIobWX9sXTyn' +
    'k5XeU/zZ0WBxtqB0DrAWfBw==',
  '— witness.stagemole.eu Z/euoAAAAABqEiEgw0i+7g2ENfDAWHmtRzCfKTHSDwYDJA2NmKeGi9Y8FtEyOUvVr+AJmIY/2' +
    'TUFucgKi7lI7cUiOvKFYe/TmN9DAg==',
].join('\n')}\n`;
