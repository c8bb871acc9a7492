import { PatpushError } from "../protocol/errors.ts";

/** Stable codes of the errors the push server throws. */
export const ServerErrorCode = {
  /** The uWS native binary for this platform and Node ABI could not be loaded. */
  UWS_UNAVAILABLE: "PATPUSH_UWS_UNAVAILABLE",
  /** The server could not bind its host and port. */
  LISTEN_FAILED: "PATPUSH_LISTEN_FAILED",
  /** A message was published to a bus that is already closed. */
  BUS_CLOSED: "PATPUSH_BUS_CLOSED",
  /** A published message failed the done-message schema. */
  MESSAGE_INVALID: "PATPUSH_MESSAGE_INVALID",
  /** The request's Origin header is missing or not in allowedOrigins (403). */
  ORIGIN_REJECTED: "PATPUSH_ORIGIN_REJECTED",
  /** The request carries none of the allowed cookies (401). */
  AUTH_MISSING: "PATPUSH_AUTH_MISSING",
  /** The portal's auth URL rejected the session with 401 or 403. */
  AUTH_REJECTED: "PATPUSH_AUTH_REJECTED",
  /** The `last` query parameter of a socket upgrade is not a message id (400). */
  LAST_ID_INVALID: "PATPUSH_LAST_ID_INVALID",
  /** A socket upgrade arrived while the push server was shutting down (503). */
  SERVER_CLOSING: "PATPUSH_SERVER_CLOSING",
  NOT_READY: "PATPUSH_NOT_READY",
  COOKIE_TOO_LARGE: "PATPUSH_COOKIE_TOO_LARGE",
  /** The portal's auth URL failed, timed out or returned an unexpected response (503). */
  AUTH_UNAVAILABLE: "PATPUSH_AUTH_UNAVAILABLE",
  /** The user or the remote address already has the maximum number of sockets (429). */
  TOO_MANY_SOCKETS: "PATPUSH_TOO_MANY_SOCKETS",
  /** The remote address started more upgrades or auth requests than allowed per second (429). */
  RATE_LIMITED: "PATPUSH_RATE_LIMITED",
} as const;

/** HTTP status a rejected socket or auth request receives. */
export type RejectStatus = 400 | 401 | 403 | 429 | 431 | 503;

/**
 * Thrown when a socket or an auth request is not allowed through. `status`
 * is the HTTP status the client receives, and `reason` is a short phrase
 * that the client may see. The message may name the auth URL, so it goes to
 * the server log only. No field contains a cookie value.
 */
export class AuthError extends PatpushError {
  readonly status: RejectStatus;
  readonly reason: string;
  /** Seconds after which a retry may pass, sent as Retry-After with a 429. */
  readonly retryAfterS: number | undefined;

  constructor(
    code: string,
    status: RejectStatus,
    reason: string,
    message: string,
    options?: { cause?: unknown; retryAfterS?: number },
  ) {
    super(code, message, options);
    this.name = "AuthError";
    this.status = status;
    this.reason = reason;
    this.retryAfterS = options?.retryAfterS;
  }
}

/** Thrown by `Bus.publish` when a message fails the done-message schema. */
export class MessageError extends PatpushError {
  readonly problems: string[];

  constructor(problems: string[]) {
    super(ServerErrorCode.MESSAGE_INVALID, `invalid done message:\n  ${problems.join("\n  ")}`);
    this.name = "MessageError";
    this.problems = problems;
  }
}

/** Thrown when the push server cannot start or a closed part is used. */
export class PushServerError extends PatpushError {
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.name = "PushServerError";
  }
}
