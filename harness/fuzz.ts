/**
 * Generators for test/fuzz.test.ts: malformed and mutated requests for the signer's gRPC API,
 * drawn from a seeded PRNG so a failing seed reproduces. Each case says how it is sent (as raw
 * bytes with pass-through serialisers, or as an object through proto-loader) and whether the
 * signer may accept it (only mutated transactions that still decode as valid ones).
 */
import { encodeRlp, getBytes, hexlify, Transaction } from 'ethers';
import { signerV1 } from '../src/infra/grpc/proto.js';
import { ALICE, GWEI } from './evm.js';

/** sfc32: a small seeded PRNG (test data only, not cryptography). */
export function prng(seed: number) {
  let a = 0x9e3779b9 | 0,
    b = 0x243f6a88 | 0,
    c = 0xb7e15162 | 0,
    d = seed | 0;
  const u32 = () => {
    const t = (((a + b) | 0) + d) | 0;
    d = (d + 1) | 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) | 0;
    c = ((c << 21) | (c >>> 11)) + t;
    c |= 0;
    return t >>> 0;
  };
  for (let i = 0; i < 16; i++) u32();
  const next = () => u32() / 4294967296;
  const int = (n: number) => Math.floor(next() * n);
  const bytes = (n: number) => {
    const out = Buffer.allocUnsafe(n + 3);
    for (let i = 0; i < n; i += 4) out.writeUInt32LE(u32(), i);
    return out.subarray(0, n);
  };
  const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)]!;
  return { next, int, bytes, pick };
}
export type Rng = ReturnType<typeof prng>;

export type FuzzCase =
  | { kind: string; via: 'raw'; method: string; stream?: boolean; bytes: Buffer; as?: 'admin'; mayPass?: () => boolean }
  | {
      kind: string;
      via: 'typed';
      method: string;
      stream?: boolean;
      request: object;
      as?: 'admin';
      mayPass?: () => boolean;
    };

/**
 * The Sign message limit of the fuzzed signer: above the largest valid Sign (a 64 KiB message),
 * small enough that the over-limit cases do not spend the run pushing bytes through flow control.
 */
export const FUZZ_SIGN_LIMIT = 96 * 1024;

const SERVICES: Record<string, string> = {
  Sign: 'Signer',
  SignBatch: 'Signer',
  GetPublicKey: 'Signer',
  WatchKeys: 'Signer',
  ExportLog: 'Audit',
};
/** The full gRPC path of a method by its name. */
export const pathOf = (method: string) => `/signer.v1.${SERVICES[method] ?? 'KeyAdmin'}/${method}`;

const KEY_ADMIN = [
  'CreateKey',
  'SetPolicy',
  'RotateKey',
  'DisableKeyVersion',
  'DestroyKeyVersion',
  'GetPolicy',
  'RefreshShares',
];
const serialize = (method: string, request: object) =>
  (signerV1.Signer.service[method] ?? signerV1.KeyAdmin.service[method])!.requestSerialize(request);

const stale = () => ({ seconds: String(Math.floor(Date.now() / 1000) - 7200), nanos: 0 });
const fresh = () => ({ seconds: String(Math.floor(Date.now() / 1000)), nanos: 0 });

/** Valid transactions of both types, built by ethers: the seeds of the RLP mutations. */
export const SEED_TXS = [
  Transaction.from({
    type: 2,
    chainId: 1,
    nonce: 3,
    to: ALICE,
    value: 10n ** 15n,
    gasLimit: 21000,
    maxFeePerGas: 30n * GWEI,
    maxPriorityFeePerGas: GWEI,
  }),
  Transaction.from({
    type: 2,
    chainId: 8453,
    nonce: 9,
    to: ALICE,
    value: 0,
    data: `0xa9059cbb${'00'.repeat(64)}`,
    gasLimit: 60000,
    maxFeePerGas: GWEI,
    maxPriorityFeePerGas: GWEI,
  }),
  Transaction.from({ type: 0, chainId: 137, nonce: 42, to: ALICE, value: 5n, gasLimit: 21000, gasPrice: 50n * GWEI }),
  Transaction.from({
    type: 0,
    chainId: 10,
    nonce: 0,
    to: null,
    value: 0,
    data: '0x6000',
    gasLimit: 100000,
    gasPrice: GWEI,
  }),
].map((tx) => Buffer.from(getBytes(tx.unsignedSerialized)));

