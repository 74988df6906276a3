import { randomBytes, randomUUID } from 'node:crypto';
import { TLSSocket } from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import { secp256k1 } from '@noble/curves/secp256k1.js';
import t from 'tap';
import { refused, startTestSigner } from '../harness/signer.js';
import { call, nowTimestamp, type SignerClients } from '../src/client/client.js';

// The signer reads a connection's TLS peer certificate once (src/infra/grpc/auth.ts), not at
// every call, and keeps each connection's identity to itself. This also fails when a grpc-js
// upgrade changes the internals the per-connection cache finds the HTTP/2 session through.

/** Server-side TLSSocket.getPeerCertificate calls, per socket. */
const reads = new Map<TLSSocket, number>();
const original = TLSSocket.prototype.getPeerCertificate;
TLSSocket.prototype.getPeerCertificate = function (this: TLSSocket, ...args: [boolean?]) {
  if ((this as unknown as { _tlsOptions?: { isServer?: boolean } })._tlsOptions?.isServer)
    reads.set(this, (reads.get(this) ?? 0) + 1);
  return original.apply(this, args as [true]);
} as typeof original;
t.teardown(() => {
  TLSSocket.prototype.getPeerCertificate = original;
});
const total = () => [...reads.values()].reduce((a, b) => a + b, 0);

const ts = await startTestSigner();
t.teardown(() => ts.close());
const admin = ts.as('security-admin');
const key = await call<{ publicKey: Buffer }>(admin.keyAdmin, 'CreateKey', {
  keyId: 'hot-cache',
  algorithm: 'ECDSA_SECP256K1',
});
const sign = (c: SignerClients, digest: Buffer) =>
  call<{ signature: Buffer }>(c.signer, 'Sign', {
    keyId: 'hot-cache',
    requestId: randomUUID(),
    clientTime: nowTimestamp(),
    digest,
  });

t.test('one read of the peer certificate per connection, however many calls', async (t) => {
  const engine = ts.as('payment-engine');
  const before = total();
  for (let i = 0; i < 20; i++) {
    const digest = randomBytes(32);
    const { signature } = await sign(engine, digest);
    t.ok(secp256k1.verify(signature, digest, key.publicKey, { prehash: false, lowS: true }), `signature ${i} verifies`);
  }
  t.equal(total() - before, 1, '20 calls on one connection read its certificate once');
});

t.test('each connection keeps its own identity', async (t) => {
  const before = total();
  const other = ts.as('other-engine');
  // other-engine may sign only with shared-* keys: refused as itself, not served as payment-engine.
  await refused(t, sign(other, randomBytes(32)), grpc.status.PERMISSION_DENIED, 'NOT_AUTHORIZED');
  const engine = ts.as('payment-engine');
  await sign(engine, randomBytes(32));
  await refused(t, sign(other, randomBytes(32)), grpc.status.PERMISSION_DENIED, 'NOT_AUTHORIZED');
  t.equal(total() - before, 2, 'two new connections, one read each');
  t.equal(reads.size, 4, 'four server-side connections in all (admin, three engines)');
});
