/**
 * The access document's pure parts: every kind of loosening named, tightenings empty, one
 * canonical text per document, and the config seed.
 */
import t from 'tap';
import { type AccessDocument, accessDiff, accessLoosenings, accessText } from '../src/core/admin/access.js';
import { accessFromConfig, parseAccessDocument } from '../src/infra/config/access.js';

const PIN_A = `spki-sha256:${'a'.repeat(64)}`;
const PIN_B = `cert-sha256:${'b'.repeat(64)}`;
const KEY =
  '-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n-----END PUBLIC KEY-----\n';
const base: AccessDocument = {
  clients: {
    engine: { roles: ['signer'], pins: [PIN_A], requestKeys: [], requireSignedRequests: true },
    admin: { roles: ['admin'], pins: [], requestKeys: [], requireSignedRequests: true },
  },
  keyAccess: { 'hot-*': ['engine'] },
};
const edit = (f: (d: AccessDocument) => void) => {
  const d = structuredClone(base);
  f(d);
  return d;
};

t.test('each loosening is named', async (t) => {
  const cases: Array<[string, (d: AccessDocument) => void, RegExp]> = [
    [
      'client added',
      (d) => (d.clients.x = { roles: ['auditor'], pins: [], requestKeys: [], requireSignedRequests: true }),
      /client "x" added/,
    ],
    ['role added', (d) => d.clients.engine!.roles.push('admin'), /gets the admin role/],
    ['pin added to a pinned client', (d) => d.clients.engine!.pins.push(PIN_B), /pin added/],
    ['last pin removed', (d) => (d.clients.engine!.pins = []), /no longer pinned/],
    ['request key added', (d) => d.clients.engine!.requestKeys.push(KEY), /request-signing key added/],
    [
      'unsigned requests allowed',
      (d) => (d.clients.engine!.requireSignedRequests = false),
      /requireSignedRequests off/,
    ],
    ['key pattern added', (d) => (d.keyAccess['cold-*'] = ['engine']), /may sign with keys "cold-\*"/],
    ['client added to a pattern', (d) => d.keyAccess['hot-*']!.push('admin'), /"admin" may sign with keys "hot-\*"/],
  ];
  for (const [name, f, want] of cases) {
    const l = accessLoosenings(base, edit(f));
    t.equal(l.length, 1, name);
    t.match(l[0], want, name);
  }
  t.ok(accessLoosenings(null, base).length > 0, 'a first version loosens');
});

t.test('tightenings name nothing', async (t) => {
  const cases: Array<[string, (d: AccessDocument) => void]> = [
    ['client removed', (d) => delete d.clients.engine],
    ['role removed', (d) => (d.clients.admin!.roles = [])],
    ['pinning an unpinned client', (d) => d.clients.admin!.pins.push(PIN_B)],
    ['one of two pins removed', (d) => (d.clients.engine!.pins = [PIN_A])],
    ['key access removed', (d) => (d.keyAccess = {})],
    ['signed requests required', (d) => (d.clients.admin!.requireSignedRequests = true)],
  ];
  for (const [name, f] of cases) t.same(accessLoosenings(base, edit(f)), [], name);
  const two = edit((d) => d.clients.engine!.pins.push(PIN_B));
  t.same(accessLoosenings(two, base), [], 'removing one of two pins tightens');
});

t.test('one canonical text; parsing validates and fills the defaults', async (t) => {
  const shuffled = edit((d) => {
    d.clients.engine!.roles = ['signer', 'auditor', 'signer'] as never;
  });
  t.equal(accessText(shuffled), accessText(edit((d) => (d.clients.engine!.roles = ['auditor', 'signer']))));
  const parsed = parseAccessDocument(
    JSON.stringify({
      keyAccess: { 'a*': ['c', 'b'] },
      clients: { c: { roles: ['signer'], pins: [PIN_A.toUpperCase().replace('SPKI-SHA256', 'spki-sha256')] } },
    }),
  );
  t.same(parsed.clients.c, { roles: ['signer'], pins: [PIN_A], requestKeys: [], requireSignedRequests: true });
  t.same(parsed.keyAccess, { 'a*': ['b', 'c'] });
  t.throws(() => parseAccessDocument('{"clients":{"c":{"roles":["root"]}}}'), /clients\.c\.roles/);
  t.throws(() => parseAccessDocument('{"clients":{"c":{"roles":["signer"],"pins":["nope"]}}}'), /pins/);
  t.throws(() => parseAccessDocument('{"clients":{"c":{"roles":["signer"],"requestKeys":["x"]}}}'), /requestKeys/);
  t.throws(() => parseAccessDocument('{"clients":{},"extra":1}'), /extra|Unrecognized/);
});

t.test('the config seed makes every flag explicit; the diff is readable', async (t) => {
  const seed = accessFromConfig({
    clients: { e: { roles: ['signer'] }, u: { roles: ['signer'], requireSignedRequests: false } },
    keyAccess: { '*': ['e'] },
    requireSignedRequests: true,
  });
  t.same(seed.clients.e, { roles: ['signer'], pins: [], requestKeys: [], requireSignedRequests: true });
  t.equal(seed.clients.u!.requireSignedRequests, false);
  t.same(
    accessDiff(
      base,
      edit((d) => (d.clients.engine!.roles = ['auditor'])),
    ),
    ['- client engine roles: signer', '+ client engine roles: auditor'],
  );
});
