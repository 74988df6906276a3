import { SignerError } from '../../core/errors.js';
import type { WirePayload } from './requests.js';

/**
 * Upper bounds on the encoded size of batch responses (proto/signer/v1/signer.proto), so that a
 * batch whose response a client could not read is refused before a nonce is reserved (issue 11,
 * point 7: 10,000 EVM results of ~480 bytes exceed the 4 MiB receive limit of default gRPC
 * clients, after the nonces are spent). Every field is counted at its largest encoding; only a
 * signed transaction's length depends on the request, and it is bounded by the unsigned one's.
 * test/batch-size.test.ts encodes the largest results and checks these bounds hold.
 */

/** Bytes of a varint. */
export function varintBytes(n: number): number {
  let bytes = 1;
  for (let v = n; v >= 0x80; v = Math.floor(v / 128)) bytes++;
  return bytes;
}

/** Bytes of a length-delimited field (string, bytes, message): tag, length, content. */
export const fieldBytes = (len: number): number => 1 + varintBytes(len) + len;

/** Tag plus the longest varint of each scalar type (negative int32 and enums take ten). */
const UINT32 = 1 + 5;
const UINT64 = 1 + 10;
const INT32 = 1 + 10;
const ENUM = 1 + 10;

/** The longest ids the grammars admit (src/signer/grpc/ids.ts; the test checks they agree). */
export const MAX_IDS = { key: 64, request: 128, batch: 100 } as const;
const MAX_KEY_ID = MAX_IDS.key;
/** "<batch id>#<index>", or a Sign request id replayed as an item: the request id grammar's 128. */
const MAX_REQUEST_ID = MAX_IDS.request;
const MAX_BATCH_ID = MAX_IDS.batch;
/** Every algorithm's signature is 64 bytes (r||s, R||S). */
const SIGNATURE = 64;
/** An EIP-55 address. */
const ADDRESS = 42;
/** A GetBatchResults page token: an item index in decimal. */
export const MAX_PAGE_TOKEN = 16;

/**
 * How much longer a signed EVM transaction is than the unsigned one the client sent: y-parity,
 * r and s (at most 1 + 33 + 33 RLP bytes) in place of EIP-155's (chainId, 0, 0), or appended
 * to an EIP-1559 list, plus up to 4 more bytes of list header. Checked against the largest
 * transactions the decoder admits in test/batch-size.test.ts.
 */
export const SIGNED_TX_GROWTH = 80;

/** Item error messages are cut to this many UTF-8 bytes, so an item error has a bound too. */
export const MAX_ITEM_MESSAGE_BYTES = 256;
/** Longer than any Reason name. */
const MAX_REASON = 64;

/** SignResponse without `evm`: key id, version, algorithm, signature, recovery id, request id. */
const SIGN_RESPONSE_BASE =
  fieldBytes(MAX_KEY_ID) + UINT32 + ENUM + fieldBytes(SIGNATURE) + UINT32 + fieldBytes(MAX_REQUEST_ID);

/** SignedEvmTransaction: r, s, v, y_parity, signed_tx, tx_hash, chain_id, nonce, from. */
const evmBytes = (signedTx: number) =>
  fieldBytes(fieldBytes(32) * 3 + UINT64 + UINT32 + fieldBytes(signedTx) + UINT64 + UINT64 + fieldBytes(ADDRESS));

/** ItemError: code, reason, message. */
const ITEM_ERROR = fieldBytes(INT32 + fieldBytes(MAX_REASON) + fieldBytes(MAX_ITEM_MESSAGE_BYTES));

/**
 * One `results` entry at its largest, whether the item is signed or failed: `signedTxBytes` is
 * the signed transaction's length for an EVM item, undefined for a digest or a message.
 */
export function resultBound(signedTxBytes: number | undefined): number {
  const response = SIGN_RESPONSE_BASE + (signedTxBytes === undefined ? 0 : evmBytes(signedTxBytes));
  const batchResult = Math.max(fieldBytes(response), ITEM_ERROR);
  return fieldBytes(batchResult);
}

/** The bound of one request item's result, from its kind and, for EVM, its transaction's length. */
export function itemBound(item: WirePayload): number {
  // By the field, not only the oneof's name: whatever is present is counted at its largest.
  const tx = item.payload === 'evmTransaction' || item.evmTransaction ? item.evmTransaction : undefined;
  return tx || item.payload === 'evmTransaction'
    ? resultBound((tx?.unsignedTx?.length ?? 0) + SIGNED_TX_GROWTH)
    : resultBound(undefined);
}

/** SignBatchResponse's own fields: batch_id. */
export const BATCH_RESPONSE_BASE = fieldBytes(MAX_BATCH_ID);
/** GetBatchResultsResponse's own fields: batch_id, first_index, next_page_token. */
export const PAGE_RESPONSE_BASE = fieldBytes(MAX_BATCH_ID) + UINT32 + fieldBytes(MAX_PAGE_TOKEN);

/**
 * Refuses, before anything is reserved, a batch whose response could exceed `limitBytes`
 * (BATCH_RESPONSE_TOO_LARGE). Metadata `maxItems` is how many of its leading items fit, so
 * the client can split it; `limitBytes` and `boundBytes` say why.
 */
export function requireBatchResponseFits(items: readonly WirePayload[], limitBytes: number): void {
  let total = BATCH_RESPONSE_BASE;
  let fit = 0;
  for (const item of items) {
    total += itemBound(item);
    if (total <= limitBytes) fit++;
  }
  if (total <= limitBytes) return;
  throw new SignerError(
    'BATCH_RESPONSE_TOO_LARGE',
    `the response to these ${items.length} items could reach ${total} bytes, more than the ${limitBytes} ` +
      `a client is sent; nothing was reserved: send at most ${fit} such items per batch`,
    { maxItems: String(fit), limitBytes: String(limitBytes), boundBytes: String(total), items: String(items.length) },
  );
}
