/**
 * Admission of sockets and auth requests: the Origin check, the `last` id of
 * a resuming socket, the portal session, and the `<path>/auth` route that
 * runs the same checks without an upgrade.
 */
import type { HttpRequest, HttpResponse } from "@trufflesuite/uws-js-unofficial";
import type { Logger } from "../common/logger.ts";
import type { MessageId } from "../protocol/message-id.ts";
import type { AuthIdentity, PortalAuth } from "./auth.ts";
import type { Delivery } from "./delivery.ts";
import { AuthError, ServerErrorCode } from "./errors.ts";
import { clipForLog, corsHeaders, preflightHeaders, writeEmpty, writeJson } from "./http.ts";
import { parseLastId } from "./resume.ts";

/** Options of {@link Admission}. */
export interface AdmissionOptions {
  allowedOrigins: readonly string[];
  auth: PortalAuth;
  delivery: Delivery;
  /** Time an upgrade waits for the bus coverage and its `last` id, in milliseconds. */
  resumeWaitMs: number;
  /** Returns true once the push server is shutting down. */
  isClosing: () => boolean;
  logger: Logger;
}

/** An upgrade that passed every check. */
export interface Admitted {
  identity: AuthIdentity;
  last: MessageId | undefined;
}

/** Checks that decide whether a socket may open, and the auth route. */
export class Admission {
  readonly #allowedOrigins: ReadonlySet<string>;
  readonly #options: AdmissionOptions;

  constructor(options: AdmissionOptions) {
    this.#allowedOrigins = new Set(options.allowedOrigins);
    this.#options = options;
  }

  /**
   * Checks the Origin, the `last` id and the session, in that order. Then
   * waits up to resumeWaitMs until the bus has sent its coverage and reached
   * `last`, so that the welcome id is known and the replay can be complete.
   * Rejects with an AuthError.
   */
  async admitSocket(
    origin: string,
    cookieHeader: string,
    lastText: string | undefined,
  ): Promise<Admitted> {
    this.#checkOrigin(origin);
    const last = parseLastId(lastText);
    const identity = await this.#options.auth.authenticate(cookieHeader);
    await this.#options.delivery.waitUntilReady(last, this.#options.resumeWaitMs);
    if (this.#options.isClosing()) {
      throw new AuthError(
        ServerErrorCode.SERVER_CLOSING,
        503,
        "server shutting down",
        "socket rejected, because the push server is shutting down",
      );
    }
    return { identity, last };
  }

  /** Handles `GET <path>/auth`: the socket checks without `last` and without an upgrade. */
  onAuthRequest(res: HttpResponse, req: HttpRequest): void {
    let aborted = false;
    res.onAborted(() => {
      aborted = true;
    });
    const origin = req.getHeader("origin");
    const cookieHeader = req.getHeader("cookie");
    const cors = this.#allowedOrigins.has(origin) ? corsHeaders(origin) : [];

    this.#authorize(origin, cookieHeader).then(
      (identity) => {
        if (aborted) return;
        const body = { user: identity.user, channels: identity.channels };
        res.cork(() => writeJson(res, 200, body, cors));
      },
      (error: unknown) => {
        if (aborted) return;
        const rejection = this.logRejection(error, origin, "auth");
        res.cork(() => writeJson(res, rejection.status, rejectionBody(rejection), cors));
      },
    );
  }

  onAuthPreflight(res: HttpResponse, req: HttpRequest): void {
    const origin = req.getHeader("origin");
    if (this.#allowedOrigins.has(origin)) {
      writeEmpty(res, 204, preflightHeaders(origin));
      return;
    }
    writeJson(res, 403, { error: "origin not allowed", code: ServerErrorCode.ORIGIN_REJECTED });
  }

  /** Logs a rejected request and returns the AuthError for the client (503 when unexpected). */
  logRejection(error: unknown, origin: string, route: string): AuthError {
    const { logger } = this.#options;
    if (!(error instanceof AuthError)) {
      logger.error({ err: error, route }, "auth check failed");
      return new AuthError(
        ServerErrorCode.AUTH_UNAVAILABLE,
        503,
        "auth check failed",
        "auth check failed unexpectedly",
        { cause: error },
      );
    }

    const fields = {
      reason: error.reason,
      status: error.status,
      code: error.code,
      origin: clipForLog(origin),
      route,
      // Only a portal failure needs the detail. Its message names the auth URL, never a cookie.
      ...(error.status === 503 ? { err: error } : {}),
    };
    logger.warn(fields, "auth rejected");
    return error;
  }

  /** Throws an AuthError (403) when `origin` is missing or not allowed. */
  #checkOrigin(origin: string): void {
    if (this.#allowedOrigins.has(origin)) return;
    const originText = origin === "" ? "missing" : `"${clipForLog(origin)}"`;
    throw new AuthError(
      ServerErrorCode.ORIGIN_REJECTED,
      403,
      origin === "" ? "origin missing" : "origin not allowed",
      `Origin ${originText} is not in allowedOrigins`,
    );
  }

  /** Checks the Origin and then the session cookie. Rejects with an AuthError. */
  async #authorize(origin: string, cookieHeader: string): Promise<AuthIdentity> {
    this.#checkOrigin(origin);
    return this.#options.auth.authenticate(cookieHeader);
  }
}

/** Returns the JSON body of a rejected request: the short reason and the error code. */
export function rejectionBody(error: AuthError): { error: string; code: string } {
  return { error: error.reason, code: error.code };
}
