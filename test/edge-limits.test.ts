import { randomBytes, randomUUID } from 'node:crypto';
import http2 from 'node:http2';
import * as grpc from '@grpc/grpc-js';
import { status } from '@grpc/grpc-js';
import t, { type Test } from 'tap';
import { eventually, refusal, refused, startTestSigner } from '../harness/signer.js';
import { call, nowTimestamp } from '../src/client/client.js';
import { type DecodedError, decodeError } from '../src/client/errors.js';
import { signerV1 } from '../src/infra/grpc/proto.js';

// Every refusal must fit the 8 KiB metadata limit of default gRPC clients (C-core): the
// percent-encoded grpc-message plus the base64 grpc-status-details-bin, with their names.
const CLIENT_METADATA_LIMIT = 8192;

// A real SoftHSM module whose signing can be held, so requests stay in flight on demand.
const gate = { held: false, waiting: 0, open: () => {} };
let opened = Promise.resolve();
function holdable(real: any) {
  return new Proxy(real, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver);
      if (typeof v !== 'function') return v;
      if (prop !== 'C_SignAsync') return v.bind(target);
      return async (...args: unknown[]) => {
        if (gate.held) {
          gate.waiting++;
          await opened;
          gate.waiting--;
        }
        return v.apply(target, args);
      };
    },
  });
}
function hold() {
  gate.held = true;
  opened = new Promise<void>((r) => (gate.open = r));
}
function release() {
  gate.held = false;
  gate.open();
}

const LIMITS = {
  maxConcurrentStreams: 50,
  maxInFlightPerClient: 4,
  maxWatchStreamsPerClient: 3,
  messageBytes: { sign: 256 * 1024, signBatch: 512 * 1024, setPolicy: 64 * 1024, other: 16 * 1024 },
};
const ts = await startTestSigner({ wrapModule: holdable, config: { limits: LIMITS } });
t.teardown(() => ts.close());
const engine = ts.as('payment-engine');
const admin = ts.as('security-admin');
await call(admin.keyAdmin, 'CreateKey', { keyId: 'hot-k1', algorithm: 'ECDSA_SECP256K1' });
await call(admin.keyAdmin, 'CreateKey', { keyId: 'hot-ed', algorithm: 'ED25519' });

const sign = (keyId: string, extra: object = {}, client = engine) =>
  call(client.signer, 'Sign', {
    keyId,
    requestId: randomUUID(),
    clientTime: nowTimestamp(),
    digest: randomBytes(32),
    ...extra,
  });

/** Bytes a refusal's status takes on the wire, as a client's metadata limit counts them. */
function statusBytes(e: grpc.ServiceError): number {
  const details = e.metadata?.get('grpc-status-details-bin')[0];
  const bin = details instanceof Buffer ? Math.ceil(details.length / 3) * 4 : 0;
  return 'grpc-message'.length + encodeURI(e.details).length + 'grpc-status-details-bin'.length + bin + 32;
}

/** Asserts a hostile-id refusal: its reason, a bounded echo of the id, and a small status. */
async function boundedRefusal(t: Test, p: Promise<unknown>, reason = 'REQUEST_INVALID'): Promise<DecodedError> {
  const e = await refusal(p);
  const d = decodeError(e);
  t.equal(d.code, status.INVALID_ARGUMENT, 'INVALID_ARGUMENT');
  t.equal(d.reason, reason, `reason ${reason} in ErrorInfo`);
  t.ok(statusBytes(e) < 2048, `the refusal is small (${statusBytes(e)} bytes)`);
  const quoted = /"([^"]*)"/.exec(d.message)?.[1] ?? '';
  t.ok(quoted.length <= 65, `the id is echoed at most truncated (${quoted.length} characters)`);
  t.match(d.message, /is not valid|is required/, 'says what is wrong');
  return d;
}

