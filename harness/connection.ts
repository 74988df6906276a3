import * as grpc from '@grpc/grpc-js';

export interface ConnectionWatch {
  /** Every connectivity state the channel went through since `watchConnection`, in order. */
  readonly changes: string[];
  /** Whether the channel is connected now and never left that state since it was first READY. */
  stayedReady(): boolean;
  stop(): void;
}

/**
 * Records a client channel's connectivity states. A channel that stays READY has kept its one
 * HTTP/2 connection: a closed connection shows as IDLE, CONNECTING or TRANSIENT_FAILURE, so a
 * test can prove that two calls went over the same connection.
 */
export function watchConnection(client: grpc.Client): ConnectionWatch {
  const channel = client.getChannel();
  const changes: string[] = [];
  let stopped = false;
  const follow = (current: grpc.connectivityState) => {
    // No deadline (grpc-js arms no timer for Infinity); close() reports SHUTDOWN and ends it.
    channel.watchConnectivityState(current, Infinity, (err) => {
      if (err || stopped) return;
      const next = channel.getConnectivityState(false);
      changes.push(grpc.connectivityState[next]);
      if (next !== grpc.connectivityState.SHUTDOWN) follow(next);
    });
  };
  follow(channel.getConnectivityState(false));
  return {
    changes,
    stayedReady() {
      const ready = changes.indexOf('READY');
      const now = channel.getConnectivityState(false);
      return ready >= 0 && ready === changes.length - 1 && now === grpc.connectivityState.READY;
    },
    stop() {
      stopped = true;
    },
  };
}
