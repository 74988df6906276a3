import t from 'tap';
import { parseConfig } from '../src/infra/config/load.js';
import { normalisePin } from '../src/infra/config/pins.js';
import { Authorizer } from '../src/infra/grpc/auth.js';
import { PeerTrust } from '../src/infra/grpc/peer-trust.js';
import { SessionPool } from '../src/infra/hsm/pool.js';
import { parsePkcs11Uri } from '../src/infra/hsm/uri.js';

t.test('PKCS#11 URIs (RFC 7512)', async (t) => {
  t.same(parsePkcs11Uri('pkcs11:token=signer;object=hot-1?module-path=/usr/lib/x.so&pin-source=file:/run/pin'), {
    token: 'signer',
    object: 'hot-1',
    modulePath: '/usr/lib/x.so',
    pinFile: '/run/pin',
  });
  t.same(parsePkcs11Uri('pkcs11:serial=0a1b;id=%01%02?pin-source=file:///p%20q'), {
    serial: '0a1b',
    id: Buffer.from([1, 2]),
    pinFile: '/p q',
  });
  t.same(parsePkcs11Uri('pkcs11:token=My%20Token').token, 'My Token');
  const bad: Array<[string, RegExp]> = [
    ['token=x', /must start with "pkcs11:"/],
    ['pkcs11:object=x', /must name a token/],
    ['pkcs11:slot-id=1', /label or serial/],
    ['pkcs11:token=x;colour=red', /unknown PKCS#11 URI path attribute "colour"/],
    ['pkcs11:token=x?pin-value=1234', /pin-value.*not accepted/],
    ['pkcs11:token=x?pin-source=env:PIN', /pin-source must be a file/],
    ['pkcs11:token=x?module=y', /unknown PKCS#11 URI query attribute/],
    ['pkcs11:token=%zz', /bad percent-encoding/],
  ];
  for (const [uri, err] of bad) t.throws(() => parsePkcs11Uri(uri), err, uri);
});

t.test('session pool: hot requests are served before batch items', async (t) => {
  const pool = new SessionPool<string>();
  pool.add('s1');
  const first = await pool.acquire('batch');
  const order: string[] = [];
  const waits = [
    pool.acquire('batch').then(() => order.push('batch-1')),
    pool.acquire('batch').then(() => order.push('batch-2')),
    pool.acquire('hot').then(() => order.push('hot-1')),
  ];
  pool.release(first);
  await waits[2];
  pool.release('s1');
  await waits[0];
  pool.release('s1');
  await waits[1];
  t.same(order, ['hot-1', 'batch-1', 'batch-2']);
  t.equal(pool.inUse, 1);
  pool.release('s1');
  t.equal(pool.inUse, 0);
  t.equal(pool.size, 1);
});

t.test('session pool: waiters are refused when the token goes down', async (t) => {
  const pool = new SessionPool<string>();
  pool.add('s1');
  await pool.acquire('hot');
  const waiting = pool.acquire('hot');
  pool.rejectWaiters(new Error('down'));
  await t.rejects(waiting, /down/);
  pool.discard();
  t.equal(pool.size, 0);
  t.equal(pool.inUse, 0);
});

t.test('config: every problem names its field', async (t) => {
  const base = {
    listen: '127.0.0.1:1',
    tls: { caFile: 'ca', certFile: 'c', keyFile: 'k' },
    hsm: { uri: 'pkcs11:token=x' },
    store: { sqlite: { path: 'db' } },
    clients: { a: { roles: ['signer'] } },
  };
  const c = parseConfig(base, '/etc/signer');
  t.equal(c.hsm.sessions, 8, 'defaults apply');
  t.equal(c.tls.caFile, '/etc/signer/ca', 'relative paths resolve against the config directory');
  const bad: Array<[object, RegExp]> = [
    [{ ...base, listen: 'x' }, /listen: expected host:port/],
    [{ ...base, hsm: { uri: 'x' } }, /hsm\.uri/],
    [{ ...base, clients: { a: { roles: ['root'] } } }, /clients\.a\.roles\.0/],
    [{ ...base, extra: 1 }, /extra/],
    [{ ...base, hsm: { uri: 'pkcs11:token=x', sessions: 1000 } }, /hsm\.sessions/],
  ];
  for (const [raw, err] of bad) t.throws(() => parseConfig(raw), err);
});

t.test('config: client pins are normalised, separate CA files resolve, a bad pin names its field', async (t) => {
  const hex = `${'AB:'.repeat(31)}AB`;
  const b64 = Buffer.alloc(32, 0xcd).toString('base64');
  const c = parseConfig(
    {
      listen: '127.0.0.1:1',
      tls: { caFile: 'ca', certFile: 'c', keyFile: 'k', clientCaFile: 'clients-ca', crlFile: 'crl.pem' },
      hsm: { uri: 'pkcs11:token=x' },
      store: { sqlite: { path: 'db' } },
      clients: {
        a: { roles: ['signer'], pins: [`cert-sha256:${hex}`, `spki-sha256:${b64}`, `spki-sha256:${'0f'.repeat(32)}`] },
      },
    },
    '/etc/signer',
  );
  const canonical = [
    `cert-sha256:${'ab'.repeat(32)}`,
    `spki-sha256:${'cd'.repeat(32)}`,
    `spki-sha256:${'0f'.repeat(32)}`,
  ];
  t.same(c.clients.a!.pins, canonical, 'hex with colons and base64 become lowercase hex');
  t.equal(c.tls.clientCaFile, '/etc/signer/clients-ca');
  t.equal(c.tls.crlFile, '/etc/signer/crl.pem');
  t.equal(c.tls.peerCaFile, undefined, 'unset CA files fall back to caFile where used');
  t.same(c.connections, { maxAgeMs: 30 * 60_000, maxAgeGraceMs: 60_000 }, 'connections age out by default');
  t.equal(c.tls.watch, true);
  const rows: Array<[string, boolean]> = [
    [`cert-sha256:${'ab'.repeat(32)}`, true],
    [`cert-sha256:${b64}`, false], // a certificate fingerprint is hex, as openssl prints it
    [`spki-sha256:${'ab'.repeat(31)}`, false],
    [`sha256:${'ab'.repeat(32)}`, false],
    ['payment-engine', false],
  ];
  for (const [pin, ok] of rows) {
    t.equal('pin' in normalisePin(pin), ok, `${pin.slice(0, 20)}... ${ok ? 'accepted' : 'refused'}`);
  }
  const bad = {
    listen: '127.0.0.1:1',
    tls: { caFile: 'ca', certFile: 'c', keyFile: 'k' },
    hsm: { uri: 'pkcs11:token=x' },
    store: { sqlite: { path: 'db' } },
    clients: { a: { roles: ['signer'], pins: ['sha1:00'] } },
  };
  t.throws(() => parseConfig(bad), /clients\.a\.pins\.0/);
});

t.test('key access: exact ids and prefix patterns, deny otherwise', async (t) => {
  const trust = new PeerTrust([], { pins: {}, requirePins: false });
  const auth = new Authorizer(trust, {}, { 'hot-*': ['engine'], 'cold-1': ['treasury'] });
  const rows: Array<[string, string, boolean]> = [
    ['engine', 'hot-1', true],
    ['engine', 'hot-', true],
    ['engine', 'cold-1', false],
    ['treasury', 'cold-1', true],
    ['treasury', 'cold-10', false],
    ['stranger', 'hot-1', false],
  ];
  for (const [client, key, allowed] of rows) t.equal(auth.maySign(client, key), allowed, `${client} -> ${key}`);
});