t.test('hostile ids are refused at the edge with a bounded echo and ErrorInfo', async (t) => {
  const huge = 'k'.repeat(64 * 1024);
  const ids = [
    ['64 KiB', huge],
    ['10,000 characters', 'a'.repeat(10_000)],
    ['non-ASCII', 'ключ-🔑'.repeat(500)],
    ['control characters', 'a\r\nb\u0000c'.repeat(100)],
    ['upper case', 'HOT-K1'],
    ['service key', '_audit'],
  ] as const;
  for (const [name, id] of ids) {
    await t.test(`key id: ${name}`, async (t) => {
      const d = await boundedRefusal(t, sign(id));
      t.equal(d.metadata.field, 'key_id');
      t.equal(d.metadata.length, String(id.length), 'the length is in the metadata');
      t.notOk(d.message.includes(id.slice(0, 100)) && id.length > 64, 'not echoed whole');
      await boundedRefusal(
        t,
        call(engine.signer, 'SignBatch', {
          batchId: 'b',
          keyId: id,
          clientTime: nowTimestamp(),
          items: [{ digest: randomBytes(32) }],
        }),
      );
      // Other methods take 16 KiB messages here: their ids are cut to fit.
      const small = id.slice(0, 10_000);
      await boundedRefusal(t, call(engine.signer, 'GetPublicKey', { keyId: small }));
      await boundedRefusal(t, call(admin.keyAdmin, 'RotateKey', { keyId: small }));
      await boundedRefusal(t, call(admin.keyAdmin, 'DisableKeyVersion', { keyId: small, version: 1 }));
      await boundedRefusal(t, call(admin.keyAdmin, 'GetPolicy', { keyId: small }));
      await boundedRefusal(t, call(admin.keyAdmin, 'GetPolicy', { name: small }));
      await boundedRefusal(t, call(admin.keyAdmin, 'SetPolicy', { name: small, document: '{}' }), 'POLICY_INVALID');
      const watch = await streamError((engine.signer as any).WatchKeys({ keyId: small }));
      t.equal(decodeError(watch).reason, 'REQUEST_INVALID', 'WatchKeys refuses it too');
    });
  }
  await t.test('request and batch ids', async (t) => {
    for (const id of ['r'.repeat(129), 'r'.repeat(64 * 1024), 'a b', 'é'.repeat(10)]) {
      const d = await boundedRefusal(t, sign('hot-k1', { requestId: id }));
      t.equal(d.metadata.field, 'request_id');
    }
    const d = await boundedRefusal(
      t,
      call(engine.signer, 'SignBatch', {
        batchId: 'b'.repeat(101),
        keyId: 'hot-k1',
        clientTime: nowTimestamp(),
        items: [{ digest: randomBytes(32) }],
      }),
    );
    t.equal(d.metadata.field, 'batch_id');
  });
  t.match(await sign('hot-k1'), { keyId: 'hot-k1' }, 'a valid request still signs');
});

