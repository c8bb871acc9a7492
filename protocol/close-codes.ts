/**
 * WebSocket close codes that the push server sends and the browser client
 * reads to decide whether to reconnect. Application codes live in 4000-4999.
 */
export const CloseCode = {
  /** The server is shutting down or restarting: reconnect, to any server. */
  RESTART: 4000,
  /**
   * The session is no longer valid (a logout message, or the portal rejected
   * it at revalidation): do not reconnect.
   */
  AUTH_REVOKED: 4001,
  /** The client sent a frame the server does not accept: do not reconnect. */
  PROTOCOL_ERROR: 4002,
  /** The socket could not keep up and its send buffer passed the cap: reconnect. */
  SLOW_CONSUMER: 4003,
} as const;

export type CloseCodeValue = (typeof CloseCode)[keyof typeof CloseCode];

/** Returns true when a client should reconnect after the socket closed with `code`. */
export function shouldReconnect(code: number): boolean {
  return code !== CloseCode.AUTH_REVOKED && code !== CloseCode.PROTOCOL_ERROR;
}
