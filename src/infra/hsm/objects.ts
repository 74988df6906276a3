import pkcs11js from 'pkcs11js';
import type { Pkcs11 } from './module.js';

type Handle = Buffer;

/**
 * Token objects by CKA_ID, with their handles cached: a lookup per signature would cost more
 * than the signature. Handles are only valid while the token's sessions last, so the owner
 * MUST `clear()` the cache whenever it reconnects.
 */
export class ObjectCache {
  private readonly handles = new Map<string, Handle>();

  constructor(private readonly p11: Pkcs11) {}

  /** The object of class `cls` (CKO_*) with this CKA_ID; throws unless exactly one matches. */
  get(session: Handle, keyId: Uint8Array, cls: number): Handle {
    const k = `${cls}:${Buffer.from(keyId).toString('hex')}`;
    let h = this.handles.get(k);
    if (!h) {
      const found = this.find(session, [
        { type: pkcs11js.CKA_CLASS, value: cls },
        { type: pkcs11js.CKA_ID, value: Buffer.from(keyId) },
      ]);
      if (found.length !== 1) throw new Error(`expected one key object with that CKA_ID, found ${found.length}`);
      h = found[0]!;
      this.handles.set(k, h);
    }
    return h;
  }

  /** Drops cached handles of a key whose objects were destroyed. */
  forget(keyId: Uint8Array): void {
    const hex = Buffer.from(keyId).toString('hex');
    for (const k of [...this.handles.keys()]) if (k.endsWith(`:${hex}`)) this.handles.delete(k);
  }

  clear(): void {
    this.handles.clear();
  }

  /** Objects matching a template, up to 64, on a session the caller holds. */
  find(session: Handle, template: pkcs11js.Template): Handle[] {
    this.p11.C_FindObjectsInit(session, template);
    try {
      return this.p11.C_FindObjects(session, 64);
    } finally {
      this.p11.C_FindObjectsFinal(session);
    }
  }
}
