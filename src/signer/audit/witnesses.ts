import { readFileSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import { call } from '../../client/client.js';
import { decodeError } from '../../client/errors.js';
import { parseCheckpoint } from '../../core/audit/checkpoint.js';
import { cosignatureVerifier } from '../../core/audit/cosignature.js';
import { addSignatures, type NoteSignature, openNote, parseNote } from '../../core/audit/note.js';
import type { Config } from '../../infra/config/schema.js';
import { signerV1 } from '../../infra/grpc/proto.js';
import type { Logger } from '../../infra/log.js';

export type WitnessConfig = NonNullable<Config['witness']>;

/** Where consistency proofs come from: the signer's Merkle tree over its audit log. */
export type ProofSource = (fromSize: number, toSize: number) => Promise<Uint8Array[]>;

/**
 * Where verified cosignatures go: the stored note of that size gets them as extra signature lines
 * (the audit branch's `Checkpointer.addCosignatures`, which checks the signed text is unchanged).
 */
export type CosignatureSink = (size: number, sigs: readonly NoteSignature[]) => Promise<unknown>;

export interface WitnessOutcome {
  name: string;
  ok: boolean;
  /** The witness's refusal reason, 'unavailable', or 'bad cosignature'. */
  why?: string;
  message?: string;
  /** The witness's latest cosigned size, when it said. */
  latestSize?: number;
}

export interface Publication {
  /** The note with the log's line and every verified cosignature. */
  note: string;
  size: number;
  /** `required` witnesses cosigned: the checkpoint counts as published. */
  published: boolean;
  outcomes: WitnessOutcome[];
}

/**
 * Sends each signed checkpoint to the configured witnesses (C2SP tlog-witness add-checkpoint, over
 * signer.v1.Witness), with a consistency proof from the size each witness last cosigned, and keeps
 * the cosignatures that verify under the witness's pinned key. A witness that answers
 * WITNESS_CONFLICT names its size and gets one retry with the right proof; a WITNESS_FORK or
 * WITNESS_ROLLBACK is logged as an error: our log does not extend what that witness saw.
 */
export class WitnessPublisher {
  private readonly clients = new Map<string, grpc.Client>();
  /** Last size each witness is known to have cosigned (learned from its answers). */
  private readonly sizes = new Map<string, number>();

  constructor(
    private readonly cfg: WitnessConfig,
    caFile: string,
    private readonly proofs: ProofSource,
    private readonly sink: CosignatureSink,
    private readonly log?: Logger,
  ) {
    const creds = grpc.credentials.createSsl(
      readFileSync(caFile),
      readFileSync(cfg.tls.keyFile),
      readFileSync(cfg.tls.certFile),
    );
    for (const w of cfg.endpoints) {
      const server = w.serverName ?? w.address.slice(0, w.address.lastIndexOf(':'));
      const opts = {
        'grpc.ssl_target_name_override': server,
        'grpc.default_authority': server,
        'grpc.initial_reconnect_backoff_ms': 200,
        'grpc.max_reconnect_backoff_ms': 1000,
      };
      this.clients.set(w.name, new signerV1.Witness(w.address, creds, opts));
    }
  }

  /** Publishes one checkpoint note signed by the log key; stores it with the cosignatures it got. */
  async publish(note: string): Promise<Publication> {
    const text = parseNote(note).text;
    const { size, origin } = parseCheckpoint(text);
    const results = await Promise.all(this.cfg.endpoints.map((w) => this.ask(w, origin, note, text, size)));
    const sigs = results.flatMap((r) => (r.sig ? [r.sig] : []));
    const outcomes = results.map((r) => r.outcome);
    const withCosignatures = sigs.length > 0 ? addSignatures(note, sigs) : note;
    const published = sigs.length >= this.cfg.required;
    if (sigs.length > 0) await this.sink(size, sigs);
    const level = published ? 'info' : 'error';
    this.log?.[level](
      { size, cosigned: sigs.length, required: this.cfg.required, outcomes },
      'checkpoint sent to witnesses',
    );
    return { note: withCosignatures, size, published, outcomes };
  }

  /** Each witness's latest cosigned checkpoint for `origin` (rollback detection reads these). */
  async latest(origin: string): Promise<Array<{ name: string; size: number; checkpoint: string } | WitnessOutcome>> {
    return Promise.all(
      this.cfg.endpoints.map(async (w) => {
        try {
          const r = await call<{ size: string; checkpoint: string }>(
            this.client(w.name),
            'GetLatest',
            { origin },
            this.cfg.deadlineMs,
          );
          return { name: w.name, size: Number(r.size), checkpoint: r.checkpoint };
        } catch (e) {
          return this.failure(w.name, e);
        }
      }),
    );
  }

  close(): void {
    for (const c of this.clients.values()) c.close();
  }

  private async ask(
    w: WitnessConfig['endpoints'][number],
    origin: string,
    note: string,
    text: string,
    size: number,
  ): Promise<{ sig?: NoteSignature; outcome: WitnessOutcome }> {
    const verifier = cosignatureVerifier(w.name, new Uint8Array(Buffer.from(w.publicKey, 'base64')));
    try {
      let oldSize = this.sizes.get(w.name);
      if (oldSize === undefined) {
        const latest = await call<{ size: string }>(this.client(w.name), 'GetLatest', { origin }, this.cfg.deadlineMs);
        oldSize = Number(latest.size);
      }
      let res: { cosignature: string; size: string };
      try {
        res = await this.add(w.name, oldSize, size, note);
      } catch (e) {
        const d = isServiceError(e) ? decodeError(e) : undefined;
        if (d?.reason !== 'WITNESS_CONFLICT' || d.metadata.latest_size === undefined) throw e;
        // The witness moved on (another replica published): one retry with a proof from its size.
        res = await this.add(w.name, Number(d.metadata.latest_size), size, note);
      }
      this.sizes.set(w.name, Number(res.size));
      const [sig] = openNote(`${text}\n${res.cosignature}`, [verifier]).verified;
      if (!sig) throw new Error('no cosignature line');
      return { sig, outcome: { name: w.name, ok: true } };
    } catch (e) {
      this.sizes.delete(w.name);
      return { outcome: this.failure(w.name, e) };
    }
  }

  private async add(name: string, oldSize: number, size: number, note: string) {
    const consistencyProof = oldSize > 0 && oldSize < size ? await this.proofs(oldSize, size) : [];
    const req = { oldSize: String(oldSize), consistencyProof, checkpoint: note };
    return call<{ cosignature: string; size: string }>(this.client(name), 'AddCheckpoint', req, this.cfg.deadlineMs);
  }

  private failure(name: string, e: unknown): WitnessOutcome {
    if (!isServiceError(e)) {
      return { name, ok: false, why: 'bad cosignature', message: e instanceof Error ? e.message : String(e) };
    }
    const d = decodeError(e);
    const out: WitnessOutcome = { name, ok: false, why: d.reason ?? 'unavailable', message: d.message };
    if (d.metadata.latest_size !== undefined) out.latestSize = Number(d.metadata.latest_size);
    if (d.reason === 'WITNESS_FORK' || d.reason === 'WITNESS_ROLLBACK') {
      this.log?.error({ witness: name, reason: d.reason, message: d.message }, 'a witness refused our checkpoint');
    }
    return out;
  }

  private client(name: string): grpc.Client {
    return this.clients.get(name)!;
  }
}

function isServiceError(e: unknown): e is grpc.ServiceError {
  return typeof e === 'object' && e !== null && 'code' in e && 'metadata' in e;
}

/** What the checkpointer offers witnesses: a hook per signed note, and a place for cosignatures. */
export interface SignedCheckpoints {
  onSigned(listener: (c: { size: number; note: string }) => void): void;
  addCosignatures(size: number, sigs: readonly NoteSignature[]): Promise<unknown>;
}

/**
 * Sends every checkpoint the checkpointer signs to the witnesses, one at a time in signing order
 * (each witness's next proof starts where its last cosignature ended), and stores what they
 * cosign on the checkpoint's note. Returns a function that waits for the queue (for a clean stop).
 */
export function attachWitnesses(
  checkpointer: SignedCheckpoints,
  cfg: WitnessConfig,
  caFile: string,
  proofs: ProofSource,
  log?: Logger,
): { publisher: WitnessPublisher; drain(): Promise<void> } {
  const publisher = new WitnessPublisher(
    cfg,
    caFile,
    proofs,
    (size, sigs) => checkpointer.addCosignatures(size, sigs),
    log,
  );
  let queue: Promise<unknown> = Promise.resolve();
  checkpointer.onSigned((c) => {
    queue = queue.then(
      () => publisher.publish(c.note),
      () => publisher.publish(c.note),
    );
    queue.catch((e) => log?.error({ err: e, size: c.size }, 'publishing a checkpoint to witnesses failed'));
  });
  return {
    publisher,
    drain: async () => {
      await queue.catch(() => undefined);
      publisher.close();
    },
  };
}
