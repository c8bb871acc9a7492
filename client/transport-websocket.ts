import type { Transport, TransportHandlers } from "./transport.ts";

/** Close code for a socket that closed without a close frame (RFC 6455, section 7.4.1). */
const ABNORMAL_CLOSURE = 1006;

/** Transport over the browser's native WebSocket. */
export class WebSocketTransport implements Transport {
  readonly name = "websocket";
  readonly url: string;
  #socket: WebSocket | undefined;

  constructor(url: string) {
    this.url = url;
  }

  /** Returns true when the page has a native WebSocket. */
  static supported(): boolean {
    return typeof WebSocket !== "undefined";
  }

  connect(handlers: TransportHandlers): void {
    let socket: WebSocket;
    try {
      socket = new WebSocket(this.url);
    } catch (error) {
      // The constructor throws for a malformed URL or a blocked port. Report it
      // like any other failure to open, on a later turn as a socket would.
      setTimeout(() => handlers.onClose(ABNORMAL_CLOSURE, String(error), false), 0);
      return;
    }

    let wasOpen = false;
    socket.onopen = () => {
      wasOpen = true;
      handlers.onOpen();
    };
    socket.onmessage = (event: MessageEvent) => {
      if (typeof event.data === "string") handlers.onFrame(event.data);
    };
    socket.onclose = (event: CloseEvent) => {
      this.#socket = undefined;
      handlers.onClose(event.code, event.reason, wasOpen);
    };
    this.#socket = socket;
  }

  close(code = 1000, reason = ""): void {
    const socket = this.#socket;
    if (socket === undefined) return;

    this.#socket = undefined;
    socket.onopen = null;
    socket.onmessage = null;
    socket.onclose = null;
    socket.close(code, reason);
  }
}

/** Creates a {@link WebSocketTransport}, the default transport of a connection. */
export function createWebSocketTransport(url: string): Transport {
  return new WebSocketTransport(url);
}