/** Hand-made RLP edge cases: each must be refused. */
const RLP_EDGES: Buffer[] = [
  '',
  '02',
  'c0',
  '02c0',
  '01c0',
  '03c0',
  '04c0',
  '7f',
  '80',
  'b8',
  'f8',
  'ff',
  'c180',
  '02c180',
  'f90000',
  `ba${'ff'.repeat(8)}`,
  `fb${'ff'.repeat(8)}`,
  `f8ff${'00'.repeat(10)}`,
  'c3c2c1c0',
]
  .map((h) => Buffer.from(h, 'hex'))
  .concat([
    // A leading-zero integer; a signed legacy transaction.
    Buffer.from(getBytes(encodeRlp(['0x00', '0x01', '0x5208', ALICE, '0x', '0x', '0x01', '0x', '0x']))),
    Buffer.from(getBytes(encodeRlp(['0x', '0x01', '0x5208', ALICE, '0x', '0x', '0x01', '0x01', '0x01']))),
    Buffer.from(
      getBytes(`0x02${encodeRlp(['0x01', '0x', '0x01', '0x01', '0x5208', ALICE, '0x', '0x', [[ALICE, []]]]).slice(2)}`),
    ), // access list
    Buffer.from(
      getBytes(
        `0x02${encodeRlp(['0x01', `0x${'ff'.repeat(40)}`, '0x01', '0x01', '0x5208', ALICE, '0x', '0x', []]).slice(2)}`,
      ),
    ), // 320-bit nonce
    Buffer.from(
      getBytes(`0x02${encodeRlp([['0x01'], '0x', '0x01', '0x01', '0x5208', ALICE, '0x', '0x', []]).slice(2)}`),
    ), // a list for the chain id
    Buffer.from(
      getBytes(
        `0x02${encodeRlp(['0x01', '0x', '0x01', '0x01', '0x5208', `0x${'11'.repeat(21)}`, '0x', '0x', []]).slice(2)}`,
      ),
    ), // 21-byte address
    Buffer.concat([SEED_TXS[0]!, Buffer.from('00', 'hex')]), // trailing byte
  ]);

/** Byte-wise mutations: flip, set, insert, delete, duplicate, truncate, extend. */
export function mutate(r: Rng, input: Buffer): Buffer {
  let b = Buffer.from(input);
  const rounds = 1 + r.int(3);
  for (let k = 0; k < rounds; k++) {
    const at = b.length ? r.int(b.length) : 0;
    switch (r.int(7)) {
      case 0:
        if (b.length) b[at] = b[at]! ^ (1 << r.int(8));
        break;
      case 1:
        if (b.length) b[at] = r.pick([0x00, 0x7f, 0x80, 0x81, 0xb7, 0xb8, 0xbf, 0xc0, 0xf7, 0xf8, 0xff]);
        break;
      case 2:
        b = Buffer.concat([b.subarray(0, at), r.bytes(1 + r.int(8)), b.subarray(at)]);
        break;
      case 3:
        b = Buffer.concat([b.subarray(0, at), b.subarray(at + 1 + r.int(8))]);
        break;
      case 4:
        b = Buffer.concat([b.subarray(0, at), b.subarray(at, at + 1 + r.int(16)), b.subarray(at)]);
        break;
      case 5:
        b = b.subarray(0, at);
        break;
      default:
        b = Buffer.concat([b, r.bytes(1 + r.int(32))]);
    }
  }
  return b;
}

/**
 * Whether mutated bytes became a request the signer may accept: a mutation that moved the
 * hour-old client_time back into the freshness window (it is astronomically unlikely, but a
 * fuzz test must not fail on a valid request).
 */
