import type { IncomingMessage, ServerResponse } from "node:http";
import type { SafeHtml } from "./html.ts";

/** Largest urlencoded form body the portal reads, in bytes. */
export const MAX_FORM_BYTES = 64 * 1024;

/** An error a handler throws to end the request with `status` and a message for the user. */
export class HttpError extends Error {
  readonly status: number;
  readonly headers: Record<string, string>;

  constructor(status: number, message: string, headers: Record<string, string> = {}) {
    super(message);
    this.name = "HttpError";
    this.status = status;
    this.headers = headers;
  }
}

/** Sends an HTML page; pages are per user, so they are never cached. */
export function sendHtml(
  res: ServerResponse,
  status: number,
  body: SafeHtml,
  headers: Record<string, string> = {},
): void {
  res.writeHead(status, {
    "Content-Type": "text/html; charset=utf-8",
    "Cache-Control": "no-store",
    ...headers,
  });
  res.end(body.value);
}

/** Sends a JSON body that is never cached. */
export function sendJson(res: ServerResponse, status: number, value: unknown): void {
  res.writeHead(status, { "Content-Type": "application/json", "Cache-Control": "no-store" });
  res.end(JSON.stringify(value));
}

/** Sends a plain-text body. */
export function sendText(
  res: ServerResponse,
  status: number,
  text: string,
  headers: Record<string, string> = {},
): void {
  res.writeHead(status, { "Content-Type": "text/plain; charset=utf-8", ...headers });
  res.end(text);
}

/** Redirects with `status` (302 for a page that needs a login, 303 after a POST). */
export function redirect(
  res: ServerResponse,
  status: 302 | 303,
  location: string,
  headers: Record<string, string> = {},
): void {
  res.writeHead(status, { Location: location, "Cache-Control": "no-store", ...headers });
  res.end();
}

/** Returns the media type of the request body in lower case, without parameters, or "". */
export function mediaTypeOf(req: IncomingMessage): string {
  return (req.headers["content-type"] ?? "").split(";")[0]?.trim().toLowerCase() ?? "";
}

/** Returns true when the request body is an `application/x-www-form-urlencoded` form. */
export function isFormBody(req: IncomingMessage): boolean {
  return mediaTypeOf(req) === "application/x-www-form-urlencoded";
}

/**
 * Reads an `application/x-www-form-urlencoded` body of at most
 * MAX_FORM_BYTES. Throws HttpError 415 for another content type and 413 for
 * a larger body.
 */
export async function readForm(req: IncomingMessage): Promise<URLSearchParams> {
  const type = mediaTypeOf(req);
  if (type !== "application/x-www-form-urlencoded") {
    req.resume();
    throw new HttpError(
      415,
      `expected a form body (application/x-www-form-urlencoded), got ${type || "none"}`,
    );
  }

  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of req) {
    total += (chunk as Buffer).length;
    if (total > MAX_FORM_BYTES) {
      throw new HttpError(413, `form body is larger than ${MAX_FORM_BYTES} bytes`, {
        Connection: "close",
      });
    }
    chunks.push(chunk as Buffer);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString("utf8"));
}

/** Page a login returns to when `came_from` is missing or rejected. */
export const DEFAULT_RETURN_PATH = "/workspace";

/** Longest `came_from` accepted, in characters; a longer one gives DEFAULT_RETURN_PATH. */
export const MAX_RETURN_PATH_CHARS = 2048;

/**
 * A path of printable ASCII (0x21-0x7E) without a backslash that starts with
 * exactly one slash. The WHATWG URL parser that browsers use drops tabs and
 * newlines and reads `\` as `/` in http URLs, so `/\t/host` or `/\\host`
 * would lead to another site.
 */
const RETURN_PATH_PATTERN = /^\/(?!\/)[\x21-\x5b\x5d-\x7e]*$/;

/**
 * Returns the path and query to go back to after login when `value` is a path
 * on `origin`, or DEFAULT_RETURN_PATH for anything else. The value is checked
 * character by character, then resolved against `origin` to confirm that the
 * origin stays the same and that the resolved path does not start with `//`
 * (`/.//host` resolves to the path `//host`). The fragment is dropped.
 */
export function safeReturnPath(value: string | null | undefined, origin: string): string {
  if (!value || value.length > MAX_RETURN_PATH_CHARS || !RETURN_PATH_PATTERN.test(value)) {
    return DEFAULT_RETURN_PATH;
  }

  let resolved: URL;
  try {
    resolved = new URL(value, origin);
  } catch {
    return DEFAULT_RETURN_PATH;
  }
  if (resolved.origin !== new URL(origin).origin || resolved.pathname.startsWith("//")) {
    return DEFAULT_RETURN_PATH;
  }
  return resolved.pathname + resolved.search;
}
