import { getBytes, Interface, Transaction, Wallet } from 'ethers';
import t from 'tap';
import { ALICE, transfer } from '../harness/evm.js';
import { TEST_TOKEN } from '../harness/signer.js';
import { decodeError } from '../src/client/errors.js';
import { DEFAULT_BATCH_RESPONSE_BYTES } from '../src/infra/config/schema.js';
import { signerV1 } from '../src/infra/grpc/proto.js';
import { bounded, toServiceError } from '../src/infra/grpc/status.js';
import {
  BATCH_RESPONSE_BASE,
  itemBound,
  MAX_IDS,
  MAX_ITEM_MESSAGE_BYTES,
  MAX_PAGE_TOKEN,
  PAGE_RESPONSE_BASE,
  requireBatchResponseFits,
  resultBound,
  SIGNED_TX_GROWTH,
} from '../src/signer/grpc/batch-size.js';
import { ID_GRAMMAR } from '../src/signer/grpc/ids.js';

// Issue 11, point 7: the bounds SignBatch refuses by must hold for the largest results the
// signer can return. Each is checked by encoding such a result with the service's own
// serializer (proto-loader / protobufjs), not by re-deriving the arithmetic.

const methods = (signerV1.Signer as unknown as { service: Record<string, { responseSerialize(v: unknown): Buffer }> })
  .service;
const encodeBatch = (v: unknown) => methods.SignBatch!.responseSerialize(v).length;
const encodePage = (v: unknown) => methods.GetBatchResults!.responseSerialize(v).length;

const U64_MAX = '18446744073709551615';
const U32_MAX = 2 ** 32 - 1;
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);
const U256_MAX = 2n ** 256n - 1n;
const erc20 = new Interface(['function transfer(address to, uint256 amount)']);

/** A SignResponse with every field at its largest encoding; `signedTx` bytes long when EVM. */
function largestResponse(signedTx: number | undefined) {
  return {
    keyId: 'k'.repeat(MAX_IDS.key),
    keyVersion: U32_MAX,
    algorithm: 'FROST_SECP256K1_TR',
    signature: Buffer.alloc(64, 0xff),
    recoveryId: U32_MAX,
    requestId: 'r'.repeat(MAX_IDS.request),
    evm:
      signedTx === undefined
        ? null
        : {
            r: Buffer.alloc(32, 0xff),
            s: Buffer.alloc(32, 0xff),
            v: U64_MAX,
            yParity: U32_MAX,
            signedTx: Buffer.alloc(signedTx, 0xff),
            txHash: Buffer.alloc(32, 0xff),
            chainId: U64_MAX,
            nonce: U64_MAX,
            from: `0x${'F'.repeat(40)}`,
          },
  };
}
/** An item error at its largest: negative code, longest reason, a message cut as the handler cuts it. */
const largestError = {
  error: {
    code: -(2 ** 31),
    reason: 'X'.repeat(64),
    message: bounded('€'.repeat(1000), MAX_ITEM_MESSAGE_BYTES),
  },
};

t.test('the id lengths the bounds assume are the grammars’ longest', async (t) => {
  for (const kind of ['key', 'request', 'batch'] as const) {
    t.ok(ID_GRAMMAR[kind].pattern.test('a'.repeat(MAX_IDS[kind])), `${kind}: ${MAX_IDS[kind]} admitted`);
    t.notOk(ID_GRAMMAR[kind].pattern.test('a'.repeat(MAX_IDS[kind] + 1)), `${kind}: one more refused`);
  }
});

t.test('a signed EVM transaction is at most SIGNED_TX_GROWTH bytes longer than the unsigned one', async (t) => {
  let worst = 0;
  const wallets = Array.from({ length: 8 }, () => Wallet.createRandom());
  for (const data of [0, 1, 40, 55, 56, 200, 1000, 70_000]) {
    for (const type of [0, 2]) {
      // The largest numbers the decoder admits (chain id and nonce up to 2^53 - 1).
      const tx = Transaction.from({
        type,
        chainId: MAX_SAFE,
        nonce: Number.MAX_SAFE_INTEGER,
        to: ALICE,
        value: U256_MAX,
        gasLimit: U256_MAX,
        ...(type === 2 ? { maxFeePerGas: U256_MAX, maxPriorityFeePerGas: U256_MAX } : { gasPrice: U256_MAX }),
        data: `0x${'ab'.repeat(data)}`,
      });
      const unsigned = getBytes(tx.unsignedSerialized).length;
      for (const w of wallets) {
        const signed = getBytes(await w.signTransaction(tx)).length;
        worst = Math.max(worst, signed - unsigned);
      }
    }
  }
  t.ok(worst <= SIGNED_TX_GROWTH, `largest growth ${worst} <= ${SIGNED_TX_GROWTH}`);
});