function freshAfterMutation(method: string, bytes: Buffer): boolean {
  try {
    const req = signerV1.Signer.service[method]!.requestDeserialize(bytes) as {
      clientTime?: { seconds: string } | null;
    };
    return req.clientTime != null && Math.abs(Number(req.clientTime.seconds) - Date.now() / 1000) < 600;
  } catch {
    return false;
  }
}

/** What ethers says of bytes: a valid unsigned transaction that re-encodes to exactly them. */
function ethersAccepts(bytes: Buffer): boolean {
  try {
    const tx = Transaction.from(hexlify(bytes));
    return !tx.signature && tx.unsignedSerialized === hexlify(bytes) && (tx.type === 0 || tx.type === 2);
  } catch {
    return false;
  }
}

/** A string meant to break an id grammar: long, non-ASCII, control characters, separators. */
export function hostileId(r: Rng): string {
  const pieces = ['=cmd|', '../', '\u0000', '\r\n', ' ', '🔑', 'é', '\uD800', '"', ',', '*'];
  pieces.push('_audit', 'A', 'hot-k1');
  const n = r.pick([0, 1, 65, 129, 1000, 10_000]);
  let s = '';
  while (s.length < n) s += r.next() < 0.5 ? r.pick(pieces) : String.fromCharCode(32 + r.int(95));
  return s.slice(0, Math.max(n, 1));
}

/** `id`, made to fail `grammar` if it happens to match it (a space is in no id grammar). */
const breaking = (id: string, grammar: RegExp) => (grammar.test(id) ? `${id} ` : id);
const KEY = /^[a-z0-9][a-z0-9._-]{0,63}$/;
const REQUEST = /^[\x21-\x7e]{1,128}$/;

/** A protobuf message of random fields: valid framing, arbitrary field numbers and wire types. */
function wrongTypes(r: Rng): Buffer {
  const parts: Buffer[] = [];
  for (let f = 0; f < 1 + r.int(6); f++) {
    const field = 1 + r.int(15);
    const wire = r.pick([0, 1, 2, 5]);
    parts.push(Buffer.from([(field << 3) | wire]));
    if (wire === 0) parts.push(Buffer.from([0x80 | r.int(128), r.int(128)]));
    else if (wire === 1) parts.push(r.bytes(8));
    else if (wire === 5) parts.push(r.bytes(4));
    else {
      const len = r.int(40);
      parts.push(Buffer.from([len]), r.bytes(len));
    }
  }
  return Buffer.concat(parts);
}