t.test('a 64 KiB key id reaches neither a metric label nor a known-key label', async (t) => {
  await refused(t, sign('no-such-key'), status.NOT_FOUND, 'KEY_NOT_FOUND');
  await refused(t, sign('k'.repeat(64 * 1024)), status.INVALID_ARGUMENT, 'REQUEST_INVALID');
  const text = await ts.signer.metrics.registry.metrics();
  const keys = new Set([...text.matchAll(/signer_signs_total\{key="([^"]*)"/g)].map((m) => m[1]));
  t.same([...keys].sort(), ['_unknown', 'hot-k1'], 'labels: known keys, and one fixed label for the rest');
  t.ok(text.length < 64 * 1024, `/metrics stays small (${text.length} bytes)`);
});

t.test('every message has its own size limit, refused with a reason below the transport limit', async (t) => {
  const big = await refusal(sign('hot-ed', { digest: undefined, message: randomBytes(300 * 1024) }));
  let d = decodeError(big);
  t.equal(d.code, status.RESOURCE_EXHAUSTED);
  t.equal(d.reason, 'MESSAGE_TOO_LARGE');
  t.equal(d.metadata.method, 'Sign');
  t.equal(d.metadata.limitBytes, String(256 * 1024));
  t.ok(Number(d.metadata.sizeBytes) > 300 * 1024, 'says how large the request was');
  d = decodeError(await refusal(call(engine.signer, 'GetPublicKey', { keyId: 'k'.repeat(20 * 1024) })));
  t.same(
    [d.code, d.reason, d.metadata.limitBytes],
    [status.RESOURCE_EXHAUSTED, 'MESSAGE_TOO_LARGE', String(16 * 1024)],
    'GetPublicKey: 16 KiB here',
  );
  const items = Array.from({ length: 600 }, () => ({ message: randomBytes(1024) }));
  d = decodeError(
    await refusal(
      call(engine.signer, 'SignBatch', { batchId: 'big', keyId: 'hot-ed', clientTime: nowTimestamp(), items }),
    ),
  );
  t.same([d.code, d.reason, d.metadata.method], [status.RESOURCE_EXHAUSTED, 'MESSAGE_TOO_LARGE', 'SignBatch']);
  // Past the largest method limit + 1 MiB the transport refuses the message unread, as documented.
  const huge = await refusal(sign('hot-ed', { digest: undefined, message: randomBytes(2 * 1024 * 1024) }));
  t.equal(huge.code, status.RESOURCE_EXHAUSTED, 'beyond the transport limit: RESOURCE_EXHAUSTED from grpc itself');
  t.equal(decodeError(huge).reason, undefined, '...without ErrorInfo (README: Limits)');
  t.match(await sign('hot-k1'), { keyId: 'hot-k1' }, 'the connection still serves');
});

t.test("bytes that are not the method's message are INVALID_ARGUMENT, not INTERNAL", async (t) => {
  const c = ts.pki.clients['payment-engine']!;
  const raw = new grpc.Client(ts.address, grpc.credentials.createSsl(ts.pki.caCert, c.key, c.cert), {
    'grpc.ssl_target_name_override': 'localhost',
  });
  t.teardown(() => raw.close());
  const send = (bytes: Buffer) =>
    new Promise<unknown>((res, rej) =>
      raw.makeUnaryRequest(
        '/signer.v1.Signer/Sign',
        (b: Buffer) => b,
        (b: Buffer) => b,
        bytes,
        (e, r) => (e ? rej(e) : res(r)),
      ),
    );
  // A length past the end of an unknown field; a field with wire type 7; a tag without its value.
  for (const bytes of [Buffer.from('7a0561', 'hex'), Buffer.from('0f', 'hex'), Buffer.from('12', 'hex')]) {
    const d = decodeError(await refusal(send(bytes)));
    t.same(
      [d.code, d.reason, d.metadata.method],
      [status.INVALID_ARGUMENT, 'REQUEST_INVALID', 'Sign'],
      bytes.toString('hex'),
    );
  }
});

t.test('requests in flight per client are capped with RetryInfo', async (t) => {
  hold();
  const inFlight = Array.from({ length: LIMITS.maxInFlightPerClient }, () => sign('hot-k1'));
  t.ok(await eventually(() => gate.waiting === LIMITS.maxInFlightPerClient), 'four signs wait in the HSM');
  const d = await refused(t, sign('hot-k1'), status.RESOURCE_EXHAUSTED, 'CLIENT_OVERLOADED');
  t.ok(d.retryDelayMs! > 0, `RetryInfo says when to retry (${d.retryDelayMs} ms)`);
  t.equal(d.metadata.limit, String(LIMITS.maxInFlightPerClient));
  await refused(t, call(engine.signer, 'ListKeys', {}), status.RESOURCE_EXHAUSTED, 'CLIENT_OVERLOADED');
  const other = await call<{ keys: unknown[] }>(ts.as('other-engine').signer, 'ListKeys', {});
  t.ok(Array.isArray(other.keys), 'another client is not affected');
  release();
  const done = await Promise.all(inFlight);
  t.equal(done.length, LIMITS.maxInFlightPerClient, 'the held requests complete');
  t.match(await sign('hot-k1'), { keyId: 'hot-k1' }, 'their slots are free again');
});

t.test('WatchKeys: streams per client are capped, and a client that stops reading gets each change once', async (t) => {
  const open = Array.from(
    { length: LIMITS.maxWatchStreamsPerClient },
    () => (engine.signer as any).WatchKeys({}) as grpc.ClientReadableStream<{ keyId: string }>,
  );
  await Promise.all(open.map((s) => new Promise((r) => s.once('data', r))));
  const e = await streamError((engine.signer as any).WatchKeys({}));
  const d = decodeError(e);
  t.same(
    [d.code, d.reason, d.metadata.limit],
    [status.RESOURCE_EXHAUSTED, 'CLIENT_OVERLOADED', '3'],
    'the fourth stream is refused',
  );
  t.ok(d.retryDelayMs! > 0, 'with RetryInfo');
  for (const s of open) s.on('error', () => {}).cancel();
  const fourth = await eventually(async () => {
    const s = (engine.signer as any).WatchKeys({}) as grpc.ClientReadableStream<unknown>;
    const ok = await new Promise<boolean>((r) => s.once('data', () => r(true)).once('error', () => r(false)));
    s.on('error', () => {}).cancel();
    return ok;
  });
  t.ok(fourth, 'a cancelled stream frees its slot');

  // A raw HTTP/2 client with a 1 KiB window that stops reading: the server must stop writing.
  // (grpc-js clients keep reading into their own queue, so they cannot stand in for it.)
  // other-engine, which sees shared-* keys, has watch slots of its own.
  for (let i = 0; i < 60; i++)
    await call(admin.keyAdmin, 'CreateKey', { keyId: `shared-w-${i}`, algorithm: 'ED25519' });
  const c = ts.pki.clients['other-engine']!;
  const session = http2.connect(`https://${ts.address}`, {
    ca: ts.pki.caCert,
    cert: c.cert,
    key: c.key,
    servername: 'localhost',
    settings: { initialWindowSize: 1024 },
  });
  session.on('error', () => {});
  t.teardown(() => session.destroy());
  const stream = session.request({
    ':method': 'POST',
    ':path': '/signer.v1.Signer/WatchKeys',
    'content-type': 'application/grpc',
    te: 'trailers',
  });
  stream.on('error', () => {});
  stream.end(Buffer.alloc(5)); // one empty WatchKeysRequest: every key
  stream.pause();
  await new Promise((r) => setTimeout(r, 500));
  for (let i = 0; i < 4; i++) await call(admin.keyAdmin, 'RotateKey', { keyId: 'shared-w-59', overlapSeconds: 60 });
  const got: Array<{ keyId: string; version: number; state: string }> = [];
  const decode = signerV1.Signer.service.WatchKeys!.responseDeserialize;
  let pending = Buffer.alloc(0);
  stream.on('data', (chunk: Buffer) => {
    pending = Buffer.concat([pending, chunk]);
    while (pending.length >= 5 && pending.length >= 5 + pending.readUInt32BE(1)) {
      got.push(decode(pending.subarray(5, 5 + pending.readUInt32BE(1))) as (typeof got)[number]);
      pending = pending.subarray(5 + pending.readUInt32BE(1));
    }
  });
  stream.resume();
  t.ok(
    await eventually(() => got.some((k) => k.keyId === 'shared-w-59' && k.version === 5), 10_000),
    'the latest version arrives once it reads again',
  );
  const forKey = got.filter((k) => k.keyId === 'shared-w-59');
  // Unthrottled, every rotation would resend the whole history: 1 + 2 + 3 + 4 + 5 messages.
  t.equal(forKey.length, 5, 'the key that changed while the client was not reading is sent once, as it is now');
  t.same(
    forKey.map((k) => [k.version, k.state]),
    [
      [1, 'VERIFY_ONLY'],
      [2, 'VERIFY_ONLY'],
      [3, 'VERIFY_ONLY'],
      [4, 'VERIFY_ONLY'],
      [5, 'ACTIVE'],
    ],
  );
  t.equal(new Set(got.map((k) => k.keyId)).size, 60, 'every key it may see arrived');
});

t.test('the server caps concurrent streams per connection in its HTTP/2 settings', async (t) => {
  const c = ts.pki.clients['payment-engine']!;
  const session = http2.connect(`https://${ts.address}`, {
    ca: ts.pki.caCert,
    cert: c.cert,
    key: c.key,
    servername: 'localhost',
  });
  t.teardown(() => session.destroy());
  const settings = await new Promise<http2.Settings>((r) => session.once('remoteSettings', r));
  t.equal(
    settings.maxConcurrentStreams,
    LIMITS.maxConcurrentStreams,
    'SETTINGS_MAX_CONCURRENT_STREAMS = limits.maxConcurrentStreams',
  );
});

/** The error a server stream ends with. */
function streamError(s: grpc.ClientReadableStream<unknown>): Promise<grpc.ServiceError> {
  return new Promise((resolve, reject) => {
    s.on('data', () => {});
    s.on('error', resolve);
    s.on('end', () => reject(new Error('the stream ended without an error')));
  });
}

t.test('the status of every refusal above fits a default client', async (t) => {
  const e = await refusal(sign('x'.repeat(7000)));
  t.ok(statusBytes(e) < CLIENT_METADATA_LIMIT, `${statusBytes(e)} bytes`);
});
