import { secp256k1 } from '@noble/curves/secp256k1.js';
import { keccak_256 } from '@noble/hashes/sha3.js';
import {
  BaseError,
  bytesToHex,
  fromRlp,
  getAddress,
  type Hex,
  hexToBigInt,
  hexToBytes,
  keccak256,
  parseTransaction,
  serializeTransaction,
  type TransactionSerializableEIP1559,
  type TransactionSerializableLegacy,
} from 'viem';
import { SignerError } from '../errors.js';

/** What an unsigned EVM transaction asks for, as decoded from the exact bytes that get signed. */
export interface EvmIntent {
  type: 'eip1559' | 'legacy';
  chainId: bigint;
  nonce: bigint;
  /** EIP-55 checksummed recipient; null for contract creation. */
  to: `0x${string}` | null;
  value: bigint;
  /** Calldata (or init code when `to` is null); '0x' when empty. */
  data: `0x${string}`;
  gas: bigint;
  /** EIP-1559: maxFeePerGas. Legacy: gasPrice. */
  maxFeePerGas: bigint;
  /** EIP-1559: maxPriorityFeePerGas. Legacy: null. */
  maxPriorityFeePerGas: bigint | null;
}

export interface DecodedEvmTx {
  readonly intent: Readonly<EvmIntent>;
  /** keccak256 of the unsigned serialization: the 32-byte digest the key must sign. */
  readonly signingHash: Uint8Array;
}

export interface SignedEvmTx {
  r: Uint8Array;
  s: Uint8Array;
  yParity: 0 | 1;
  /** EIP-1559: yParity. Legacy: chainId * 2 + 35 + yParity (EIP-155). */
  v: bigint;
  /** Broadcastable signed transaction. */
  signedRlp: Uint8Array;
  /** Transaction hash as seen on chain: keccak256(signedRlp). */
  txHash: Uint8Array;
}

type UnsignedTx = TransactionSerializableEIP1559 | TransactionSerializableLegacy;

/**
 * What assembly needs, kept out of the caller's reach: a DecodedEvmTx is handed around by
 * other layers, and a mutated copy must not be able to change what gets serialized.
 */
const internal = new WeakMap<DecodedEvmTx, Internal>();

interface Internal {
  tx: UnsignedTx;
  unsignedHex: Hex;
  /** keccak256 of the unsigned bytes, as computed at decode: what `signingHash` must still hold. */
  hashHex: Hex;
  /** The unsigned RLP fields as decoded (JSON), which the signed serialization must keep. */
  fieldsJson: string;
}

const SECP256K1_N = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n;

const TYPED_TX_NAMES: Record<number, string> = {
  0x01: 'EIP-2930 access-list',
  0x03: 'EIP-4844 blob',
  0x04: 'EIP-7702 set-code',
};

function refuse(message: string, metadata: Record<string, string> = {}): never {
  throw new SignerError('PAYLOAD_INVALID', message, metadata);
}

/**
 * Largest chain id and nonce accepted. viem decodes both as JavaScript numbers, so larger values
 * cannot be represented exactly; both are far above any chain id in use and any reachable nonce
 * (EIP-2681 caps nonces at 2^64 - 1, EIP-2294 proposes chain ids below 2^63 - 36), and both fit
 * the store's signed 64-bit columns.
 */
export const MAX_EVM_CHAIN_ID = BigInt(Number.MAX_SAFE_INTEGER);
export const MAX_EVM_NONCE = BigInt(Number.MAX_SAFE_INTEGER);

/** Refuses an RLP integer field above `max`, before viem meets it. Other shapes are left to viem. */
function requireAtMost(field: unknown, name: string, max: bigint): void {
  if (typeof field !== 'string' || !/^0x[0-9a-fA-F]*$/.test(field)) return;
  // A value longer than 8 bytes is refused without being read: its length is all we say of it.
  if (field.length > 2 + 16 || rlpInt(field as Hex) > max) {
    refuse(`EVM transaction ${name} is above ${max} (2^53 - 1), the largest the signer decodes`, {
      field: name,
      max: String(max),
    });
  }
}

/** viem's shortMessage only describes the caller's own payload, so it is safe to pass on. */
function viemDetail(e: unknown): string {
  return e instanceof BaseError ? e.shortMessage : String((e as Error)?.message ?? e);
}

/** viem's hexToBigInt throws on '0x', which is how RLP spells zero. */
const rlpInt = (h: Hex): bigint => (h === '0x' ? 0n : hexToBigInt(h));

function isZeroField(field: unknown): boolean {
  return typeof field === 'string' && /^0x0*$/.test(field);
}

function decodeRlpList(body: Hex, what: string): unknown[] {
  let decoded: unknown;
  try {
    decoded = fromRlp(body, 'hex');
  } catch (e) {
    const name = e instanceof BaseError ? e.name : '';
    if (name === 'RlpTrailingBytesError') refuse(`${what} has trailing bytes after the RLP list`);
    if (name === 'PositionOutOfBoundsError') {
      refuse(`${what} is truncated: RLP length exceeds the input`);
    }
    refuse(`${what} is not valid RLP: ${viemDetail(e)}`);
  }
  // fromRlp also accepts a lone RLP string; a transaction body is always a list.
  if (!Array.isArray(decoded)) refuse(`${what} is not an RLP list`);
  return decoded;
}

