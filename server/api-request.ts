import { createHash, timingSafeEqual } from "node:crypto";
import type { HttpRequest, HttpResponse } from "@trufflesuite/uws-js-unofficial";
import { Counter, type Registry } from "prom-client";
import type { Logger } from "../common/logger.ts";
import { writeJson, type Header } from "./http.ts";
import { LogThrottle, REJECTION_LOG_INTERVAL_MS } from "./log-throttle.ts";


/** Codes in the `code` field of every producer API error body. */
export const ApiErrorCode = {
  /** 401: the Authorization header is missing or does not carry the API key as a Bearer token. */
  UNAUTHORIZED: "PATPUSH_API_UNAUTHORIZED",
  /** 405: a method other than POST. */
  METHOD_NOT_ALLOWED: "PATPUSH_API_METHOD_NOT_ALLOWED",
  /** 413: the body is larger than maxApiBodyBytes. */
  BODY_TOO_LARGE: "PATPUSH_API_BODY_TOO_LARGE",
  /** 415: the Content-Type is not application/json. */
  UNSUPPORTED_MEDIA_TYPE: "PATPUSH_API_UNSUPPORTED_MEDIA_TYPE",
  /** 400: the body is not UTF-8 JSON or fails the route's schema; `problems` lists why. */
  INVALID_REQUEST: "PATPUSH_API_INVALID_REQUEST",
  /** 503: `POST /api/tasks` on a server without a task queue. */
  NO_QUEUE: "PATPUSH_API_NO_QUEUE",
  /** 503: the task queue was closed, e.g. during shutdown. */
  QUEUE_CLOSED: "PATPUSH_API_QUEUE_CLOSED",
  /** 500: an unexpected failure, such as a Redis error; the body gives no detail. */
  INTERNAL: "PATPUSH_API_INTERNAL",
} as const;

export type ApiErrorCode = (typeof ApiErrorCode)[keyof typeof ApiErrorCode];

/** An error body: a sentence for people, a stable code for programs, and problem lines. */
export interface ApiErrorBody {
  error: string;
  code: ApiErrorCode;
  problems?: string[];
}

/** Builds an error body. */
export function apiError(code: ApiErrorCode, error: string): ApiErrorBody {
  return { error, code };
}

/** The request headers an API route reads, copied while the uWS HttpRequest is valid. */
export interface ApiRequestHeaders {
  authorization: string;
  contentType: string;
  contentLength: string;
  /** Client address, for log lines. */
  remote: string;
}

/** Copies the headers an API route reads, because uWS invalidates `req` on return. */
export function readApiHeaders(res: HttpResponse, req: HttpRequest): ApiRequestHeaders {
  return {
    authorization: req.getHeader("authorization"),
    contentType: req.getHeader("content-type"),
    contentLength: req.getHeader("content-length"),
    remote: Buffer.from(res.getRemoteAddressAsText()).toString("utf8"),
  };
}

/**
 * Checks a `Bearer <key>` Authorization header against the API key. Both
 * sides are hashed with SHA-256 first, so timingSafeEqual compares equal
 * lengths and the time taken reveals neither the key nor its length.
 */
export class BearerKeyCheck {
  readonly #expected: Buffer;

  constructor(apiKey: string) {
    this.#expected = sha256(apiKey);
  }

  matches(authorization: string): boolean {
    // RFC 9110 makes the scheme name case-insensitive.
    const match = /^bearer +(\S+) *$/i.exec(authorization);
    if (!match) return false;
    return timingSafeEqual(sha256(match[1]!), this.#expected);
  }
}

function sha256(value: string): Buffer {
  return createHash("sha256").update(value, "utf8").digest();
}

/** Returns true when a Content-Type header names application/json, with any parameters. */
export function isJsonContentType(contentType: string): boolean {
  const mediaType = contentType.split(";", 1)[0]!.trim().toLowerCase();
  return mediaType === "application/json";
}

/** Returns true when a Content-Length header announces more than `maxBytes`. */
export function announcesTooMuch(contentLength: string, maxBytes: number): boolean {
  return /^\d+$/.test(contentLength) && Number(contentLength) > maxBytes;
}

/**
 * One API request's response side: it remembers whether the client went
 * away, and writes at most one response.
 */
export class ApiResponder {
  readonly #res: HttpResponse;
  #aborted = false;
  #done = false;