t.test('the largest result of each kind encodes within its bound', async (t) => {
  for (const signedTx of [0, 100, 127, 128, 16_383, 16_384, 70_080]) {
    const one = encodeBatch({ batchId: 'b'.repeat(MAX_IDS.batch), results: [{ signed: largestResponse(signedTx) }] });
    t.ok(one <= BATCH_RESPONSE_BASE + resultBound(signedTx), `EVM, ${signedTx}-byte signed tx: ${one} bytes`);
  }
  const digest = encodeBatch({ batchId: 'b'.repeat(MAX_IDS.batch), results: [{ signed: largestResponse(undefined) }] });
  t.ok(digest <= BATCH_RESPONSE_BASE + resultBound(undefined), `digest or message: ${digest} bytes`);
  const error = encodeBatch({ batchId: 'b'.repeat(MAX_IDS.batch), results: [largestError] });
  t.ok(error <= BATCH_RESPONSE_BASE + resultBound(undefined), `item error: ${error} bytes`);

  // 10,000 of the largest ERC-20 results, as one response and as one page.
  const unsigned = transfer({
    to: TEST_TOKEN,
    value: 0n,
    data: erc20.encodeFunctionData('transfer', [ALICE, U256_MAX]),
  }).payload;
  const bound = itemBound(unsigned);
  const signedTx = unsigned.evmTransaction.unsignedTx.length + SIGNED_TX_GROWTH;
  const results = Array.from({ length: 10_000 }, () => ({ signed: largestResponse(signedTx) }));
  const all = encodeBatch({ batchId: 'b'.repeat(MAX_IDS.batch), results });
  t.ok(all <= BATCH_RESPONSE_BASE + 10_000 * bound, `10,000 largest ERC-20 results: ${all} <= ${10_000 * bound}`);
  const page = encodePage({
    batchId: 'b'.repeat(MAX_IDS.batch),
    firstIndex: U32_MAX,
    results,
    nextPageToken: '9'.repeat(MAX_PAGE_TOKEN),
  });
  t.ok(page <= PAGE_RESPONSE_BASE + 10_000 * bound, `as a page: ${page} bytes`);
});

t.test('SignBatch refuses up front what could exceed the limit, naming how many items fit', async (t) => {
  const erc20Item = (n: number) =>
    transfer({ nonce: n, to: TEST_TOKEN, value: 0n, data: erc20.encodeFunctionData('transfer', [ALICE, 10n ** 6n]) })
      .payload;
  const items = Array.from({ length: 10_000 }, (_, i) => erc20Item(i));
  let refusal: unknown;
  try {
    requireBatchResponseFits(items, DEFAULT_BATCH_RESPONSE_BYTES);
  } catch (e) {
    refusal = e;
  }
  const d = decodeError(toServiceError(refusal) as never);
  t.equal(d.code, 8, 'RESOURCE_EXHAUSTED');
  t.equal(d.reason, 'BATCH_RESPONSE_TOO_LARGE');
  const max = Number(d.metadata.maxItems);
  t.ok(max > 1000 && max < 10_000, `maxItems ${max}`);
  t.equal(d.metadata.limitBytes, String(DEFAULT_BATCH_RESPONSE_BYTES));
  t.doesNotThrow(() => requireBatchResponseFits(items.slice(0, max), DEFAULT_BATCH_RESPONSE_BYTES), 'maxItems fit');
  t.throws(() => requireBatchResponseFits(items.slice(0, max + 1), DEFAULT_BATCH_RESPONSE_BYTES), 'one more does not');
  t.ok(DEFAULT_BATCH_RESPONSE_BYTES < 4 * 1024 * 1024 - 5, 'the default is under the 4 MiB client limit and frame');

  // The real size of a typical ERC-20 result against its bound (what the bound costs in items).
  const tx = Transaction.from(transfer({ to: TEST_TOKEN, value: 0n }).tx);
  const signed = getBytes(await Wallet.createRandom().signTransaction(tx)).length;
  const real = encodeBatch({
    batchId: 'b'.repeat(36),
    results: [
      {
        signed: {
          ...largestResponse(signed),
          keyId: 'payout-1',
          keyVersion: 1,
          recoveryId: 1,
          requestId: `${'b'.repeat(36)}#9999`,
          evm: { ...largestResponse(signed).evm!, v: '1', yParity: 1, chainId: '1', nonce: '9999' },
        },
      },
    ],
  });
  t.comment(`typical ERC-20 result ~${real - 38} bytes, bound ${itemBound(erc20Item(0))}`);
});
