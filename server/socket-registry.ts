/**
 * The open sockets of a push server, by user, and the slow-consumer check
 * that closes a socket whose send buffer has passed its cap.
 */
import type { WebSocket } from "@trufflesuite/uws-js-unofficial";
import type { Logger } from "../common/logger.ts";
import { CloseCode } from "../protocol/close-codes.ts";
import type { PushMetrics } from "./metrics.ts";

/** Socket user data that the registry reads. */
export interface RegisteredConnection {
  user: string;
  /** Id of the connection in the logs. */
  conn: string;
}

/**
 * Returns the fields that name a socket in a log line. Sockets carry these
 * two strings rather than a child logger each, which would cost memory on
 * every idle socket.
 */
export function connectionFields(connection: RegisteredConnection): { conn: string; user: string } {
  return { conn: connection.conn, user: connection.user };
}

/** Open sockets, all of them and by user. */
export class SocketRegistry<T extends RegisteredConnection> {
  readonly #all = new Set<WebSocket<T>>();
  readonly #byUser = new Map<string, Set<WebSocket<T>>>();
  readonly #maxBackpressureBytes: number;
  readonly #metrics: PushMetrics;
  readonly #logger: Logger;

  constructor(maxBackpressureBytes: number, metrics: PushMetrics, logger: Logger) {
    this.#maxBackpressureBytes = maxBackpressureBytes;
    this.#metrics = metrics;
    this.#logger = logger;
  }

  get size(): number {
    return this.#all.size;
  }

  add(ws: WebSocket<T>): void {
    this.#all.add(ws);
    const { user } = ws.getUserData();
    let sockets = this.#byUser.get(user);
    if (sockets === undefined) {
      sockets = new Set();
      this.#byUser.set(user, sockets);
    }
    sockets.add(ws);
  }

  /** Removes a socket. Call it from the close handler, while the user data is still readable. */
  delete(ws: WebSocket<T>): void {
    if (!this.#all.delete(ws)) return;
    const { user } = ws.getUserData();
    const sockets = this.#byUser.get(user);
    sockets?.delete(ws);
    if (sockets?.size === 0) this.#byUser.delete(user);
  }

  /** Returns the number of open sockets of `user`. */
  countOf(user: string): number {
    return this.#byUser.get(user)?.size ?? 0;
  }

  /** Returns a copy of the open sockets of `user`, safe to iterate while sockets close. */
  listOf(user: string): WebSocket<T>[] {
    return [...(this.#byUser.get(user) ?? [])];
  }

  /** Returns a copy of the open sockets, safe to iterate while sockets close. */
  list(): WebSocket<T>[] {
    return [...this.#all];
  }

  /** Closes every socket of `user` whose send buffer has passed the cap. */
  endSlowSocketsOf(user: string): void {
    const sockets = this.#byUser.get(user);
    if (sockets === undefined) return;
    // Deleting the current entry of a Set during for-of is safe, and end() deletes it.
    for (const ws of sockets) this.endIfSlow(ws);
  }

  /** Closes every socket whose send buffer has passed the cap. */
  endSlowSockets(): void {
    for (const ws of this.#all) this.endIfSlow(ws);
  }

  /** Closes `ws` with SLOW_CONSUMER when its send buffer has passed the cap. Returns true then. */
  endIfSlow(ws: WebSocket<T>): boolean {
    const bufferedBytes = ws.getBufferedAmount();
    if (bufferedBytes <= this.#maxBackpressureBytes) return false;

    this.#metrics.slowConsumerCloses.inc();
    this.#logger.warn(
      {
        ...connectionFields(ws.getUserData()),
        bufferedBytes,
        maxBackpressureBytes: this.#maxBackpressureBytes,
      },
      "slow socket closed",
    );
    // The close frame queues behind the buffered frames, so the client reads them first.
    ws.end(CloseCode.SLOW_CONSUMER, "slow consumer");
    return true;
  }
}
