import type * as grpc from '@grpc/grpc-js';
import { SignerError } from '../../core/errors.js';
import type { Logger } from '../log.js';
import type { ClientSlots } from './client-slots.js';
import { toServiceError } from './status.js';

/**
 * What a request's deserializer hands the handler instead of a message when the bytes were
 * refused. grpc-js answers a throwing deserializer with INTERNAL and no ErrorInfo, and it has
 * no per-method size limit, so both decisions are made here and delivered as a value.
 */
const REFUSED = Symbol('request refused before its handler');
type Refused = { [REFUSED]: SignerError };

function refusedOf(request: unknown): SignerError | undefined {
  return typeof request === 'object' && request !== null && REFUSED in request
    ? (request as Refused)[REFUSED]
    : undefined;
}

export interface GuardOptions {
  /** The largest request message `method` (e.g. "Sign") accepts, in bytes. */
  maxMessageBytes(method: string): number;
  /** The calling client (certificate CN), or undefined: its handler then refuses the call. */
  clientOf(call: Pick<grpc.ServerUnaryCall<unknown, unknown>, 'getAuthContext'>): string | undefined;
  /** Requests in flight per client; unary calls and counted streams hold one slot each. */
  inFlight: ClientSlots;
  /** Methods not counted as in flight: long-lived streams with a bound of their own. */
  uncounted?: ReadonlySet<string>;
  log?: Logger;
}

/**
 * A service definition and implementation with the edge bounds applied to every unary and
 * server-streaming method:
 * - a request larger than its method's limit is refused (RESOURCE_EXHAUSTED, MESSAGE_TOO_LARGE)
 *   without being decoded; the transport's own limit (grpc.max_receive_message_length) must be
 *   above every method's, so requests in between get this refusal with its ErrorInfo;
 * - bytes that are not a valid protobuf message are refused (INVALID_ARGUMENT, REQUEST_INVALID);
 * - a client past its in-flight cap is refused (RESOURCE_EXHAUSTED, CLIENT_OVERLOADED).
 * Client-streaming and bidi methods are passed through unchanged.
 */
export function guardService(
  definition: grpc.ServiceDefinition,
  implementation: grpc.UntypedServiceImplementation,
  o: GuardOptions,
): { definition: grpc.ServiceDefinition; implementation: grpc.UntypedServiceImplementation } {
  const defs: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
  const impls: grpc.UntypedServiceImplementation = {};
  for (const [name, m] of Object.entries(definition) as Array<[string, grpc.MethodDefinition<unknown, unknown>]>) {
    const handler = implementation[name];
    if (m.requestStream || !handler) {
      defs[name] = m;
      if (handler) impls[name] = handler;
      continue;
    }
    const limit = o.maxMessageBytes(name);
    defs[name] = { ...m, requestDeserialize: (bytes: Buffer) => deserialize(m, name, limit, bytes) };
    const counted = !o.uncounted?.has(name);
    impls[name] = m.responseStream
      ? guardStream(handler as grpc.handleServerStreamingCall<unknown, unknown>, counted, o)
      : guardUnary(handler as grpc.handleUnaryCall<unknown, unknown>, counted, o);
  }
  return { definition: defs, implementation: impls };
}

function deserialize(m: grpc.MethodDefinition<unknown, unknown>, name: string, limit: number, bytes: Buffer): unknown {
  if (bytes.length > limit) {
    const e = new SignerError(
      'MESSAGE_TOO_LARGE',
      `${name} takes request messages of up to ${limit} bytes; this one has ${bytes.length}`,
      {
        method: name,
        limitBytes: String(limit),
        sizeBytes: String(bytes.length),
      },
    );
    return { [REFUSED]: e } satisfies Refused;
  }
  try {
    return m.requestDeserialize(bytes);
  } catch {
    // The decoder's text may quote the bytes; the method name is all the caller needs.
    return {
      [REFUSED]: new SignerError('REQUEST_INVALID', `the ${name} request is not a valid protobuf message`, {
        method: name,
      }),
    } satisfies Refused;
  }
}

function slotFor(call: Parameters<GuardOptions['clientOf']>[0], counted: boolean, o: GuardOptions): () => void {
  const client = counted ? o.clientOf(call) : undefined;
  return client === undefined ? () => {} : o.inFlight.take(client);
}

function guardUnary(
  handler: grpc.handleUnaryCall<unknown, unknown>,
  counted: boolean,
  o: GuardOptions,
): grpc.handleUnaryCall<unknown, unknown> {
  return (call, callback) => {
    let release: () => void;
    try {
      const refused = refusedOf(call.request);
      if (refused) throw refused;
      release = slotFor(call, counted, o);
    } catch (e) {
      return callback(toServiceError(e, o.log) as grpc.ServiceError);
    }
    handler(call, (...args: Parameters<grpc.sendUnaryData<unknown>>) => {
      release();
      callback(...args);
    });
  };
}

function guardStream(
  handler: grpc.handleServerStreamingCall<unknown, unknown>,
  counted: boolean,
  o: GuardOptions,
): grpc.handleServerStreamingCall<unknown, unknown> {
  return (call) => {
    let release: () => void;
    try {
      const refused = refusedOf(call.request);
      if (refused) throw refused;
      release = slotFor(call, counted, o);
    } catch (e) {
      call.emit('error', toServiceError(e, o.log));
      return;
    }
    for (const event of ['finish', 'close', 'cancelled', 'error']) call.once(event, release);
    handler(call);
  };
}
