/**
 * Stored results are the exact wire responses, so a replay returns byte-for-byte what the
 * first call returned. JSON with bytes as {"$b": hex}: readable in the database, no schema to
 * migrate when the response grows a field.
 */
export function encodeResult(wire: object): Uint8Array {
  // Bytes are swapped for their {"$b"} form first and JSON.stringify then runs without a
  // replacer: the same text as a replacer gives, at about half the CPU (once per signature).
  return Buffer.from(JSON.stringify(jsonable(wire)));
}

/** `v` with every Uint8Array (at any depth of plain objects and arrays) as {"$b": hex}. */
function jsonable(v: unknown): unknown {
  if (v === null || typeof v !== 'object') return v;
  if (v instanceof Uint8Array) return { $b: Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('hex') };
  if (Array.isArray(v)) return v.map(jsonable);
  // Anything else with its own JSON form (a Date) is left to JSON.stringify, as before.
  if (typeof (v as { toJSON?: unknown }).toJSON === 'function') return v;
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(v)) out[k] = jsonable((v as Record<string, unknown>)[k]);
  return out;
}

export function decodeResult<T = Record<string, unknown>>(bytes: Uint8Array): T {
  return JSON.parse(Buffer.from(bytes).toString('utf8'), (_k, v) =>
    v && typeof v === 'object' && typeof v.$b === 'string' && Object.keys(v).length === 1
      ? Buffer.from(v.$b, 'hex')
      : v,
  ) as T;
}
