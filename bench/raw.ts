/**
 * The baseline: pkcs11js straight on the token, no service code. A fixed pool of logged-in
 * sessions; a sign waits for a free session in a plain FIFO, holds it from C_SignInit to the end
 * of C_SignAsync, and hands it to the next waiter.
 */
import { randomBytes } from 'node:crypto';
import pkcs11js from 'pkcs11js';

export type Algorithm = 'ecdsa-secp256k1' | 'ecdsa-p256' | 'ed25519';

// Deliberately not imported from src/: the baseline must not share the code it is compared with.
const CKK_EC_EDWARDS = 0x40;
const CKM_EC_EDWARDS_KEY_PAIR_GEN = 0x1055;
const CKM_EDDSA = 0x1057;

const SPEC: Record<Algorithm, { keyType: number; keyGen: number; sign: number; ecParams: Buffer }> = {
  'ecdsa-secp256k1': {
    keyType: pkcs11js.CKK_EC,
    keyGen: pkcs11js.CKM_EC_KEY_PAIR_GEN,
    sign: pkcs11js.CKM_ECDSA,
    ecParams: Buffer.from('06052b8104000a', 'hex'),
  },
  'ecdsa-p256': {
    keyType: pkcs11js.CKK_EC,
    keyGen: pkcs11js.CKM_EC_KEY_PAIR_GEN,
    sign: pkcs11js.CKM_ECDSA,
    ecParams: Buffer.from('06082a8648ce3d030107', 'hex'),
  },
  ed25519: {
    keyType: CKK_EC_EDWARDS,
    keyGen: CKM_EC_EDWARDS_KEY_PAIR_GEN,
    sign: CKM_EDDSA,
    ecParams: Buffer.from('06032b6570', 'hex'),
  },
};

export interface RawKey {
  algorithm: Algorithm;
  handle: Buffer;
  mechanism: pkcs11js.Mechanism;
}

export class RawToken {
  private readonly free: Buffer[] = [];
  private readonly waiters: Array<(s: Buffer) => void> = [];
  private readonly all: Buffer[] = [];

  private constructor(private readonly p11: pkcs11js.PKCS11) {}

  /** SOFTHSM2_CONF must already be in process.env: SoftHSM reads it in C_Initialize. */
  static open(modulePath: string, label: string, pin: string, sessions: number): RawToken {
    const p11 = new pkcs11js.PKCS11();
    p11.load(modulePath);
    // Without OS locking SoftHSM2 aborts under concurrent C_SignAsync.
    p11.C_Initialize({ flags: pkcs11js.CKF_OS_LOCKING_OK });
    const t = new RawToken(p11);
    try {
      const slot = p11.C_GetSlotList(true).find((s) => p11.C_GetTokenInfo(s).label.trim() === label);
      if (!slot) throw new Error(`no token labelled "${label}"`);
      for (let i = 0; i < sessions; i++) {
        const s = p11.C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION);
        if (i === 0) p11.C_Login(s, pkcs11js.CKU_USER, pin);
        t.all.push(s);
        t.free.push(s);
      }
    } catch (e) {
      t.close();
      throw e;
    }
    return t;
  }

  /** A token key pair with the attributes the service gives its keys (sensitive, not extractable). */
  async generateKey(algorithm: Algorithm): Promise<RawKey> {
    const spec = SPEC[algorithm];
    const common = [
      { type: pkcs11js.CKA_TOKEN, value: true },
      { type: pkcs11js.CKA_KEY_TYPE, value: spec.keyType },
      { type: pkcs11js.CKA_ID, value: randomBytes(16) },
      { type: pkcs11js.CKA_LABEL, value: `bench-raw-${algorithm}` },
    ];
    const { privateKey } = await this.withSession((s) =>
      this.p11.C_GenerateKeyPairAsync(
        s,
        { mechanism: spec.keyGen },
        [
          ...common,
          { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PUBLIC_KEY },
          { type: pkcs11js.CKA_EC_PARAMS, value: spec.ecParams },
          { type: pkcs11js.CKA_VERIFY, value: true },
        ],
        [
          ...common,
          { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PRIVATE_KEY },
          { type: pkcs11js.CKA_PRIVATE, value: true },
          { type: pkcs11js.CKA_SENSITIVE, value: true },
          { type: pkcs11js.CKA_EXTRACTABLE, value: false },
          { type: pkcs11js.CKA_SIGN, value: true },
        ],
      ),
    );
    return { algorithm, handle: privateKey, mechanism: { mechanism: spec.sign } };
  }

  /** C_SignInit + C_SignAsync on the first free session. */
  sign(key: RawKey, data: Buffer): Promise<Buffer> {
    return this.withSession((s) => {
      this.p11.C_SignInit(s, key.mechanism, key.handle);
      return this.p11.C_SignAsync(s, data, Buffer.alloc(128));
    });
  }

  close(): void {
    for (const s of this.all.splice(0)) {
      try {
        this.p11.C_CloseSession(s);
      } catch {
        // already gone
      }
    }
    try {
      this.p11.C_Finalize();
    } catch {
      // not initialised
    }
  }

  private async withSession<T>(fn: (s: Buffer) => Promise<T>): Promise<T> {
    const s = this.free.pop() ?? (await new Promise<Buffer>((resolve) => this.waiters.push(resolve)));
    try {
      return await fn(s);
    } finally {
      const next = this.waiters.shift();
      if (next) next(s);
      else this.free.push(s);
    }
  }
}
