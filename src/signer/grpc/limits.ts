import type * as grpc from '@grpc/grpc-js';
import type { Config } from '../../infra/config/schema.js';
import type { Authorizer } from '../../infra/grpc/auth.js';
import { ClientSlots } from '../../infra/grpc/client-slots.js';
import type { GuardOptions } from '../../infra/grpc/request-guard.js';
import type { Logger } from '../../infra/log.js';

type Limits = Config['limits'];

/**
 * Room above the largest method limit: a request up to this much too large is still read and
 * refused with MESSAGE_TOO_LARGE and its ErrorInfo; beyond it the transport refuses it unread.
 */
export const TRANSPORT_SLACK_BYTES = 1024 * 1024;

/** The largest request message of each method (by name, e.g. "Sign"), in bytes. */
export function messageLimit(limits: Limits, method: string): number {
  const m = limits.messageBytes;
  return method === 'Sign'
    ? m.sign
    : method === 'SignBatch'
      ? m.signBatch
      : method === 'SetPolicy'
        ? m.setPolicy
        : m.other;
}

/**
 * Transport options: the receive limit sits above every method's, so the per-method check in
 * the request guard is the one clients meet; concurrent streams per connection are capped.
 */
export function serverOptions(limits: Limits): grpc.ServerOptions {
  const largest = Math.max(...Object.values(limits.messageBytes));
  return {
    'grpc.max_receive_message_length': largest + TRANSPORT_SLACK_BYTES,
    'grpc.max_concurrent_streams': limits.maxConcurrentStreams,
  };
}

/** The request guard of the signer's services: sizes, undecodable bytes, calls in flight. */
export function edgeGuard(limits: Limits, auth: Authorizer, log: Logger): GuardOptions {
  return {
    maxMessageBytes: (method) => messageLimit(limits, method),
    clientOf: (call) => {
      try {
        return auth.identify(call).client;
      } catch {
        return undefined;
      }
    },
    inFlight: new ClientSlots(limits.maxInFlightPerClient, 'calls in flight', 100),
    // Long-lived streams with their own per-client cap (KeyWatchers).
    uncounted: new Set(['WatchKeys']),
    log,
  };
}
