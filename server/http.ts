import type { HttpResponse } from "@trufflesuite/uws-js-unofficial";

/** uWS writes the status line as given, so each status carries its reason phrase. */
const STATUS_LINES: Record<number, string> = {
  200: "200 OK",
  202: "202 Accepted",
  204: "204 No Content",
  400: "400 Bad Request",
  401: "401 Unauthorized",
  403: "403 Forbidden",
  404: "404 Not Found",
  405: "405 Method Not Allowed",
  413: "413 Content Too Large",
  415: "415 Unsupported Media Type",
  426: "426 Upgrade Required",
  429: "429 Too Many Requests",
  431: "431 Request Header Fields Too Large",
  500: "500 Internal Server Error",
  503: "503 Service Unavailable",
};

/** A response header as a name and value pair. */
export type Header = readonly [name: string, value: string];

/** Writes a complete JSON response. Outside the route handler itself, call it in `res.cork`. */
export function writeJson(
  res: HttpResponse,
  status: number,
  body: unknown,
  headers: readonly Header[] = [],
): void {
  res.writeStatus(STATUS_LINES[status] ?? String(status));
  res.writeHeader("Content-Type", "application/json; charset=utf-8");
  res.writeHeader("Cache-Control", "no-store");
  for (const [name, value] of headers) res.writeHeader(name, value);
  res.end(JSON.stringify(body));
}

/** Writes a complete response without a body. */
export function writeEmpty(res: HttpResponse, status: number, headers: readonly Header[]): void {
  res.writeStatus(STATUS_LINES[status] ?? String(status));
  for (const [name, value] of headers) res.writeHeader(name, value);
  res.endWithoutBody(0);
}

/**
 * CORS headers that let a page from `origin` read a credentialed response.
 * Only call it for an origin that passed the allow-list.
 */
export function corsHeaders(origin: string): Header[] {
  return [
    ["Access-Control-Allow-Origin", origin],
    ["Access-Control-Allow-Credentials", "true"],
    ["Vary", "Origin"],
  ];
}

/** Headers of a successful CORS preflight for a GET with credentials. */
export function preflightHeaders(origin: string): Header[] {
  return [
    ...corsHeaders(origin),
    ["Access-Control-Allow-Methods", "GET, OPTIONS"],
    ["Access-Control-Max-Age", "600"],
  ];
}

/** Shortens an untrusted header value before it goes into a log line. */
export function clipForLog(value: string, maxChars = 200): string {
  return value.length > maxChars ? `${value.slice(0, maxChars)}...` : value;
}
