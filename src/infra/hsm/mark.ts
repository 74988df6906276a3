/**
 * The rollback mark's home in the token: one CKO_DATA object per replica, found by its
 * CKA_APPLICATION `hsm-signer-audit-mark-<replica>`, holding the latest tree head under which
 * that replica released signatures. It lives outside the database on purpose: restoring a
 * database backup or promoting a lagging standby cannot take it back (src/core/audit/rollback.ts).
 *
 * Contract
 * - The object is CKA_TOKEN and CKA_PRIVATE (read and written only by a logged-in user), created
 *   at first start. The head is kept in its CKA_LABEL, `hsm-signer-audit-mark-<replica>
 *   size=<n> tree=<64 hex>` (the RFC 9162 tree head at size n; a mark written by the previous
 *   release reads `root=<64 hex>`, the hash-chain hash of entry n, and decodes with `chainHash`
 *   set so the guard checks it the old way until the next release rewrites it): SoftHSM 2.6 refuses C_SetAttributeValue on a data object's
 *   CKA_VALUE (CKR_ATTRIBUTE_READ_ONLY) and the label is the attribute it lets us change, in
 *   one call, in place (no window in which the token holds no mark).
 * - `advance` writes with one C_SetAttributeValue and never lowers the mark (a smaller or equal
 *   size is refused); `reset` is the one way down and is for scripts/reconcile-rollback.ts only.
 * - Writes are serialised here; the caller batches (one write per commit group). `advance` writes
 *   from a worker thread on a session of its own (mark-writer.ts): off the event loop, and never
 *   queued behind signatures for a hot session. `reset` and reads stay on the calling thread.
 */
import pkcs11js from 'pkcs11js';
import type { TreeHead } from '../../core/audit/rollback.js';
import type { Hsm } from './hsm.js';
import { MarkWriter } from './mark-writer.js';

export const MARK_APPLICATION = 'hsm-signer-audit-mark';
const ROOT_SIZE = 32;

export const markLabel = (replica: string) => `${MARK_APPLICATION}-${replica}`;

/** The label holding a head: the object's name, then the head; the bare name before the first write. */
export function encodeMark(replica: string, h: TreeHead | undefined): string {
  if (!h) return markLabel(replica);
  if (!Number.isSafeInteger(h.size) || h.size < 0) throw new Error('mark size must be a safe non-negative integer');
  if (h.root.length !== ROOT_SIZE) throw new Error(`mark root must be ${ROOT_SIZE} bytes`);
  if (h.chainHash) throw new Error('a mark is written as a tree head, never as a chain hash');
  return `${markLabel(replica)} size=${h.size} tree=${Buffer.from(h.root).toString('hex')}`;
}

/** Decodes a mark label; undefined for a freshly created object. Throws on anything else. */
export function decodeMark(label: string): TreeHead | undefined {
  const m = / size=(\d{1,16}) (tree|root)=([0-9a-f]{64})$/.exec(label);
  if (!m) {
    if (/^hsm-signer-audit-mark-[A-Za-z0-9._-]+$/.test(label)) return undefined;
    throw new Error('the rollback mark object holds an unknown format');
  }
  const head: TreeHead = { size: Number(m[1]), root: new Uint8Array(Buffer.from(m[3]!, 'hex')) };
  return m[2] === 'root' ? { ...head, chainHash: true } : head;
}

/** Every replica's mark on the token: what a starting replica checks its database against. */
export interface MarkReading {
  replica: string;
  head: TreeHead | undefined;
}

export class HsmMark {
  private current: TreeHead | undefined;
  private writing: Promise<unknown> = Promise.resolve();
  /** Absent when the module's path is unknown (a wrapped module): `advance` then writes here. */
  private readonly writer: MarkWriter | undefined;

  private constructor(
    private readonly hsm: Hsm,
    readonly replica: string,
    private handle: Buffer,
    slot: Buffer,
  ) {
    const lib = (hsm.p11 as { libPath?: string }).libPath;
    this.writer = lib ? new MarkWriter({ lib, slot, handle, application: markLabel(replica) }) : undefined;
  }

