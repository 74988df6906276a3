import { writeFile } from 'node:fs/promises';
import { status } from '@grpc/grpc-js';
import { hexlify, Transaction } from 'ethers';
import t from 'tap';
import { transfer } from '../harness/evm.js';
import { makePki } from '../harness/pki.js';
import { startPostgres } from '../harness/postgres.js';
import { freePort, startSignerProcess } from '../harness/process.js';
import { testConfig } from '../harness/signer.js';
import { makeToken, tempDir } from '../harness/token.js';
import { call, connect, nowTimestamp, type SignerClients } from '../src/client/client.js';
import { decodeError } from '../src/client/errors.js';

// Two signer processes share one PostgreSQL database (and one token, as replicas share an HSM
// cluster). The same requests go to both at once: each request id and each account nonce must
// be signed exactly once, whichever replica wins.
const NONCES = 100;

const pg = await startPostgres();
t.teardown(() => pg.stop());
const tmp = await tempDir('replicas-');
t.teardown(() => tmp.cleanup());
const [pki, token] = await Promise.all([makePki(tmp.path), makeToken(tmp.path)]);

async function replica(name: string) {
  const [port, metricsPort] = [await freePort(), await freePort()];
  const file = `${tmp.path}/${name}.json`;
  await writeFile(
    file,
    JSON.stringify({
      ...testConfig(tmp.path, pki, token),
      listen: `127.0.0.1:${port}`,
      store: { postgres: { url: pg.url } },
      metrics: { listen: `127.0.0.1:${metricsPort}` },
      log: { level: 'info' },
      refreshMs: 500,
    }),
  );
  const proc = await startSignerProcess(file);
  t.teardown(() => proc.stop('SIGKILL'));
  const c = pki.clients['payment-engine']!;
  const client = connect(`127.0.0.1:${port}`, { ca: pki.caCert, cert: c.cert, key: c.key });
  t.teardown(() => client.close());
  const hsmSigns = async () => {
    const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    return Number(/^signer_hsm_sign_duration_seconds_count (\d+)/m.exec(text)?.[1] ?? NaN);
  };
  return { proc, client, port, hsmSigns };
}

const a = await replica('a');
const a_admin = connect(`127.0.0.1:${a.port}`, {
  ca: pki.caCert,
  cert: pki.clients['security-admin']!.cert,
  key: pki.clients['security-admin']!.key,
});
await call(a_admin.keyAdmin, 'CreateKey', { keyId: 'hot-shared', algorithm: 'ECDSA_SECP256K1' });
a_admin.close();
const b = await replica('b');

const requests = Array.from({ length: NONCES * 2 }, (_, i) => ({
  requestId: `race-${i}`,
  nonce: i % NONCES,
  payload: transfer({ nonce: i % NONCES, value: BigInt(1 + Math.floor(i / NONCES)) }).payload,
}));

async function send(client: SignerClients, r: { requestId: string; payload: object }, keyId = 'hot-shared') {
  for (;;) {
    try {
      const res = await call<{ evm: { signedTx: Buffer } }>(client.signer, 'Sign', {
        keyId,
        requestId: r.requestId,
        clientTime: nowTimestamp(),
        ...r.payload,
      });
      return { signed: hexlify(res.evm.signedTx) };
    } catch (e) {
      const d = decodeError(e as never);
      if (d.code === status.ABORTED) {
        await new Promise((res) => setTimeout(res, d.retryDelayMs ?? 50));
        continue;
      }
      return { refused: d.reason };
    }
  }
}

const results = await Promise.all(
  requests.map(async (r) => ({ r, viaA: await send(a.client, r), viaB: await send(b.client, r) })),
);
// Fire the whole set at both replicas at the same time as well.
const raced = await Promise.all(
  requests.flatMap((r) => [send(a.client, r), send(b.client, r)].map(async (p) => ({ r, out: await p }))),
);

t.test('each request id gets one answer from both replicas', async (t) => {
  const split = results.filter(({ viaA, viaB }) => JSON.stringify(viaA) !== JSON.stringify(viaB));
  t.same(split, [], 'A and B answer every request identically');
  const racedSplit = raced.filter(
    ({ r, out }) => JSON.stringify(out) !== JSON.stringify(results.find((x) => x.r === r)!.viaA),
  );
  t.equal(racedSplit.length, 0, 'the concurrent re-sends replay the same answers');
});

t.test('each account nonce is signed for exactly one payload', async (t) => {
  const byNonce = new Map<number, Set<string>>();
  const otherRefusals = results.filter(({ viaA }) => !('signed' in viaA) && viaA.refused !== 'NONCE_ALREADY_SIGNED');
  t.same(otherRefusals, [], 'the losers are refused with NONCE_ALREADY_SIGNED');
  for (const { r, viaA } of results) {
    if (!('signed' in viaA)) continue;
    byNonce.set(r.nonce, (byNonce.get(r.nonce) ?? new Set()).add(Transaction.from(viaA.signed!).unsignedSerialized));
  }
  t.equal(byNonce.size, NONCES, 'every nonce signed');
  t.ok(
    [...byNonce.values()].every((s) => s.size === 1),
    'never two payloads for one nonce',
  );
});

t.test('the HSM signed each winning payload exactly once across both replicas', async (t) => {
  const total = (await a.hsmSigns()) + (await b.hsmSigns());
  t.equal(total, NONCES, `${total} HSM signatures for ${NONCES} nonces`);
});

t.test('a key created on one replica is served by the other', async (t) => {
  const admin = connect(`127.0.0.1:${a.port}`, {
    ca: pki.caCert,
    cert: pki.clients['security-admin']!.cert,
    key: pki.clients['security-admin']!.key,
  });
  const key = await call<{ evmAddress: string }>(admin.keyAdmin, 'CreateKey', {
    keyId: 'hot-late',
    algorithm: 'ECDSA_SECP256K1',
  });
  admin.close();
  let signed: string | undefined;
  const until = Date.now() + 10_000;
  while (!signed && Date.now() < until) {
    const out = await send(b.client, { requestId: 'late-1', payload: transfer({ nonce: 0 }).payload }, 'hot-late');
    if ('signed' in out) signed = out.signed;
    else await new Promise((r) => setTimeout(r, 200));
  }
  t.ok(signed, 'replica B signs with it after its refresh');
  t.equal(Transaction.from(signed!).from, key.evmAddress);
});
