import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { copyFile, rm } from 'node:fs/promises';
import * as grpc from '@grpc/grpc-js';
import { hexlify, Interface, Transaction } from 'ethers';
import t from 'tap';
import { ALICE, transfer } from '../harness/evm.js';
import { OPEN_POLICY, refusal, refused, startTestSigner, TEST_TOKEN } from '../harness/signer.js';
import { call, nowTimestamp } from '../src/client/client.js';
import { decodeError } from '../src/client/errors.js';
import { certificateSigner, signingInterceptor } from '../src/client/request-signing.js';
import { DEFAULT_BATCH_RESPONSE_BYTES } from '../src/infra/config/schema.js';
import { signerV1 } from '../src/infra/grpc/proto.js';

// Issue 11, point 7: a committed batch's results always reach the client. A batch whose
// response could exceed what a default client reads is refused before anything is reserved;
// the results of a committed batch can be read back in pages by batch id, by the client that
// sent it only. Real signer over mTLS, real SoftHSM, every signature checked by ethers.

const ITEMS = 10_000;
const ts = await startTestSigner({
  config: {
    // The policy's batch limit raised to the hard cap; the response limit left at its default.
    policies: { open: { ...OPEN_POLICY, batch: { ...OPEN_POLICY.batch, maxItems: ITEMS } } },
  },
  hsm: { sessions: 4, batchSessionWaitMs: 300_000 },
});
t.teardown(() => ts.close());
// 10,000 signatures made and 10,000 recovered: minutes on a loaded 2-core machine, past tap's default.
t.setTimeout(900_000);
/** Default client limits: grpc-js reads at most 4 MiB. */
const engine = ts.as('payment-engine');
const admin = ts.as('security-admin');
const key = await call<{ evmAddress: string }>(admin.keyAdmin, 'CreateKey', {
  keyId: 'payout-erc20',
  algorithm: 'ECDSA_SECP256K1',
});

const erc20 = new Interface(['function transfer(address to, uint256 amount)']);
/** An ERC-20 transfer of `amount` at `nonce`, as the payment engine sends it. */
const item = (nonce: number, amount: bigint) =>
  transfer({
    nonce,
    to: TEST_TOKEN,
    value: 0n,
    gasLimit: 65_000n,
    data: erc20.encodeFunctionData('transfer', [ALICE, amount]),
  }).payload;

type Signed = { evm: { signedTx: Buffer }; requestId: string };
type Result = { signed?: Signed | null; error?: { reason: string } | null };
const signBatch = (batchId: string, items: object[], client = engine.signer) =>
  call<{ batchId: string; results: Result[] }>(
    client,
    'SignBatch',
    { batchId, keyId: 'payout-erc20', clientTime: nowTimestamp(), items },
    600_000,
  );
type Page = { batchId: string; firstIndex: number; results: Result[]; nextPageToken: string };
const getPage = (batchId: string, pageToken = '', pageSize = 0, client = engine.signer) =>
  call<Page>(client, 'GetBatchResults', { batchId, pageToken, pageSize }, 60_000);
/** Every result of a batch, page by page, checking each page starts where the last one ended. */
async function allPages(batchId: string, pageSize: number, client = engine.signer): Promise<Result[]> {
  const out: Result[] = [];
  let token = '';
  do {
    const page = await getPage(batchId, token, pageSize, client);
    if (page.firstIndex !== out.length) throw new Error(`page starts at ${page.firstIndex}, expected ${out.length}`);
    out.push(...page.results);
    token = page.nextPageToken;
  } while (token !== '');
  return out;
}
/** How many results are the key's ERC-20 transfers of `amount(nonce)` at nonces first.. in order. */
function verified(results: Result[], first: number, amount: (nonce: number) => bigint): number {
  let good = 0;
  results.forEach((r, i) => {
    if (!r.signed) return;
    const tx = Transaction.from(hexlify(r.signed.evm.signedTx));
    const [to, value] = erc20.decodeFunctionData('transfer', tx.data);
    // ethers recovers the sender from the signature: the key's own address or nothing.
    const ok = tx.from === key.evmAddress && tx.nonce === first + i && tx.to?.toLowerCase() === TEST_TOKEN;
    if (ok && String(to).toLowerCase() === ALICE && value === amount(first + i)) good++;
  });
  return good;
}

const refusedId = randomUUID();
let maxItems = 0;
t.test('10,000 ERC-20 items: refused up front, nothing reserved', async (t) => {
  t.equal(ts.config.limits.batchResponseBytes, DEFAULT_BATCH_RESPONSE_BYTES, 'the default response limit');
  const items = Array.from({ length: ITEMS }, (_, n) => item(n, 1000n + BigInt(n)));
  const started = Date.now();
  const d = await refused(t, signBatch(refusedId, items), grpc.status.RESOURCE_EXHAUSTED, 'BATCH_RESPONSE_TOO_LARGE');
  t.comment(`refused in ${Date.now() - started} ms`);
  maxItems = Number(d.metadata.maxItems);
  t.ok(maxItems > 0 && maxItems < ITEMS, `metadata maxItems ${maxItems}`);
  t.equal(d.metadata.limitBytes, String(DEFAULT_BATCH_RESPONSE_BYTES));
  await refused(t, getPage(refusedId), grpc.status.NOT_FOUND, 'BATCH_NOT_FOUND');
});