  constructor(res: HttpResponse) {
    this.#res = res;
    // uWS requires an abort handler on every response not written before the handler returns.
    res.onAborted(() => {
      this.#aborted = true;
    });
  }

  /** True once a response was written or the client closed the connection. */
  get finished(): boolean {
    return this.#done || this.#aborted;
  }

  send(status: number, body: unknown, headers: readonly Header[] = []): void {
    if (this.finished) return;
    this.#done = true;
    this.#res.cork(() => writeJson(this.#res, status, body, headers));
  }

  /**
   * Collects the request body. Resolves with the bytes, or with undefined
   * as soon as the body grows past `maxBytes`, for both a Content-Length and
   * a chunked body. Never settles when the client aborts first.
   */
  readBody(maxBytes: number): Promise<Buffer | undefined> {
    return new Promise((resolve) => {
      const chunks: Buffer[] = [];
      let size = 0;
      let settled = false;

      this.#res.onData((chunk, isLast) => {
        if (settled) return;
        size += chunk.byteLength;
        if (size > maxBytes) {
          settled = true;
          resolve(undefined);
          return;
        }
        // uWS reuses the chunk's memory after this callback returns, so copy it.
        chunks.push(Buffer.from(new Uint8Array(chunk)));
        if (isLast) {
          settled = true;
          resolve(Buffer.concat(chunks, size));
        }
      });
    });
  }
}

/** Parses a UTF-8 JSON body. Returns a problem line instead of throwing. */
export function parseJsonBody(body: Buffer): { value: unknown } | { problem: string } {
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(body);
  } catch {
    return { problem: "(body): must be UTF-8 text" };
  }
  try {
    return { value: JSON.parse(text) as unknown };
  } catch {
    return { problem: text.trim() === "" ? "(body): is empty" : "(body): must be valid JSON" };
  }
}

/** The route and client of one API request, with a logger that carries both. */
export interface ApiRequestContext {
  route: string;
  remote: string;
  log: Logger;
}

/**
 * Logs and counts rejected API requests. It writes at most one line per
 * route, reason and client address every 10 seconds, carrying the number of
 * lines skipped before it, so a client that repeats a bad request cannot
 * flood the log.
 */
export class ApiRejectionLog {
  readonly #throttle = new LogThrottle(REJECTION_LOG_INTERVAL_MS);
  #counter: Counter<"route" | "reason"> | undefined;

  /** Counts every later rejection in `registry` as `patpush_api_requests_rejected_total`. */
  register(registry: Registry): void {
    this.#counter = new Counter({
      name: "patpush_api_requests_rejected_total",
      help: "Producer API requests rejected, by route and reason.",
      labelNames: ["route", "reason"],
      registers: [registry],
    });
  }

  /** Logs a rejection at warn level and counts it. `reason` is a fixed phrase, never input. */
  rejected(
    request: ApiRequestContext,
    status: number,
    reason: string,
    fields: Record<string, unknown> = {},
  ): void {
    this.#counter?.inc({ route: request.route, reason });
    const skipped = this.#throttle.admit(`${request.route}|${reason}|${request.remote}`);
    if (skipped === undefined) return;
    request.log.warn({ ...fields, status, reason, skipped }, "api request rejected");
  }

  /**
   * Logs an unexpected failure at error level and counts it. The error goes
   * into the log line for the operator, never into the response body.
   */
  failed(request: ApiRequestContext, error: unknown): void {
    this.#counter?.inc({ route: request.route, reason: "internal error" });
    const skipped = this.#throttle.admit(`${request.route}|internal error|${request.remote}`);
    if (skipped === undefined) return;
    request.log.error({ err: error, skipped }, "api request failed");
  }
}
