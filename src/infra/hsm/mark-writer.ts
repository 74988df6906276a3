/**
 * Writes the rollback mark's label (mark.ts) from a worker thread, on a session of its own.
 *
 * Why: C_SetAttributeValue on a token object is synchronous in pkcs11js and, in SoftHSM 2.6,
 * rewrites the object's file under file locks (about ten opens and two dozen fcntl calls): 1 to 3 ms
 * during which the event loop, the signer's bottleneck, did nothing else. It also took a session
 * from the hot lane, so each mark write queued behind the signatures in flight, and every response
 * of the group waited for that queue. In a worker, the event loop only posts a message, and the
 * write never waits for, nor holds, a session that signing uses.
 *
 * PKCS#11 state is per process: the worker loads the same module (dlopen returns the loaded
 * library), whose C_Initialize answers CKR_CRYPTOKI_ALREADY_INITIALIZED (which PKCS#11 lets a
 * caller continue from), opens its own session on the main thread's slot, and is logged in because
 * login is per application. It never calls C_Finalize: that would end the module for the process.
 * Writes run one at a time in the order posted (one thread, synchronous calls), so the token never
 * holds an older head after a newer one.
 */
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';

/**
 * The worker's code. A plain CommonJS string (eval), not a module file: tsx does not load
 * TypeScript in workers, and the built program has no separate file to point at.
 */
const WORKER = `
const { parentPort, workerData } = require('node:worker_threads');
const pkcs11js = require(workerData.pkcs11js);
const p11 = new pkcs11js.PKCS11();
p11.load(workerData.lib);
try {
  p11.C_Initialize({ flags: pkcs11js.CKF_OS_LOCKING_OK });
} catch (e) {
  if (e.code !== pkcs11js.CKR_CRYPTOKI_ALREADY_INITIALIZED) throw e;
}
const slot = Buffer.from(workerData.slot);
const template = [
  { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_DATA },
  { type: pkcs11js.CKA_APPLICATION, value: Buffer.from(workerData.application) },
];
let handle = Buffer.from(workerData.handle);
let session;
function open() {
  session = p11.C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION);
}
function drop() {
  try { if (session) p11.C_CloseSession(session); } catch {}
  session = undefined;
}
function find() {
  p11.C_FindObjectsInit(session, template);
  let found;
  try { found = p11.C_FindObjects(session, 2); } finally { p11.C_FindObjectsFinal(session); }
  if (found.length !== 1) throw new Error(found.length + ' rollback mark objects ' + workerData.application + ' on the token');
  return found[0];
}
function write(label) {
  if (!session) open();
  p11.C_SetAttributeValue(session, handle, [{ type: pkcs11js.CKA_LABEL, value: Buffer.from(label) }]);
}
parentPort.on('message', ({ id, label }) => {
  try {
    try {
      write(label);
    } catch {
      // A recovery closed every session of the slot (C_CloseAllSessions), or the token dropped the
      // handles of private objects (logout, reset): a new session, the object found again, once.
      drop();
      open();
      handle = find();
      write(label);
    }
    parentPort.postMessage({ id });
  } catch (e) {
    drop();
    parentPort.postMessage({ id, error: String((e && e.message) || e) });
  }
});
`;

export interface MarkWriterOptions {
  /** Path of the PKCS#11 module the main thread loaded. */
  lib: string;
  /** The slot of the main thread's sessions (C_GetSessionInfo().slotID). */
  slot: Buffer;
  /** The mark object's handle, and its CKA_APPLICATION to find it again. */
  handle: Buffer;
  application: string;
  /** Longest a write may take before its caller is failed (the write itself cannot be stopped). */
  timeoutMs?: number;
}

/** One mark object's writer thread. `write` settles when the token holds the label. */
export class MarkWriter {
  private worker: Worker | undefined;
  private next = 0;
  private readonly pending = new Map<number, { resolve: () => void; reject: (e: Error) => void }>();

  constructor(private readonly o: MarkWriterOptions) {}

  write(label: string): Promise<void> {
    const worker = this.worker ?? this.start();
    const id = ++this.next;
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`the rollback mark write took longer than ${this.o.timeoutMs ?? 5000} ms`));
      }, this.o.timeoutMs ?? 5000);
      this.pending.set(id, {
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      worker.postMessage({ id, label });
    });
  }

  /** Lets the writes posted so far finish, then ends the thread (before the module is finalised). */
  async close(): Promise<void> {
    const worker = this.worker;
    if (!worker) return;
    while (this.pending.size > 0) await new Promise((r) => setTimeout(r, 5));
    this.worker = undefined;
    await worker.terminate();
  }

  private start(): Worker {
    const worker = new Worker(WORKER, {
      eval: true,
      workerData: {
        pkcs11js: createRequire(import.meta.url).resolve('pkcs11js'),
        lib: this.o.lib,
        slot: this.o.slot,
        handle: this.o.handle,
        application: this.o.application,
      },
    });
    // An idle writer never keeps the process alive; a write in flight holds its caller, not the loop.
    worker.unref();
    worker.on('message', ({ id, error }: { id: number; error?: string }) => {
      const p = this.pending.get(id);
      this.pending.delete(id);
      if (error === undefined) p?.resolve();
      else p?.reject(new Error(error));
    });
    const fail = (e: Error) => {
      if (this.worker === worker) this.worker = undefined;
      for (const p of this.pending.values()) p.reject(e);
      this.pending.clear();
    };
    worker.on('error', fail);
    worker.on('exit', (code) => fail(new Error(`the rollback mark writer ended (exit ${code})`)));
    this.worker = worker;
    return worker;
  }
}
