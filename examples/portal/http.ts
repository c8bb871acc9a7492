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

/**
 * Reads an `application/x-www-form-urlencoded` body of at most
 * MAX_FORM_BYTES. Throws HttpError 415 for another content type and 413 for
 * a larger body.
 */
export async function readForm(req: IncomingMessage): Promise<URLSearchParams> {
  const type = (req.headers["content-type"] ?? "").split(";")[0]?.trim().toLowerCase();
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

/** Returns a local path to go back to after login, or `/workspace` for anything else. */
export function safeReturnPath(value: string | null | undefined): string {
  if (!value || !value.startsWith("/") || value.startsWith("//") || value.includes("\\")) {
    return "/workspace";
  }
  return value;
}
