/**
 * The real SoftHSM module behind switches that make it fail the way a hardware token can: pulled
 * out, a call that hangs or is slow, a call that returns a given CKR. The module underneath is
 * always real: every call that is not failed runs in SoftHSM. This is the one stand-in the tests
 * use ("a failing module"), since a software token cannot be pulled out of a running process.
 */
import pkcs11js from 'pkcs11js';
import type { Pkcs11 } from '../src/infra/hsm/hsm.js';

export interface Pkcs11Faults {
  /** While true the token is gone: slot lookups and new sessions fail, signing reports removal. */
  removed: boolean;
  /** Milliseconds C_SignAsync's result is held back (the call itself runs at once). */
  signDelayMs: number;
  /** While true, C_SignAsync results are held until {@link releaseHeld} (a hung HSM call). */
  hold: boolean;
  /** CKR the next C_SignAsync fails with, then cleared. */
  signFailsOnce?: number | undefined;
  /** Calls per method, counted before the call (C_Login attempts, for instance). */
  calls: Record<string, number>;
  /** Called with each method name before it runs (a child process reports logins with it). */
  onCall?: (method: string) => void;
}

export function newFaults(): Pkcs11Faults {
  return { removed: false, signDelayMs: 0, hold: false, calls: {} };
}

const held = new Set<() => void>();

/** Lets every held C_SignAsync result through; returns how many there were. */
export function releaseHeld(): number {
  const n = held.size;
  for (const release of [...held]) release();
  held.clear();
  return n;
}

const ckrName = (code: number) =>
  Object.entries(pkcs11js).find(([k, v]) => k.startsWith('CKR_') && v === code)?.[0] ?? `CKR_0x${code.toString(16)}`;
const error = (code: number, method: string) => new pkcs11js.Pkcs11Error(ckrName(code), code, method);

/** Wraps a loaded module (pass as `wrapModule`) so that `faults` rules its behaviour. */
export function withFaults(real: Pkcs11, faults: Pkcs11Faults): Pkcs11 {
  return new Proxy(real, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver);
      if (typeof v !== 'function' || typeof prop !== 'string' || !prop.startsWith('C_')) {
        return typeof v === 'function' ? v.bind(target) : v;
      }
      return (...args: unknown[]) => {
        faults.calls[prop] = (faults.calls[prop] ?? 0) + 1;
        faults.onCall?.(prop);
        if (faults.removed && (prop === 'C_GetSlotList' || prop === 'C_OpenSession')) {
          throw error(pkcs11js.CKR_TOKEN_NOT_PRESENT, prop);
        }
        if (prop !== 'C_SignAsync') return v.apply(target, args);
        if (faults.removed) return Promise.reject(error(pkcs11js.CKR_DEVICE_REMOVED, 'C_Sign'));
        if (faults.signFailsOnce !== undefined) {
          const code = faults.signFailsOnce;
          faults.signFailsOnce = undefined;
          return Promise.reject(error(code, 'C_Sign'));
        }
        const result = v.apply(target, args) as Promise<Buffer>;
        const delay = faults.signDelayMs;
        const hold = faults.hold;
        if (!delay && !hold) return result;
        // The real call completes in SoftHSM; only its result reaches the caller late.
        return result.then(
          (sig) =>
            new Promise<Buffer>((resolve) => {
              if (hold) held.add(() => resolve(sig));
              else setTimeout(() => resolve(sig), delay);
            }),
        );
      };
    },
  });
}

/**
 * Installs `faults` on every module pkcs11js loads from now on in this process (for a child
 * process that runs src/main.ts unchanged, see harness/faulty-main.ts).
 */
export function installFaults(faults: Pkcs11Faults): void {
  const Real = pkcs11js.PKCS11;
  (pkcs11js as { PKCS11: typeof Real }).PKCS11 = class extends Real {
    constructor(library?: string) {
      super(library);
      // A derived constructor may return another object: the faulty view of this module.
      // biome-ignore lint/correctness/noConstructorReturn: the stand-in must replace the instance
      return withFaults(this, faults);
    }
  };
}
