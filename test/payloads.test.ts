import { status } from '@grpc/grpc-js';
import { secp256k1 } from '@noble/curves/secp256k1.js';
import { encodeRlp, getAddress, getBytes, hexlify, Transaction, type TransactionLike, Wallet } from 'ethers';
import t, { type Test } from 'tap';
import { SignerError } from '../src/core/errors.js';
import { DIGEST_BYTES, parseDigest } from '../src/core/payloads/digest.js';
import { assembleSignedEvm, type DecodedEvmTx, decodeEvmTransaction, evmAddress } from '../src/core/payloads/evm.js';
import { MAX_MESSAGE_BYTES, parseMessage } from '../src/core/payloads/message.js';
import { statusOf } from '../src/infra/grpc/status.js';

const N = secp256k1.Point.CURVE().n;
const TO = '0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed';

function assertPayloadInvalid(t: Test, fn: () => unknown, message?: RegExp) {
  try {
    fn();
  } catch (e) {
    t.type(e, SignerError, 'is a SignerError');
    const err = e as SignerError;
    t.equal(statusOf(err.reason), status.INVALID_ARGUMENT);
    t.equal(err.reason, 'PAYLOAD_INVALID');
    if (message) t.match(err.message, message);
    return;
  }
  t.fail('expected a refusal');
}

const bigToBytes32 = (n: bigint) => getBytes(`0x${n.toString(16).padStart(64, '0')}`);
const bytesToBig = (b: Uint8Array) => BigInt(hexlify(b));

/** Signs like an HSM would (high s allowed), then normalises to low-s as the caller must. */
function signLikeHsm(hash: Uint8Array, priv: Uint8Array) {
  const sig = secp256k1.sign(hash, priv, { prehash: false, lowS: false, format: 'recovered' });
  if (sig.length !== 65) throw new Error('recovered signature must be 65 bytes');
  let recovery = sig[0]!;
  const r = bytesToBig(sig.subarray(1, 33));
  let s = bytesToBig(sig.subarray(33, 65));
  const wasHigh = s > N / 2n;
  if (wasHigh) {
    s = N - s;
    recovery ^= 1;
  }
  if (recovery > 1) throw new Error('recovery id 2/3 does not occur in practice');
  return { r: bigToBytes32(r), s: bigToBytes32(s), yParity: recovery as 0 | 1, wasHigh };
}

interface Case {
  name: string;
  tx: TransactionLike;
}

const goodCases: Case[] = [
  {
    name: 'eip1559 transfer mainnet with calldata',
    tx: {
      type: 2,
      chainId: 1,
      nonce: 5,
      to: TO,
      value: 10n ** 18n,
      data: '0xdeadbeef',
      gasLimit: 21000,
      maxFeePerGas: 100_000_000_000n,
      maxPriorityFeePerGas: 2_000_000_000n,
    },
  },
  {
    name: 'eip1559 contract creation on Base',
    tx: {
      type: 2,
      chainId: 8453,
      nonce: 0,
      to: null,
      value: 0,
      data: '0x6080604052348015600f57600080fd5b50',
      gasLimit: 500_000,
      maxFeePerGas: 1,
      maxPriorityFeePerGas: 1,
    },
  },
  {
    name: 'eip1559 all-zero fields, empty data',
    tx: {
      type: 2,
      chainId: 10,
      nonce: 0,
      to: TO,
      value: 0,
      data: '0x',
      gasLimit: 0,
      maxFeePerGas: 0,
      maxPriorityFeePerGas: 0,
    },
  },
  {
    name: 'eip1559 large values',
    tx: {
      type: 2,
      chainId: 2n ** 40n,
      nonce: 2 ** 52,
      to: TO,
      value: 2n ** 256n - 1n,
      data: `0x${'ab'.repeat(1000)}`,
      gasLimit: 30_000_000,
      maxFeePerGas: 2n ** 200n,
      maxPriorityFeePerGas: 2n ** 199n,
    },
  },
  {
    name: 'legacy EIP-155 mainnet',
    tx: {
      type: 0,
      chainId: 1,
      nonce: 9,
      to: TO,
      value: 123456789n,
      data: '0x',
      gasLimit: 21000,
      gasPrice: 20_000_000_000n,
    },
  },
  {
    name: 'legacy EIP-155 BSC with calldata',
    tx: {
      type: 0,
      chainId: 56,
      nonce: 1,
      to: TO,
      value: 0,
      data: `0xa9059cbb${'00'.repeat(12)}${TO.slice(2).toLowerCase()}${'00'.repeat(31)}01`,
      gasLimit: 60_000,
      gasPrice: 3_000_000_000n,
    },
  },
  {
    name: 'legacy EIP-155 Polygon contract creation',
    tx: { type: 0, chainId: 137, nonce: 0, to: null, value: 0, data: '0x6000', gasLimit: 100_000, gasPrice: 5 },
  },
  {
    name: 'legacy EIP-155 Sepolia large value',
    tx: {
      type: 0,
      chainId: 11155111,
      nonce: 77,
      to: TO,
      value: 2n ** 255n + 12345n,
      data: '0x00',
      gasLimit: 21000,
      gasPrice: 1,
    },
  },
];

