/**
 * Rejected socket upgrades and auth requests: the response, the metric
 * label of each reason, and a log that writes at most one line per reason
 * and remote address every 10 seconds.
 */
import type { HttpResponse } from "@trufflesuite/uws-js-unofficial";
import type { Logger } from "../common/logger.ts";
import { AuthError, ServerErrorCode } from "./errors.ts";
import { clipForLog, writeJson, type Header } from "./http.ts";
import { LogThrottle, REJECTION_LOG_INTERVAL_MS } from "./log-throttle.ts";
import type { PushMetrics } from "./metrics.ts";


/** The short reasons of a TOO_MANY_SOCKETS rejection, which tell the two limits apart. */
export const PER_USER_REASON = "too many sockets for this user";
export const PER_IP_REASON = "too many sockets from this address";

/** Labels of `patpush_upgrades_rejected_total`, by error code. */
const REJECTION_LABELS: Record<string, string> = {
  [ServerErrorCode.ORIGIN_REJECTED]: "origin",
  [ServerErrorCode.LAST_ID_INVALID]: "last_id",
  [ServerErrorCode.AUTH_MISSING]: "no_cookie",
  [ServerErrorCode.AUTH_REJECTED]: "auth_rejected",
  [ServerErrorCode.AUTH_UNAVAILABLE]: "auth_unavailable",
  [ServerErrorCode.SERVER_CLOSING]: "closing",
  [ServerErrorCode.NOT_READY]: "not_ready",
  [ServerErrorCode.COOKIE_TOO_LARGE]: "cookie_too_large",
  [ServerErrorCode.RATE_LIMITED]: "rate_limited",
};

/** Every `reason` label of `patpush_upgrades_rejected_total`. */
export const REJECTION_REASONS: readonly string[] = [
  ...Object.values(REJECTION_LABELS),
  "sockets_per_user",
  "sockets_per_ip",
  "internal",
];

/** Returns the `reason` label of a rejection. */
export function rejectionLabel(error: AuthError): string {
  if (error.code === ServerErrorCode.TOO_MANY_SOCKETS) {
    return error.reason === PER_USER_REASON ? "sockets_per_user" : "sockets_per_ip";
  }
  return REJECTION_LABELS[error.code] ?? "other";
}

/** Returns the JSON body of a rejected request: the short reason and the error code. */
export function rejectionBody(error: AuthError): { error: string; code: string } {
  return { error: error.reason, code: error.code };
}

/** Writes the response of a rejected request, with Retry-After for a 429. */
export function writeRejection(
  res: HttpResponse,
  error: AuthError,
  headers: readonly Header[] = [],
): void {
  const retryAfter: Header[] =
    error.retryAfterS === undefined ? [] : [["Retry-After", String(error.retryAfterS)]];
  writeJson(res, error.status, rejectionBody(error), [...headers, ...retryAfter]);
}

/** Logs and counts rejections. */
export class RejectionLog {
  readonly #logger: Logger;
  readonly #metrics: PushMetrics;
  readonly #throttle: LogThrottle;

  constructor(logger: Logger, metrics: PushMetrics, now?: () => number) {
    this.#logger = logger;
    this.#metrics = metrics;
    this.#throttle = new LogThrottle(REJECTION_LOG_INTERVAL_MS, now === undefined ? {} : { now });
  }

  /**
   * Logs a rejected request and counts a rejected upgrade. It writes at most
   * one line per reason and address every 10 seconds, with the number of
   * lines skipped before it. Returns the AuthError for the client, a 503
   * when `error` is not an AuthError.
   */
  log(error: unknown, ip: string, origin: string, route: string): AuthError {
    if (!(error instanceof AuthError)) {
      this.#logger.error({ err: error, route }, "auth check failed");
      if (route === "upgrade") this.#metrics.upgradesRejected.inc({ reason: "internal" });
      return new AuthError(
        ServerErrorCode.AUTH_UNAVAILABLE,
        503,
        "auth check failed",
        "auth check failed unexpectedly",
        { cause: error },
      );
    }

    const reason = rejectionLabel(error);
    if (route === "upgrade") this.#metrics.upgradesRejected.inc({ reason });
    const skipped = this.#throttle.admit(`${reason}|${ip}`);
    if (skipped === undefined) return error;

    const fields = {
      reason: error.reason,
      status: error.status,
      code: error.code,
      ip,
      origin: clipForLog(origin),
      route,
      skipped,
      // Only a portal failure needs the detail. Its message names the auth URL, never a cookie.
      ...(error.status === 503 ? { err: error } : {}),
    };
    this.#logger.warn(fields, "auth rejected");
    return error;
  }

  /** Drops the throttle entries that no longer matter. */
  prune(): void {
    this.#throttle.prune();
  }
}