  /** Finds this replica's mark object, creating an empty one at first start. */
  static async open(hsm: Hsm, replica: string): Promise<HsmMark> {
    if (!/^[A-Za-z0-9._-]{1,64}$/.test(replica)) throw new Error('replica id: 1..64 of A-Z a-z 0-9 . _ -');
    const [handle, slot] = await hsm.manage((session): [Buffer, Buffer] => {
      const slot = hsm.p11.C_GetSessionInfo(session).slotID;
      const found = hsm.find(session, template(replica));
      if (found.length > 1) throw new Error(`${found.length} mark objects labelled ${markLabel(replica)} on the token`);
      if (found[0]) return [found[0], slot];
      const created = hsm.p11.C_CreateObject(session, [
        ...template(replica),
        { type: pkcs11js.CKA_LABEL, value: encodeMark(replica, undefined) },
        { type: pkcs11js.CKA_TOKEN, value: true },
        { type: pkcs11js.CKA_PRIVATE, value: true },
        { type: pkcs11js.CKA_MODIFIABLE, value: true },
      ]);
      return [created, slot];
    });
    const mark = new HsmMark(hsm, replica, handle, slot);
    mark.current = await mark.read();
    return mark;
  }

  /** The value last written (or read at open). */
  get head(): TreeHead | undefined {
    return this.current;
  }

  /** Reads the object's value from the token. */
  read(): Promise<TreeHead | undefined> {
    return this.hsm.withSession('hot', (session) => decodeMark(labelOf(this.hsm, session, this.handle)));
  }

  /** Every mark object on the token, this replica's and the others'. */
  static readAll(hsm: Hsm): Promise<MarkReading[]> {
    return hsm.manage((session) =>
      hsm.find(session, [{ type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_DATA }]).flatMap((h) => {
        const [app] = hsm.p11.C_GetAttributeValue(session, h, [{ type: pkcs11js.CKA_APPLICATION }]);
        const name = ((app!.value as Buffer | undefined) ?? Buffer.alloc(0)).toString('utf8');
        if (!name.startsWith(`${MARK_APPLICATION}-`)) return [];
        return [{ replica: name.slice(MARK_APPLICATION.length + 1), head: decodeMark(labelOf(hsm, session, h)) }];
      }),
    );
  }

  /** Raises the mark to `next`; refuses a size that is not larger than the current one. */
  advance(next: TreeHead): Promise<void> {
    return this.serial(() => {
      if (this.current && next.size <= this.current.size) {
        throw new Error(`the rollback mark is never lowered (${this.current.size} -> ${next.size})`);
      }
      return this.writer ? this.writeOff(next, this.writer) : this.write(next);
    });
  }

  /** Waits for the writes in flight and ends the writer thread: before the module is finalised. */
  async close(): Promise<void> {
    await this.writing;
    await this.writer?.close();
  }

  /** Sets the mark to `head` whatever it held: the reconcile tool's decision, audited by it. */
  reset(head: TreeHead): Promise<void> {
    return this.serial(() => this.write(head));
  }

  private serial(fn: () => Promise<void>): Promise<void> {
    const run = this.writing.then(fn, fn);
    this.writing = run.catch(() => undefined);
    return run;
  }

  private async writeOff(head: TreeHead, writer: MarkWriter): Promise<void> {
    await writer.write(encodeMark(this.replica, head));
    this.current = head;
  }

  private async write(head: TreeHead): Promise<void> {
    const value = encodeMark(this.replica, head);
    await this.hsm.withSession('hot', (session) => {
      try {
        this.hsm.p11.C_SetAttributeValue(session, this.handle, [{ type: pkcs11js.CKA_LABEL, value }]);
      } catch {
        // A token that went away and came back (logout, reset) drops handles of private objects:
        // find the object again, once, and write; a second failure goes to the caller.
        const [found] = this.hsm.find(session, template(this.replica));
        if (!found) throw new Error(`the rollback mark object ${markLabel(this.replica)} is gone from the token`);
        this.handle = found;
        this.hsm.p11.C_SetAttributeValue(session, this.handle, [{ type: pkcs11js.CKA_LABEL, value }]);
      }
    });
    this.current = head;
  }
}

function template(replica: string): pkcs11js.Template {
  return [
    { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_DATA },
    { type: pkcs11js.CKA_APPLICATION, value: Buffer.from(markLabel(replica)) },
  ];
}

function labelOf(hsm: Hsm, session: Buffer, handle: Buffer): string {
  const [attr] = hsm.p11.C_GetAttributeValue(session, handle, [{ type: pkcs11js.CKA_LABEL }]);
  return ((attr!.value as Buffer | undefined) ?? Buffer.alloc(0)).toString('utf8');
}
