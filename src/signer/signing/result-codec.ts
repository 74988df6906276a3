/**
 * Stored results are the exact wire responses, so a replay returns byte-for-byte what the
 * first call returned. JSON with bytes as {"$b": hex}: readable in the database, no schema to
 * migrate when the response grows a field.
 */
export function encodeResult(wire: object): Uint8Array {
  return Buffer.from(
    JSON.stringify(wire, function (k, v) {
      const raw = (this as Record<string, unknown>)[k];
      return raw instanceof Uint8Array ? { $b: Buffer.from(raw).toString('hex') } : v;
    }),
  );
}

export function decodeResult<T = Record<string, unknown>>(bytes: Uint8Array): T {
  return JSON.parse(Buffer.from(bytes).toString('utf8'), (_k, v) =>
    v && typeof v === 'object' && typeof v.$b === 'string' && Object.keys(v).length === 1
      ? Buffer.from(v.$b, 'hex')
      : v,
  ) as T;
}
