import { createHash, timingSafeEqual } from "node:crypto";
import type { HttpRequest, HttpResponse } from "@trufflesuite/uws-js-unofficial";
import { writeJson, type Header } from "./http.ts";

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
