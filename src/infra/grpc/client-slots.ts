import { SignerError } from '../../core/errors.js';

/**
 * A per-client cap on something held open: requests in flight, or streams. A client past its
 * cap is refused at once (RESOURCE_EXHAUSTED, CLIENT_OVERLOADED, with RetryInfo) instead of
 * queueing work the signer would have to hold in memory. Clients are certificate CNs from our
 * CA, and a client's entry is dropped when it holds nothing, so the map stays small.
 */
export class ClientSlots {
  private readonly used = new Map<string, number>();

  constructor(
    /** Most slots one client may hold at once. */
    readonly max: number,
    /** What a slot is, for the refusal ("requests in flight", "WatchKeys streams"). */
    private readonly what: string,
    /** Suggested retry delay sent in RetryInfo. */
    private readonly retryDelayMs: number,
  ) {}

  /**
   * Takes a slot for `client`, or throws CLIENT_OVERLOADED. The caller MUST call the returned
   * release exactly once when the request or stream ends; later calls are ignored.
   */
  take(client: string): () => void {
    const n = this.used.get(client) ?? 0;
    if (n >= this.max) {
      throw new SignerError(
        'CLIENT_OVERLOADED',
        `client "${client}" already has ${n} ${this.what}, the most allowed; retry when one has finished`,
        { client, limit: String(this.max), what: this.what },
        this.retryDelayMs,
      );
    }
    this.used.set(client, n + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = (this.used.get(client) ?? 1) - 1;
      if (left > 0) this.used.set(client, left);
      else this.used.delete(client);
    };
  }

  /** Slots `client` holds now. */
  held(client: string): number {
    return this.used.get(client) ?? 0;
  }
}
