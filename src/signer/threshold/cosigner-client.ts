import { readFileSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import { call } from '../../client/client.js';
import { decodeError } from '../../client/errors.js';
import type { Config } from '../../infra/config/schema.js';
import { signerV1 } from '../../infra/grpc/proto.js';

export type ThresholdConfig = NonNullable<Config['threshold']>;

/** Why a cosigner did not deliver: it is named with this in errors, audit and metrics. */
export class CosignerFault extends Error {
  override name = 'CosignerFault';
  constructor(
    readonly cosigner: number,
    /** 'unavailable', 'deadline', 'invalid share', or the cosigner's refusal reason. */
    readonly why: string,
    /** The cosigner's own refusal, when it answered with one. */
    readonly refusal?: { code: number; reason?: string; message: string; metadata: Record<string, string> },
  ) {
    super(`cosigner ${cosigner}: ${why}`);
  }
}

/** mTLS channels to the configured cosigners, one per cosigner, with per-call deadlines. */
export class CosignerClients {
  private readonly clients = new Map<number, grpc.Client>();

  constructor(
    private readonly cfg: ThresholdConfig,
    caFile: string,
  ) {
    const creds = grpc.credentials.createSsl(
      readFileSync(caFile),
      readFileSync(cfg.tls.keyFile),
      readFileSync(cfg.tls.certFile),
    );
    for (const c of cfg.cosigners) {
      const name = c.serverName ?? c.address.slice(0, c.address.lastIndexOf(':'));
      this.clients.set(
        c.id,
        new signerV1.Cosigner(c.address, creds, {
          'grpc.ssl_target_name_override': name,
          'grpc.default_authority': name,
          // A restarted cosigner is back in the signing set within a second, not grpc's default 2 min.
          'grpc.initial_reconnect_backoff_ms': 200,
          'grpc.max_reconnect_backoff_ms': 1000,
        }),
      );
    }
  }

  get ids(): number[] {
    return this.cfg.cosigners.map((c) => c.id).sort((a, b) => a - b);
  }

  /** Calls `method` on cosigner `id`; every failure becomes a CosignerFault naming it. */
  async call<T>(id: number, method: string, request: object, deadlineMs = this.cfg.deadlineMs): Promise<T> {
    const client = this.clients.get(id);
    if (!client) throw new CosignerFault(id, 'not configured');
    try {
      return await call<T>(client, method, request, deadlineMs);
    } catch (e) {
      const err = e as grpc.ServiceError;
      if (err.code === grpc.status.DEADLINE_EXCEEDED) throw new CosignerFault(id, 'deadline');
      if (err.code === grpc.status.UNAVAILABLE && !decodeError(err).reason) throw new CosignerFault(id, 'unavailable');
      const d = decodeError(err);
      throw new CosignerFault(id, d.reason ?? `status ${err.code}`, d);
    }
  }

  /** Calls every cosigner in `ids`; resolves in order, or rejects with the first fault. */
  async all<T>(ids: number[], method: string, request: (id: number) => object, deadlineMs?: number): Promise<T[]> {
    const settled = await Promise.allSettled(ids.map((id) => this.call<T>(id, method, request(id), deadlineMs)));
    const failed = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
    if (failed) throw failed.reason;
    return settled.map((s) => (s as PromiseFulfilledResult<T>).value);
  }

  close(): void {
    for (const c of this.clients.values()) c.close();
  }
}
