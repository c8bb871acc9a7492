/**
 * The interface every socket transport implements, so the connection can
 * run over the native WebSocket today and over another transport (a SockJS
 * fallback) later without changing its reconnect logic.
 */

/** Callbacks a transport calls, each on its own event loop turn. */
export interface TransportHandlers {
  /** The socket is open and frames may follow. */
  onOpen(): void;
  /** One text frame arrived. Binary frames are not part of the protocol and are not reported. */
  onFrame(text: string): void;
  /**
   * The socket closed or failed to open. `wasOpen` is false when it never
   * opened, which is how a browser reports a rejected upgrade: the HTTP
   * status of the rejection is not readable from script.
   */
  onClose(code: number, reason: string, wasOpen: boolean): void;
}

export interface Transport {
  /** Short transport name for logs, such as "websocket". */
  readonly name: string;
  /** Opens the socket. The connection creates a new transport for each attempt. */
  connect(handlers: TransportHandlers): void;
  /** Closes the socket. No handler is called after this. */
  close(code?: number, reason?: string): void;
}

/** Creates a transport for one connection attempt to `url`. */
export type TransportFactory = (url: string) => Transport;
