/**
 * Closing the sockets of a push server that shuts down: each socket gets
 * RESTART (4000) once the frames already queued for it are sent, so its
 * client reconnects to any server and resumes after the last id it read.
 */
import type { WebSocket } from "@trufflesuite/uws-js-unofficial";
import type { Logger } from "../common/logger.ts";
import { CloseCode } from "../protocol/close-codes.ts";
import type { RegisteredConnection, SocketRegistry } from "./socket-registry.ts";

/** Socket user data that the drain reads and marks. */
export interface DrainableConnection extends RegisteredConnection {
  /** True once the socket waits for its send buffer to empty before it is ended. */
  draining: boolean;
}

/** The shutdown step that ends every socket, waiting a bounded time for slow ones. */
export class SocketDrain<T extends DrainableConnection> {
  readonly #sockets: SocketRegistry<T>;
  #onEmpty: (() => void) | undefined;

  constructor(sockets: SocketRegistry<T>) {
    this.#sockets = sockets;
  }

  /**
   * Ends every socket with RESTART. A socket with queued frames first leaves
   * its topics and is ended by {@link onDrain} once they are sent. After
   * `drainMs` the sockets still open are closed by force, without a close
   * frame. Resolves with the number of sockets closed by force.
   */
  async run(drainMs: number, logger: Logger): Promise<number> {
    const empty = new Promise<void>((resolve) => {
      this.#onEmpty = resolve;
    });
    for (const ws of this.#sockets.list()) endOrDrain(ws);

    if (this.#sockets.size > 0) {
      logger.info({ sockets: this.#sockets.size, drainMs }, "waiting for sockets to drain");
      const timer = setTimeout(() => this.#onEmpty?.(), drainMs);
      await empty;
      clearTimeout(timer);
    }
    this.#onEmpty = undefined;

    const forced = this.#sockets.list();
    for (const ws of forced) ws.close();
    return forced.length;
  }

  /** Ends a draining socket whose send buffer is empty. Call it from the drain handler. */
  onDrain(ws: WebSocket<T>): void {
    if (ws.getUserData().draining && ws.getBufferedAmount() === 0) endForRestart(ws);
  }

  /**
   * Ends the wait of {@link run} once the last socket has closed. Call it from
   * the close handler, after the registry has removed the socket.
   */
  onClose(): void {
    if (this.#sockets.size === 0) this.#onEmpty?.();
  }
}

function endOrDrain<T extends DrainableConnection>(ws: WebSocket<T>): void {
  if (ws.getBufferedAmount() === 0) {
    endForRestart(ws);
    return;
  }
  ws.getUserData().draining = true;
  // No new frame queues up behind the ones the client has still to read.
  for (const topic of ws.getTopics()) ws.unsubscribe(topic);
}

function endForRestart<T>(ws: WebSocket<T>): void {
  ws.end(CloseCode.RESTART, "server restarting");
}
