import { randomBytes } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { status } from '@grpc/grpc-js';
import t from 'tap';
import { hexToBytes, serializeTransaction, type TransactionSerializable } from 'viem';
import { refusal, startTestSigner } from '../harness/signer.js';
import { call, nowTimestamp } from '../src/client/client.js';
import { decodeError } from '../src/client/errors.js';
import { CSV_HEADER, parseCsvLine, toCsvRow } from '../src/core/audit/csv.js';
import type { EntryRecord, ExportRecord } from '../src/core/audit/format.js';
import { verifyExport } from '../src/core/audit/verify.js';

const ts = await startTestSigner();
t.teardown(() => ts.close());
const engine = ts.as('payment-engine');
const admin = ts.as('security-admin');
await call(admin.keyAdmin, 'CreateKey', { keyId: 'hot-k1', algorithm: 'ECDSA_SECP256K1' });

let n = 0;
const sign = (payload: object, requestId = `r-${n++}`) =>
  call<any>(engine.signer, 'Sign', { keyId: 'hot-k1', requestId, clientTime: nowTimestamp(), ...payload });
const ALICE = '0x000000000000000000000000000000000000a11c';

/** An unsigned transaction serialised by viem, with fields beyond what a JS number holds. */
function evm(over: Record<string, bigint>, type: 'eip1559' | 'legacy' = 'eip1559') {
  const base =
    type === 'eip1559'
      ? {
          type,
          chainId: 1,
          nonce: 0,
          to: ALICE,
          value: 1n,
          gas: 21000n,
          maxFeePerGas: 10n ** 9n,
          maxPriorityFeePerGas: 1n,
        }
      : { type, chainId: 1, nonce: 0, to: ALICE, value: 1n, gas: 21000n, gasPrice: 10n ** 9n };
  const tx = { ...base, ...over } as unknown as TransactionSerializable;
  return { evmTransaction: { unsignedTx: Buffer.from(hexToBytes(serializeTransaction(tx))) } };
}

t.test(
  'chain ids and nonces beyond what the signer decodes are INVALID_ARGUMENT with a reason, never INTERNAL',
  async (t) => {
    const big = [2n ** 53n, 2n ** 63n, 2n ** 64n - 1n, 2n ** 64n, 2n ** 64n + 1n, 2n ** 256n - 1n];
    for (const type of ['eip1559', 'legacy'] as const) {
      for (const v of big) {
        for (const field of ['nonce', 'chainId'] as const) {
          const d = decodeError(await refusal(sign(evm({ [field]: v }, type))));
          t.same(
            [d.code, d.reason, d.metadata.field],
            [status.INVALID_ARGUMENT, 'PAYLOAD_INVALID', field === 'chainId' ? 'chain id' : 'nonce'],
            `${type} ${field} ${v}`,
          );
          t.match(d.message, /largest the signer decodes/);
        }
      }
    }
    const max = 2n ** 53n - 1n;
    const ok = await sign(evm({ nonce: max }));
    t.equal(ok.evm.nonce, String(max), 'nonce 2^53 - 1 is the largest that signs, and comes back exact');
    const batch = decodeError(
      await refusal(
        call(engine.signer, 'SignBatch', {
          batchId: 'wide',
          keyId: 'hot-k1',
          clientTime: nowTimestamp(),
          items: [evm({ nonce: 1n }), evm({ nonce: 2n ** 64n })],
        }),
      ),
    );
    t.same(
      [batch.code, batch.reason, batch.metadata.index],
      [status.INVALID_ARGUMENT, 'PAYLOAD_INVALID', '1'],
      'in a batch: which item',
    );
  },
);

t.test("replay scopes beyond the store's signed 64-bit columns are INVALID_ARGUMENT, not INTERNAL", async (t) => {
  const top = 2n ** 63n - 1n;
  for (const [chainId, accountNonce, field] of [
    [2n ** 63n, 1n, 'replay_scope.chain_id'],
    [1n, 2n ** 63n, 'replay_scope.account_nonce'],
    [1n, 2n ** 64n - 1n, 'replay_scope.account_nonce'],
  ] as const) {
    const d = decodeError(
      await refusal(
        sign({
          digest: randomBytes(32),
          replayScope: { chainId: String(chainId), accountNonce: String(accountNonce) },
        }),
      ),
    );
    t.same(
      [d.code, d.reason, d.metadata.field],
      [status.INVALID_ARGUMENT, 'REQUEST_INVALID', field],
      `${field} ${chainId}/${accountNonce}`,
    );
  }
  const ok = await sign({ digest: randomBytes(32), replayScope: { chainId: String(top), accountNonce: String(top) } });
  t.equal(ok.signature.length, 64, '2^63 - 1 is kept and signs');
});