const batches: Array<{ id: string; first: number; count: number; signedTx: string[] }> = [];
t.test('the same nonces, other amounts, in batches of maxItems: all signed, default client', async (t) => {
  // Had the refused batch reserved its nonces, another payload for them would be refused
  // NONCE_ALREADY_SIGNED, and its batch id BATCH_ID_REUSED: the first part reuses both.
  for (let first = 0; first < ITEMS; first += maxItems) {
    const count = Math.min(maxItems, ITEMS - first);
    const id = first === 0 ? refusedId : randomUUID();
    const items = Array.from({ length: count }, (_, k) => item(first + k, 2000n + BigInt(first + k)));
    const started = Date.now();
    const res = await signBatch(id, items);
    t.comment(`${count} items signed and returned in ${Date.now() - started} ms`);
    t.equal(res.results.length, count, `batch from nonce ${first}: every result arrived`);
    t.equal(res.results.filter((r) => r.signed).length, count, 'each signed (verified below, compared with the pages)');
    batches.push({ id, first, count, signedTx: res.results.map((r) => r.signed!.evm.signedTx.toString('hex')) });
  }
  t.equal(
    batches.reduce((n, b) => n + b.count, 0),
    ITEMS,
  );
});

t.test('every signature of the 10,000 is retrievable through paging with a default client', async (t) => {
  let total = 0;
  for (const [k, b] of batches.entries()) {
    // Pages of 1000, and the default page size for one batch.
    const results = await allPages(b.id, k === 0 ? 0 : 1000);
    t.equal(results.length, b.count, `batch from nonce ${b.first}: ${b.count} results`);
    const same = results.filter((r, i) => r.signed?.evm.signedTx.toString('hex') === b.signedTx[i]).length;
    t.equal(same, b.count, 'the pages hold what SignBatch returned');
    total += verified(results, b.first, (n) => 2000n + BigInt(n));
  }
  t.equal(total, ITEMS, 'all 10,000 recovered to the key’s address by ethers, at their nonces and amounts');
});

t.test('another client finds no batch of it; the same answer as for an unknown id', async (t) => {
  const other = ts.as('other-engine');
  const theirs = await refused(
    t,
    getPage(batches[0]!.id, '', 0, other.signer),
    grpc.status.NOT_FOUND,
    'BATCH_NOT_FOUND',
  );
  const unknownId = randomUUID();
  const unknown = await refused(t, getPage(unknownId, '', 0, other.signer), grpc.status.NOT_FOUND, 'BATCH_NOT_FOUND');
  t.equal(theirs.message.replace(batches[0]!.id, 'ID'), unknown.message.replace(unknownId, 'ID'), 'same message');
  t.same(Object.keys(theirs.metadata), Object.keys(unknown.metadata), 'same metadata');
  await refused(t, getPage(batches[0]!.id, '', 0, admin.signer), grpc.status.PERMISSION_DENIED, 'NOT_AUTHORIZED');
  await refused(t, getPage(batches[0]!.id, 'x'), grpc.status.INVALID_ARGUMENT, 'REQUEST_INVALID');
  await refused(t, getPage(batches[0]!.id, '', 1001), grpc.status.INVALID_ARGUMENT, 'REQUEST_INVALID');
  const past = await getPage(batches[0]!.id, String(batches[0]!.count));
  t.same([past.results.length, past.nextPageToken], [0, ''], 'a token past the end: an empty last page');
});

t.test('a response lost after the commit: the results are read back in pages', async (t) => {
  // A client that reads at most 64 KiB: the batch commits, its response cannot be read.
  const pair = ts.pki.clients['payment-engine']!;
  const narrow = new signerV1.Signer(ts.address, grpc.credentials.createSsl(ts.pki.caCert, pair.key, pair.cert), {
    'grpc.ssl_target_name_override': 'localhost',
    'grpc.default_authority': 'localhost',
    'grpc.max_receive_message_length': 64 * 1024,
    // It signs its requests as every payment-engine client does (requireSignedRequests).
    interceptors: [signingInterceptor(certificateSigner({ cert: pair.cert, key: pair.key }))],
  });
  t.teardown(() => narrow.close());
  const id = randomUUID();
  const items = Array.from({ length: 300 }, (_, k) => item(ITEMS + k, 3000n + BigInt(k)));
  const lost = decodeError(await refusal(signBatch(id, items, narrow)));
  t.equal(lost.code, grpc.status.RESOURCE_EXHAUSTED, 'the client could not read the response');
  t.match(lost.message, /larger than max/i);
  // The nonces are spent: another payload for one of them is refused.
  await refused(t, signBatch(randomUUID(), [item(ITEMS, 1n)]), grpc.status.ALREADY_EXISTS, 'NONCE_ALREADY_SIGNED');
  const results = await allPages(id, 100, narrow);
  t.equal(results.length, 300);
  t.equal(
    verified(results, ITEMS, (n) => 3000n + BigInt(n - ITEMS)),
    300,
    'all 300 through the narrow client',
  );
  const again = await signBatch(id, items);
  t.same(
    again.results.map((r) => r.signed!.evm.signedTx.toString('hex')),
    results.map((r) => r.signed!.evm.signedTx.toString('hex')),
    'the pages hold exactly what a retry of the batch returns',
  );
});

t.test('a store restored from an older copy releases no stored result', async (t) => {
  // A file-level backup, then one more batch commits (the rollback mark moves past the copy).
  const db = `${ts.dir}/signer.db`;
  await copyFile(db, `${db}.bak`);
  if (existsSync(`${db}-wal`)) await copyFile(`${db}-wal`, `${db}-wal.bak`);
  await signBatch(randomUUID(), [item(ITEMS + 300, 1n)]);
  await ts.restart(async () => {
    await copyFile(`${db}.bak`, db);
    await rm(`${db}-shm`, { force: true });
    if (existsSync(`${db}-wal.bak`)) await copyFile(`${db}-wal.bak`, `${db}-wal`);
  });
  // The restored copy still holds the first batch's results: they do not leave through paging.
  await refused(t, getPage(batches[0]!.id), grpc.status.FAILED_PRECONDITION, 'STORE_ROLLED_BACK');
});
