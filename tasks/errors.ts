import { PatpushError } from "../protocol/errors.ts";

/** Codes of {@link TaskError}: a task that cannot be created or queued. */
export const TaskErrorCode = {
  /** The task options failed validation; the message lists each field. */
  INVALID: "PATPUSH_TASK_INVALID",
  /** The task URL cannot be resolved to an absolute http(s) URL. */
  URL_INVALID: "PATPUSH_TASK_URL_INVALID",
  /** The resolved task URL is on an origin missing from allowedOrigins. */
  URL_NOT_ALLOWED: "PATPUSH_TASK_URL_NOT_ALLOWED",
  /** An extra cookie is not in the cookieNames allow-list. */
  COOKIE_NOT_ALLOWED: "PATPUSH_TASK_COOKIE_NOT_ALLOWED",
  /** The portal's authenticator function threw or returned no token. */
  AUTHENTICATOR_FAILED: "PATPUSH_TASK_AUTHENTICATOR_FAILED",
  /** The queue was closed before the task was added. */
  QUEUE_CLOSED: "PATPUSH_TASK_QUEUE_CLOSED",
  /** Sealed task credentials failed to decrypt: wrong encryptionKey or modified job data. */
  DECRYPT_FAILED: "PATPUSH_TASK_DECRYPT_FAILED",
  /** A failed task was not found in the queue. */
  NOT_FOUND: "PATPUSH_TASK_NOT_FOUND",
} as const;

export type TaskErrorCode = (typeof TaskErrorCode)[keyof typeof TaskErrorCode];

/** Error thrown by the producer and the queue when a task cannot be created or added. */
export class TaskError extends PatpushError {
  declare readonly code: TaskErrorCode;

  constructor(code: TaskErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.name = "TaskError";
  }
}

/** Codes of {@link DispatchError}: why one dispatch of a task did not succeed. */
export const DispatchErrorCode = {
  /** No response within requestTimeoutMs (connect, headers or a body chunk). */
  TIMEOUT: "PATPUSH_DISPATCH_TIMEOUT",
  /** The connection failed or broke: refused, reset, DNS failure. */
  NETWORK: "PATPUSH_DISPATCH_NETWORK",
  /** undici rejected the request before sending it, e.g. for an invalid header or URL. */
  REQUEST_INVALID: "PATPUSH_DISPATCH_REQUEST_INVALID",
  /** The portal responded with 5xx or 429, so the task is retried. */
  SERVER_ERROR: "PATPUSH_DISPATCH_SERVER_ERROR",
  /** The portal redirected to a login page, responded with 401/403, or sent the marker. */
  UNAUTHORISED: "PATPUSH_DISPATCH_UNAUTHORISED",
  /** The portal redirected somewhere other than a login page. */
  REDIRECTED: "PATPUSH_DISPATCH_REDIRECTED",
  /** The portal responded with a 4xx other than 401, 403 and 429. */
  REJECTED: "PATPUSH_DISPATCH_REJECTED",
  /** Every attempt the task allows failed with a retryable error. */
  ATTEMPTS_EXHAUSTED: "PATPUSH_DISPATCH_ATTEMPTS_EXHAUSTED",
} as const;

export type DispatchErrorCode = (typeof DispatchErrorCode)[keyof typeof DispatchErrorCode];

/** Reason one dispatch of a task did not succeed, carried in a DispatchOutcome. */
export class DispatchError extends PatpushError {
  declare readonly code: DispatchErrorCode;
  /** HTTP status of the response, when there was one. */
  readonly status: number | undefined;

  constructor(
    code: DispatchErrorCode,
    message: string,
    options?: { cause?: unknown; status?: number },
  ) {
    super(code, message, options);
    this.name = "DispatchError";
    this.status = options?.status;
  }
}
