/**
 * A separate process (forked by bench/priority.ts) that signs N-item EVM batches back to back
 * while the bench measures hot Sign latency. Separate so that building requests and decoding
 * 1,000-result responses never stalls the event loop that times the hot calls.
 *
 * IPC: parent sends `init`, gets `ready`; each `go` starts batches back to back until `stop`,
 * answered by `done` with the batches of that cycle; `exit` ends the process.
 */
import { performance } from 'node:perf_hooks';
import { connect } from '../src/client/client.js';
import { type EvmItem, evmTransfers, Nonces, RUN, signBatch } from './ops.js';

export interface DriverInit {
  type: 'init';
  address: string;
  tls: { ca: string; cert: string; key: string };
  keyId: string;
  items: number;
}
export type ToDriver = DriverInit | { type: 'go' } | { type: 'stop' } | { type: 'exit' };

/** One batch, times in ms since the epoch (comparable across processes). */
export interface DriverBatch {
  start: number;
  end: number;
  items: number;
  /** The service refused it (e.g. HSM_UNAVAILABLE on an overloaded machine): counted, not fatal. */
  error?: string;
}
export type FromDriver = { type: 'ready' } | { type: 'done'; batches: DriverBatch[]; error?: string };

const now = () => performance.timeOrigin + performance.now();
const send = (m: FromDriver) => process.send!(m);

let init: DriverInit | undefined;
let client: ReturnType<typeof connect> | undefined;
const nonces = new Nonces();
let seq = 0;
let next: EvmItem[] | undefined;
let running: Promise<void> | undefined;
let stopping = false;

async function cycle(): Promise<void> {
  const batches: DriverBatch[] = [];
  let error: string | undefined;
  try {
    while (!stopping) {
      const items = next ?? evmTransfers(nonces.take(init!.items), init!.items);
      const start = now();
      const sent = signBatch(client!.signer, init!.keyId, `prio-${RUN}-${seq++}`, items).then(
        () => undefined,
        (e: Error) => String(e.message ?? e),
      );
      // The next batch is built while this one is signed.
      next = evmTransfers(nonces.take(init!.items), init!.items);
      const refused = await sent;
      batches.push({ start, end: now(), items: items.length, ...(refused ? { error: refused } : {}) });
      // A refused batch's nonces may be claimed or not: start the next from fresh ones.
      if (refused) next = undefined;
    }
  } catch (e) {
    error = String((e as Error).message ?? e);
  }
  send({ type: 'done', batches, ...(error ? { error } : {}) });
}

process.on('message', (m: ToDriver) => {
  void (async () => {
    if (m.type === 'init') {
      init = m;
      client = connect(m.address, {
        ca: Buffer.from(m.tls.ca),
        cert: Buffer.from(m.tls.cert),
        key: Buffer.from(m.tls.key),
      });
      const signer = client.signer;
      await new Promise<void>((ok, fail) => signer.waitForReady(Date.now() + 10_000, (e) => (e ? fail(e) : ok())));
      next = evmTransfers(nonces.take(m.items), m.items);
      send({ type: 'ready' });
    } else if (m.type === 'go') {
      stopping = false;
      running = cycle();
    } else if (m.type === 'stop') {
      stopping = true;
    } else {
      stopping = true;
      await running;
      client?.close();
      process.disconnect();
    }
  })();
});
process.on('disconnect', () => {
  client?.close();
  process.exit(0);
});