t.test('decode, sign, assemble, verify with ethers', async (t) => {
  let highS = 0;
  for (const c of goodCases) {
    t.test(c.name, async (t) => {
      const unsigned = Transaction.from(c.tx).unsignedSerialized;
      const decoded = decodeEvmTransaction(getBytes(unsigned));
      const i = decoded.intent;
      const expectType = c.tx.type === 2 ? 'eip1559' : 'legacy';
      t.equal(i.type, expectType);
      t.equal(i.chainId, BigInt(c.tx.chainId!));
      t.equal(i.nonce, BigInt(c.tx.nonce!));
      t.equal(i.to, c.tx.to ? getAddress(c.tx.to as string) : null);
      t.equal(i.value, BigInt(c.tx.value!));
      t.equal(i.data, (c.tx.data as string).toLowerCase());
      t.equal(i.gas, BigInt(c.tx.gasLimit!));
      if (expectType === 'eip1559') {
        t.equal(i.maxFeePerGas, BigInt(c.tx.maxFeePerGas!));
        t.equal(i.maxPriorityFeePerGas, BigInt(c.tx.maxPriorityFeePerGas!));
      } else {
        t.equal(i.maxFeePerGas, BigInt(c.tx.gasPrice!));
        t.equal(i.maxPriorityFeePerGas, null);
      }
      t.equal(hexlify(decoded.signingHash), Transaction.from(c.tx).unsignedHash);

      // Several keys per case so both parities and the high-s path are exercised.
      for (let k = 0; k < 6; k++) {
        const priv = secp256k1.utils.randomSecretKey();
        const pub = secp256k1.getPublicKey(priv, false);
        const sig = signLikeHsm(decoded.signingHash, priv);
        if (sig.wasHigh) highS++;
        const signed = assembleSignedEvm(decoded, sig.r, sig.s, sig.yParity);
        t.equal(signed.yParity, sig.yParity);
        const expectV =
          expectType === 'eip1559' ? BigInt(sig.yParity) : BigInt(c.tx.chainId!) * 2n + 35n + BigInt(sig.yParity);
        t.equal(signed.v, expectV);

        const parsed = Transaction.from(hexlify(signed.signedRlp));
        const wallet = new Wallet(hexlify(priv));
        t.equal(parsed.from, wallet.address, 'ethers recovers the signer');
        t.equal(parsed.hash, hexlify(signed.txHash), 'tx hash matches');
        t.equal(parsed.unsignedSerialized, unsigned, 'signed tx carries the same unsigned body');
        t.equal(parsed.signature!.v, 27 + sig.yParity);
        t.equal(evmAddress(pub), wallet.address, 'evmAddress is EIP-55 and matches');
      }
    });
  }
  // Subtests run in order, so this one sees the counts of all the above.
  t.test('high-s normalisation path was exercised', async (t) => {
    t.ok(highS > 0, `${highS} high-s signatures normalised`);
  });
});