/** One generated case: `i` spreads the cases over the kinds; the rest comes from `r`. */
export function fuzzCase(r: Rng, i: number): FuzzCase {
  const base = { keyId: 'fz-k1', requestId: `fz-${i}`, clientTime: fresh() };
  switch (i % 8) {
    case 0: {
      const method = r.pick(['Sign', 'SignBatch', 'GetPublicKey', 'ExportLog', ...KEY_ADMIN]);
      return {
        kind: 'random protobuf bytes',
        via: 'raw',
        method,
        stream: method === 'ExportLog',
        bytes: r.bytes(r.int(600)),
      };
    }
    case 1: {
      // Valid requests that are an hour old, mutated: whatever survives decoding is still stale.
      const payload = r.pick([
        { digest: r.bytes(32) },
        { keyId: 'fz-ed', message: r.bytes(1 + r.int(200)) },
        { evmTransaction: { unsignedTx: r.pick(SEED_TXS) } },
      ]);
      const method = r.pick(['Sign', 'SignBatch']);
      const request =
        method === 'Sign'
          ? { ...base, clientTime: stale(), ...payload }
          : { batchId: `fzb-${i}`, keyId: 'fz-k1', clientTime: stale(), items: [payload, payload] };
      const bytes = mutate(r, serialize(method, request));
      return {
        kind: 'mutated request bytes',
        via: 'raw',
        method,
        bytes,
        mayPass: () => freshAfterMutation(method, bytes),
      };
    }
    case 2:
      return {
        kind: 'wrong wire types',
        via: 'raw',
        method: r.pick(['Sign', 'SignBatch', 'GetPublicKey']),
        bytes: wrongTypes(r),
      };
    case 3: {
      const bad = r.pick([
        { digest: r.bytes(r.pick([0, 1, 31, 33, 64, 1000])) },
        { digest: Buffer.alloc(32) },
        { keyId: 'fz-ed', message: Buffer.alloc(0) },
        { keyId: 'fz-ed', message: r.bytes(65_537 + r.int(4000)) },
        { keyId: 'fz-ed', digest: r.bytes(32) },
        { message: r.bytes(10) },
        {},
        { clientTime: null, digest: r.bytes(32) },
        { clientTime: { seconds: '-62135596800', nanos: -1 }, digest: r.bytes(32) },
        { clientTime: { seconds: '9223372036854775807', nanos: 999_999_999 }, digest: r.bytes(32) },
        { keyVersion: 4294967295, digest: r.bytes(32) },
        { digest: r.bytes(32), replayScope: { chainId: '18446744073709551615', accountNonce: '1' } },
        { evmTransaction: { unsignedTx: r.bytes(FUZZ_SIGN_LIMIT + r.int(8192)) } },
        { evmTransaction: { unsignedTx: r.pick(SEED_TXS) }, replayScope: { chainId: '1', accountNonce: '1' } },
      ]);
      return { kind: 'truncated and oversized fields', via: 'typed', method: 'Sign', request: { ...base, ...bad } };
    }
    case 4: {
      const raw = hostileId(r);
      const id = breaking(raw, KEY);
      const which = r.int(8);
      if (which === 0)
        return {
          kind: 'hostile ids',
          via: 'typed',
          method: 'Sign',
          request: { ...base, keyId: id, digest: r.bytes(32) },
        };
      if (which === 1)
        return {
          kind: 'hostile ids',
          via: 'typed',
          method: 'Sign',
          request: { ...base, requestId: breaking(raw, REQUEST), digest: r.bytes(32) },
        };
      if (which === 2)
        return {
          kind: 'hostile ids',
          via: 'typed',
          method: 'SignBatch',
          request: {
            batchId: breaking(raw, REQUEST),
            keyId: 'fz-k1',
            clientTime: fresh(),
            items: [{ digest: r.bytes(32) }],
          },
        };
      if (which === 3) return { kind: 'hostile ids', via: 'typed', method: 'GetPublicKey', request: { keyId: id } };
      if (which === 4)
        return { kind: 'hostile ids', via: 'typed', method: 'WatchKeys', stream: true, request: { keyId: id || 'X' } };
      if (which === 5)
        return { kind: 'hostile ids', via: 'typed', method: 'RotateKey', as: 'admin', request: { keyId: id } };
      if (which === 6)
        return {
          kind: 'hostile ids',
          via: 'typed',
          method: 'GetPolicy',
          as: 'admin',
          request: r.next() < 0.5 ? { name: id } : { keyId: id },
        };
      return {
        kind: 'hostile ids',
        via: 'typed',
        method: 'SetPolicy',
        as: 'admin',
        request: { name: id, document: '{}' },
      };
    }
    case 5:
    case 6: {
      const bytes = r.next() < 0.1 ? r.pick(RLP_EDGES) : mutate(r, r.pick(SEED_TXS));
      const accepted = ethersAccepts(bytes);
      return {
        kind: 'RLP edge cases',
        via: 'typed',
        method: 'Sign',
        request: { ...base, evmTransaction: { unsignedTx: bytes } },
        mayPass: () => accepted,
      };
    }
    default: {
      const n = r.pick([0, 1, 2, 10]);
      const items = Array.from({ length: n }, () =>
        r.pick([
          { digest: r.bytes(r.int(40)) },
          { evmTransaction: { unsignedTx: mutate(r, r.pick(SEED_TXS)) } },
          {},
          { message: r.bytes(5) },
        ]),
      );
      return {
        kind: 'malformed batches',
        via: 'typed',
        method: 'SignBatch',
        request: { batchId: `fzb-${i}`, keyId: 'fz-k1', clientTime: stale(), items },
      };
    }
  }
}
