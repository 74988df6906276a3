import t from 'tap';
import { decodeResult, encodeResult } from '../src/signer/signing/result-codec.js';

// Stored results are replayed byte for byte: the stored text must not change with the encoder.
t.test('a stored result: the exact text, bytes (views included) as {"$b": hex}, and back', async (t) => {
  const backing = Buffer.from('00112233445566778899', 'hex');
  const wire = {
    keyId: 'payout-1',
    keyVersion: 2,
    signature: Buffer.from('abcd', 'hex'),
    recoveryId: 1,
    requestId: 'b#7',
    evm: { r: new Uint8Array([1, 2]), s: backing.subarray(2, 5), v: '27', nonce: '5', list: [new Uint8Array([255])] },
    skipped: undefined,
    none: null,
  };
  const text = Buffer.from(encodeResult(wire)).toString('utf8');
  t.equal(
    text,
    '{"keyId":"payout-1","keyVersion":2,"signature":{"$b":"abcd"},"recoveryId":1,"requestId":"b#7",' +
      '"evm":{"r":{"$b":"0102"},"s":{"$b":"223344"},"v":"27","nonce":"5","list":[{"$b":"ff"}]},"none":null}',
  );
  const back = decodeResult<typeof wire>(encodeResult(wire));
  t.same(back.evm.s, Buffer.from('223344', 'hex'));
  t.ok(Buffer.isBuffer(back.signature));
  t.equal(back.skipped, undefined);
  t.equal(back.none, null);
});