// --- refusals ------------------------------------------------------------------------------

const base2 = Transaction.from(goodCases[0]!.tx).unsignedSerialized;
const baseLegacy = Transaction.from(goodCases[4]!.tx).unsignedSerialized;
const wallet = Wallet.createRandom();
const signed2 = await wallet.signTransaction({ ...goodCases[0]!.tx, from: undefined });
const signedLegacy = await wallet.signTransaction(goodCases[4]!.tx);
const body2 = base2.slice(4);
const typed = (type: string) => getBytes(`0x${type}${body2}`);
const addr = TO.toLowerCase();
// [nonce, gasPrice, gas, to, value, data, chainIdOrV, r, s]
const legacyRaw = (f: string[]) => getBytes(encodeRlp(f));
const eip1559Raw = (f: (string | string[])[]) => getBytes(`0x02${encodeRlp(f).slice(2)}`);

const refusals: { name: string; bytes: Uint8Array; message: RegExp }[] = [
  { name: 'empty input', bytes: new Uint8Array(), message: /empty/ },
  { name: 'garbage bytes', bytes: getBytes('0xdeadbeef'), message: /truncated|RLP/ },
  { name: 'garbage 0xff', bytes: getBytes('0xffffffffffffffff'), message: /RLP/ },
  {
    name: 'RLP string instead of list',
    bytes: getBytes('0x83abcdef'),
    message: /neither a typed envelope nor an RLP list/,
  },
  { name: 'truncated eip1559', bytes: getBytes(base2).subarray(0, 20), message: /truncated/ },
  {
    name: 'eip1559 missing last byte',
    bytes: getBytes(base2).subarray(0, getBytes(base2).length - 1),
    message: /truncated/,
  },
  { name: 'truncated legacy', bytes: getBytes(baseLegacy).subarray(0, 10), message: /truncated/ },
  { name: 'type 0x02 alone', bytes: getBytes('0x02'), message: /RLP|truncated/ },
  {
    name: 'type 0x01',
    bytes: getBytes(
      Transaction.from({ type: 1, chainId: 1, nonce: 0, gasLimit: 21000, gasPrice: 1, to: TO }).unsignedSerialized,
    ),
    message: /type 0x01 \(EIP-2930/,
  },
  { name: 'type 0x03', bytes: typed('03'), message: /type 0x03 \(EIP-4844/ },
  { name: 'type 0x04', bytes: typed('04'), message: /type 0x04 \(EIP-7702/ },
  { name: 'unknown type 0x05', bytes: typed('05'), message: /type 0x05 is not supported/ },
  {
    name: 'pre-EIP-155 legacy',
    bytes: getBytes(
      Transaction.from({ type: 0, nonce: 0, to: TO, value: 1, gasLimit: 21000, gasPrice: 1 }).unsignedSerialized,
    ),
    message: /pre-EIP-155/,
  },
  {
    name: 'legacy chain id 0',
    bytes: legacyRaw(['0x', '0x01', '0x5208', addr, '0x', '0x', '0x', '0x', '0x']),
    message: /chain id 0/,
  },
  {
    name: 'eip1559 chain id 0',
    bytes: eip1559Raw(['0x', '0x', '0x01', '0x01', '0x5208', addr, '0x', '0x', []]),
    message: /chain id 0/,
  },
  { name: 'already-signed eip1559', bytes: getBytes(signed2), message: /already signed/ },
  { name: 'already-signed legacy', bytes: getBytes(signedLegacy), message: /already signed/ },
  {
    name: 'legacy with only s set',
    bytes: legacyRaw(['0x', '0x01', '0x5208', addr, '0x', '0x', '0x01', '0x', '0x05']),
    message: /already signed/,
  },
  { name: 'trailing byte on eip1559', bytes: getBytes(`${base2}00`), message: /trailing/ },
  { name: 'trailing byte on legacy', bytes: getBytes(`${baseLegacy}00`), message: /trailing/ },
  {
    name: 'eip1559 with 10 fields',
    bytes: eip1559Raw(['0x01', '0x', '0x01', '0x01', '0x5208', addr, '0x', '0x', [], '0x']),
    message: /9 fields, got 10/,
  },
  {
    name: 'legacy with 7 fields',
    bytes: legacyRaw(['0x', '0x01', '0x5208', addr, '0x', '0x', '0x01']),
    message: /9 fields \(EIP-155\), got 7/,
  },
  {
    name: 'non-canonical nonce (leading zero)',
    bytes: eip1559Raw(['0x01', '0x0005', '0x01', '0x01', '0x5208', addr, '0x', '0x', []]),
    message: /canonical/,
  },
  {
    name: 'non-canonical legacy chain id',
    bytes: legacyRaw(['0x', '0x01', '0x5208', addr, '0x', '0x', '0x0001', '0x', '0x']),
    message: /canonical/,
  },
  {
    name: 'list where nonce belongs',
    bytes: eip1559Raw(['0x01', [], '0x01', '0x01', '0x5208', addr, '0x', '0x', []]),
    message: /canonical|decoded/,
  },
  {
    name: 'recipient of 19 bytes',
    bytes: eip1559Raw(['0x01', '0x', '0x01', '0x01', '0x5208', `0x${'11'.repeat(19)}`, '0x', '0x', []]),
    message: /could not be decoded/,
  },
  {
    name: 'tip above fee cap',
    bytes: eip1559Raw(['0x01', '0x', '0x05', '0x01', '0x5208', addr, '0x', '0x', []]),
    message: /could not be decoded/,
  },
  {
    name: 'non-empty access list',
    bytes: getBytes(
      Transaction.from({ ...goodCases[0]!.tx, accessList: [{ address: TO, storageKeys: [`0x${'00'.repeat(32)}`] }] })
        .unsignedSerialized,
    ),
    message: /access list/,
  },
  {
    name: 'legacy chain id above 2^53',
    bytes: legacyRaw(['0x', '0x01', '0x5208', addr, '0x', '0x', '0x1000000000000001', '0x', '0x']),
    message: /chain id is above 9007199254740991 .* the largest the signer decodes/,
  },
  // viem decodes chain ids and nonces as JS numbers: beyond 2^53 - 1 the decoder refuses first.
  {
    name: 'nonce above 2^53',
    bytes: eip1559Raw(['0x01', '0x20000000000002', '0x01', '0x01', '0x5208', addr, '0x', '0x', []]),
    message: /nonce is above 9007199254740991 .* the largest the signer decodes/,
  },
];

t.test('refusals', async (t) => {
  for (const r of refusals) {
    t.test(r.name, async (t) => assertPayloadInvalid(t, () => decodeEvmTransaction(r.bytes), r.message));
  }
});

t.test('no raw viem error escapes on mangled input', async (t) => {
  let seed = 0x1234567;
  const rnd = () => {
    seed = (seed * 1103515245 + 12345) >>> 0;
    return (seed >>> 8) & 0xff;
  };
  let accepted = 0;
  for (const hex of [base2, baseLegacy]) {
    const good = getBytes(hex);
    const candidates: Uint8Array[] = [];
    for (let cut = 0; cut < good.length; cut++) candidates.push(good.subarray(0, cut));
    for (let n = 0; n < 1500; n++) {
      const m = good.slice();
      m[rnd() % m.length] = rnd();
      candidates.push(m);
    }
    for (const c of candidates) {
      try {
        const d = decodeEvmTransaction(c);
        accepted++;
        // Anything accepted must round-trip exactly.
        t.equal(Transaction.from(hexlify(c)).unsignedHash, hexlify(d.signingHash));
      } catch (e) {
        if (!(e instanceof SignerError) || e.reason !== 'PAYLOAD_INVALID') {
          t.fail(`unexpected error for ${hexlify(c)}: ${String(e)}`);
          return;
        }
      }
    }
  }
  t.pass(`mangled inputs handled (${accepted} still valid transactions)`);
});

t.test('assembleSignedEvm guards', async (t) => {
  const decoded = decodeEvmTransaction(getBytes(base2));
  const priv = secp256k1.utils.randomSecretKey();
  const sig = signLikeHsm(decoded.signingHash, priv);
  const highS = bigToBytes32(N - bytesToBig(sig.s));
  const plainError = (fn: () => unknown, re: RegExp) => {
    t.throws(fn, re);
    try {
      fn();
    } catch (e) {
      t.notOk(e instanceof SignerError, 'plain Error, not a caller-facing refusal');
    }
  };
  plainError(() => assembleSignedEvm(decoded, sig.r, highS, sig.yParity), /low-s/);
  plainError(() => assembleSignedEvm(decoded, sig.r.subarray(1), sig.s, sig.yParity), /32 bytes/);
  plainError(() => assembleSignedEvm(decoded, new Uint8Array(32), sig.s, sig.yParity), /r out of range/);
  plainError(() => assembleSignedEvm(decoded, sig.r, sig.s, 2 as 0 | 1), /yParity/);
  const forged: DecodedEvmTx = { intent: decoded.intent, signingHash: decoded.signingHash };
  plainError(() => assembleSignedEvm(forged, sig.r, sig.s, sig.yParity), /not produced by decodeEvmTransaction/);
  decoded.signingHash[0]! ^= 1;
  plainError(() => assembleSignedEvm(decoded, sig.r, sig.s, sig.yParity), /signingHash/);
  t.throws(() => {
    (decoded.intent as { value: bigint }).value = 0n;
  }, 'intent is frozen');
});

t.test('evmAddress', async (t) => {
  const w = Wallet.createRandom();
  const pub = getBytes(w.signingKey.publicKey);
  t.equal(evmAddress(pub), w.address);
  t.throws(() => evmAddress(pub.subarray(1)), /65-byte/);
  t.throws(() => evmAddress(getBytes(w.signingKey.compressedPublicKey)), /65-byte/);
  const offCurve = pub.slice();
  offCurve[64]! ^= 1;
  t.throws(() => evmAddress(offCurve));
});

// --- digest & message ----------------------------------------------------------------------

t.test('parseDigest', async (t) => {
  for (const n of [0, 31, 33, 64]) {
    assertPayloadInvalid(t, () => parseDigest(new Uint8Array(n).fill(1)), new RegExp(`32 bytes, got ${n}$`));
  }
  assertPayloadInvalid(t, () => parseDigest(new Uint8Array(DIGEST_BYTES)), /all zeros/);
  const src = Buffer.alloc(32, 7);
  const d = parseDigest(src);
  t.same([...d], [...src]);
  src[0] = 0;
  t.equal(d[0], 7, 'result is detached from the request buffer');
  const lastOnly = new Uint8Array(32);
  lastOnly[31] = 1;
  t.equal(parseDigest(lastOnly).length, 32);
});

t.test('parseMessage', async (t) => {
  assertPayloadInvalid(t, () => parseMessage(new Uint8Array()), /1\.\.65536 bytes, got 0/);
  assertPayloadInvalid(t, () => parseMessage(new Uint8Array(MAX_MESSAGE_BYTES + 1)), /1\.\.65536 bytes, got 65537/);
  t.equal(MAX_MESSAGE_BYTES, 65536);
  t.equal(parseMessage(new Uint8Array(MAX_MESSAGE_BYTES)).length, 65536);
  t.same([...parseMessage(Uint8Array.of(0))], [0]);
  const src = Buffer.from('hello');
  const m = parseMessage(src);
  src[0] = 0;
  t.equal(m[0], 'h'.charCodeAt(0), 'result is detached from the request buffer');
});