/**
 * Decodes an unsigned EIP-1559 (type 2) or legacy EIP-155 transaction.
 *
 * Guarantees: re-encoding the decoded transaction reproduces `rlp` byte for byte, so `intent`
 * describes exactly what `signingHash` commits to; the chain id is non-zero (replay
 * protection); the input carries no signature. Anything else — including every viem decoding
 * error — is thrown as INVALID_ARGUMENT / PAYLOAD_INVALID.
 *
 * The caller must sign `signingHash` raw (no further hashing) and pass the result, together
 * with this very object, to `assembleSignedEvm`.
 */
export function decodeEvmTransaction(rlp: Uint8Array): DecodedEvmTx {
  if (rlp.length === 0) refuse('EVM transaction is empty');
  const first = rlp[0]!;
  const hex = bytesToHex(rlp);

  let type: EvmIntent['type'];
  if (first === 0x02) type = 'eip1559';
  else if (first >= 0xc0) type = 'legacy';
  else if (first < 0x80) {
    const name = TYPED_TX_NAMES[first];
    const which = `0x${first.toString(16).padStart(2, '0')}${name ? ` (${name})` : ''}`;
    refuse(
      `EVM transaction type ${which} is not supported; ` +
        'only EIP-1559 (type 0x02) and legacy EIP-155 transactions are',
    );
  } else refuse('EVM transaction is neither a typed envelope nor an RLP list');

  let fields: unknown[];
  if (type === 'eip1559') {
    fields = decodeRlpList(`0x${hex.slice(4)}`, 'EIP-1559 transaction');
    if (fields.length === 12) {
      refuse('EIP-1559 transaction is already signed; send the unsigned form');
    }
    if (fields.length !== 9) {
      refuse(`EIP-1559 transaction must have 9 fields, got ${fields.length}`);
    }
    if (isZeroField(fields[0])) {
      refuse('EIP-1559 transaction has chain id 0; a chain id is required');
    }
    requireAtMost(fields[0], 'chain id', MAX_EVM_CHAIN_ID);
    requireAtMost(fields[1], 'nonce', MAX_EVM_NONCE);
    // A non-empty access list is not part of EvmIntent, so policy could not see it.
    if (Array.isArray(fields[8]) && fields[8].length !== 0) {
      refuse('EIP-1559 transactions with an access list are not supported');
    }
  } else {
    fields = decodeRlpList(hex, 'legacy transaction');
    if (fields.length === 6) {
      refuse('legacy transaction has no chain id (pre-EIP-155); ' + 'its signature would be replayable on every chain');
    }
    if (fields.length !== 9) {
      refuse(`legacy transaction must have 9 fields (EIP-155), got ${fields.length}`);
    }
    // Unsigned EIP-155 form is [..., chainId, 0, 0]; anything in r or s means a signature.
    if (fields[7] !== '0x' || fields[8] !== '0x') {
      refuse('legacy transaction is already signed; send the unsigned EIP-155 form');
    }
    if (isZeroField(fields[6])) {
      refuse('legacy transaction has chain id 0; a chain id is required');
    }
    requireAtMost(fields[6], 'chain id', MAX_EVM_CHAIN_ID);
    requireAtMost(fields[0], 'nonce', MAX_EVM_NONCE);
  }

  let tx: UnsignedTx;
  let reencoded: Hex;
  try {
    tx = parseTransaction(hex) as UnsignedTx;
    reencoded = serializeTransaction(tx);
  } catch (e) {
    refuse(`EVM transaction could not be decoded: ${viemDetail(e)}`);
  }
  if (tx.type !== type) refuse(`EVM transaction decoded as ${tx.type}, expected ${type}`);
  // Catches non-canonical integers, wrong field shapes and anything viem silently dropped.
  if (reencoded !== hex) {
    refuse(
      'EVM transaction is not canonically encoded: ' + 're-encoding the decoded fields does not reproduce the input',
    );
  }

  const intent: EvmIntent =
    tx.type === 'eip1559'
      ? {
          type: 'eip1559',
          chainId: BigInt(tx.chainId),
          nonce: BigInt(tx.nonce ?? 0),
          to: tx.to ? getAddress(tx.to) : null,
          value: tx.value ?? 0n,
          data: tx.data ?? '0x',
          gas: tx.gas ?? 0n,
          maxFeePerGas: tx.maxFeePerGas ?? 0n,
          maxPriorityFeePerGas: tx.maxPriorityFeePerGas ?? 0n,
        }
      : {
          type: 'legacy',
          chainId: BigInt(tx.chainId ?? 0),
          nonce: BigInt(tx.nonce ?? 0),
          to: tx.to ? getAddress(tx.to) : null,
          value: tx.value ?? 0n,
          data: tx.data ?? '0x',
          gas: tx.gas ?? 0n,
          maxFeePerGas: tx.gasPrice ?? 0n,
          maxPriorityFeePerGas: null,
        };
  if (intent.chainId === 0n) refuse('EVM transaction has no chain id');

  const signingHash = keccak_256(rlp);
  const decoded: DecodedEvmTx = Object.freeze({ intent: Object.freeze(intent), signingHash });
  // The fields kept for assembly are those of the unsigned list (9 or 6 before the signature).
  const keep = type === 'eip1559' ? 9 : 6;
  const fieldsJson = JSON.stringify(fields.slice(0, keep));
  internal.set(decoded, { tx: Object.freeze(tx), unsignedHex: hex, hashHex: bytesToHex(signingHash), fieldsJson });
  return decoded;
}