t.test('values no policy allows are refused by the policy, not by a crash', async (t) => {
  const huge = 2n ** 256n - 1n;
  for (const over of [{ value: huge }, { maxFeePerGas: huge, maxPriorityFeePerGas: 1n }, { gas: huge }] as Array<
    Record<string, bigint>
  >) {
    const e = await refusal(sign(evm(over)));
    const d = decodeError(e);
    t.ok(
      d.reason && ![status.INTERNAL, status.UNKNOWN].includes(d.code),
      `${Object.keys(over)[0]} 2^256 - 1: ${grpc.status[d.code]} ${d.reason}`,
    );
  }
});

// Request ids are printable ASCII, so these are valid; each would run as a formula in a spreadsheet.
const HOSTILE = ['=1+1', '+1', '-1', '@SUM(A1)', "'=1", '=HYPERLINK("http://x","y")', "'plain"];

t.test('CSV exports neutralise formula cells and still verify', async (t) => {
  for (const id of HOSTILE) await sign({ digest: randomBytes(32) }, id);
  const auditor = ts.as('auditor');
  const stream = (
    auditor.audit as unknown as { ExportLog(r: object): grpc.ClientReadableStream<{ json: string }> }
  ).ExportLog({});
  const lines = [CSV_HEADER];
  for await (const m of stream) {
    const r = JSON.parse(m.json) as ExportRecord;
    // The closing checkpoint note has no CSV row (export-audit writes it beside a CSV export).
    if (r.type !== 'note') lines.push(toCsvRow(r));
  }
  const csv = lines.join('\r\n').split('\r\n');
  const dangerous = csv
    .slice(1)
    .flatMap(rawCells)
    .filter((c) => /^[=+\-@\t\r]/.test(c));
  t.same(dangerous, [], 'no cell starts with = + - @ tab or CR');
  t.ok(
    csv.some((l) => l.includes(`"'=1+1"`)),
    'an escaped cell is quoted with a leading single quote',
  );
  const report = await verifyExport(
    (async function* () {
      yield* csv;
    })(),
  );
  t.ok(report.ok, `the escaped export verifies: ${JSON.stringify(report).slice(0, 300)}`);
  const ids = csv
    .slice(1)
    .map((l, i) => parseCsvLine(l, i + 2))
    .filter((r): r is EntryRecord => r.type === 'entry')
    .map((r) => r.requestId);
  for (const id of HOSTILE) t.ok(ids.includes(id), `${id} reads back exactly`);
});

t.test('the CSV reader accepts exports written before the escape', async (t) => {
  const line = toCsvRow({
    type: 'entry',
    seq: 1,
    at: '2026-01-01T00:00:00.000Z',
    kind: 'sign',
    client: 'c',
    keyId: 'k',
    keyVersion: 1,
    requestId: '=x',
    payloadHash: null,
    intent: null,
    decision: 'allowed',
    reason: null,
    signatureHash: null,
    prevHash: '0'.repeat(64),
    hash: '1'.repeat(64),
  });
  t.match(line, /,"'=x",/);
  t.equal(
    (parseCsvLine(line.replace(`"'=x"`, '=x'), 2) as EntryRecord).requestId,
    '=x',
    'an unescaped =x (older export) reads as =x',
  );
  t.equal(
    (parseCsvLine(line.replace(`"'=x"`, "'x"), 2) as EntryRecord).requestId,
    "'x",
    'a quote before no formula character is data',
  );
});

/** The raw cell texts of a CSV line as a spreadsheet sees them (quotes removed, nothing else). */
function rawCells(line: string): string[] {
  const cells: string[] = [];
  for (let i = 0; i <= line.length; ) {
    if (line[i] === '"') {
      let v = '';
      let j = i + 1;
      for (;;) {
        const end = line.indexOf('"', j);
        v += line.slice(j, end);
        if (line[end + 1] === '"') {
          v += '"';
          j = end + 2;
        } else {
          i = end + 2;
          break;
        }
      }
      cells.push(v);
    } else {
      const end = line.indexOf(',', i);
      cells.push(line.slice(i, end < 0 ? line.length : end));
      i = end < 0 ? line.length + 1 : end + 1;
    }
  }
  return cells;
}