/**
 * Combines a decoded transaction with an ECDSA signature over its `signingHash`.
 *
 * The caller must pass 32-byte big-endian r and s with s already normalised to low-s
 * (s <= n/2, with yParity flipped accordingly), and should have verified the signature against
 * the key. Violations are programming errors and throw a plain Error, as does a `tx` that did
 * not come from `decodeEvmTransaction` or whose signingHash was altered.
 *
 * Guarantees: `signedRlp` is the decoded unsigned transaction, field for field, plus exactly
 * this signature; `txHash` is keccak256(signedRlp).
 */
export function assembleSignedEvm(tx: DecodedEvmTx, r: Uint8Array, s: Uint8Array, yParity: 0 | 1): SignedEvmTx {
  const state = internal.get(tx);
  if (!state) throw new Error('assembleSignedEvm: tx was not produced by decodeEvmTransaction');
  // Compared with the hash computed at decode (kept out of reach): the caller's copy may have been altered.
  if (bytesToHex(tx.signingHash) !== state.hashHex) {
    throw new Error('assembleSignedEvm: signingHash does not match the decoded transaction');
  }
  if (r.length !== 32 || s.length !== 32) {
    throw new Error(`assembleSignedEvm: r and s must be 32 bytes, got ${r.length}, ${s.length}`);
  }
  if (yParity !== 0 && yParity !== 1) {
    throw new Error(`assembleSignedEvm: bad yParity ${String(yParity)}`);
  }
  const rHex = bytesToHex(r);
  const sHex = bytesToHex(s);
  const rN = hexToBigInt(rHex);
  const sN = hexToBigInt(sHex);
  if (rN === 0n || rN >= SECP256K1_N) throw new Error('assembleSignedEvm: r out of range');
  // High-s signatures are rejected by Ethereum nodes (EIP-2).
  if (sN === 0n || sN > SECP256K1_N / 2n) throw new Error('assembleSignedEvm: s is not low-s');

  const { tx: unsigned, unsignedHex, fieldsJson } = state;
  const v = unsigned.type === 'eip1559' ? BigInt(yParity) : BigInt(unsigned.chainId!) * 2n + 35n + BigInt(yParity);
  const prefix = unsigned.type === 'eip1559' ? 4 : 2; // hex chars of '0x' + type byte
  let signedHex: Hex;
  let after: Hex[];
  try {
    signedHex =
      unsigned.type === 'eip1559'
        ? serializeTransaction(unsigned, { r: rHex, s: sHex, yParity })
        : // v >= 35 makes viem take it verbatim rather than recompute it from a JS number.
          serializeTransaction(unsigned, { r: rHex, s: sHex, v });
    after = fromRlp(`0x${signedHex.slice(prefix)}`, 'hex') as Hex[];
  } catch (e) {
    throw new Error(`assembleSignedEvm: serialization failed: ${viemDetail(e)}`);
  }

  // Independent check that only the signature was added and it is the one given.
  const keep = unsigned.type === 'eip1559' ? 9 : 6;
  if (
    signedHex.slice(0, prefix) !== unsignedHex.slice(0, prefix) ||
    after.length !== keep + 3 ||
    JSON.stringify(after.slice(0, keep)) !== fieldsJson ||
    rlpInt(after[keep]!) !== v ||
    rlpInt(after[keep + 1]!) !== rN ||
    rlpInt(after[keep + 2]!) !== sN
  ) {
    throw new Error('assembleSignedEvm: signed serialization differs from the decoded transaction');
  }

  const signedRlp = hexToBytes(signedHex);
  return { r: new Uint8Array(r), s: new Uint8Array(s), yParity, v, signedRlp, txHash: keccak_256(signedRlp) };
}

/**
 * EIP-55 checksummed address of an uncompressed secp256k1 public key (0x04 || X || Y).
 * Throws a plain Error if the key is not 65 bytes or not a point on the curve: the key comes
 * from our own HSM, so a bad one is a bug, not a caller mistake.
 */
export function evmAddress(uncompressedPubKey65: Uint8Array): `0x${string}` {
  if (uncompressedPubKey65.length !== 65 || uncompressedPubKey65[0] !== 0x04) {
    throw new Error(`evmAddress: expected a 65-byte uncompressed key, got ${uncompressedPubKey65.length} bytes`);
  }
  secp256k1.Point.fromBytes(uncompressedPubKey65); // throws unless on the curve
  const hash = keccak256(uncompressedPubKey65.subarray(1));
  return getAddress(`0x${hash.slice(-40)}`);
}
