/**
 * A minimal portal for the browser benchmark. It serves one page that loads
 * the pat-push bundle and opens a socket to the push server, the fragments
 * that the published snippets name, and the auth URL that the push server
 * checks each socket's session against.
 */
import { readFile } from "node:fs/promises";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

/** Session cookie value of the benchmark's only user; the push server forwards it to /auth. */
export const BENCH_SESSION = "u1-s1";
/** User id that /auth returns for {@link BENCH_SESSION}; messages are addressed to it. */
export const BENCH_USER = "u1";
/** Id of the element that every fragment is appended to. */
export const LOG_ELEMENT_ID = "bench-log";

/** Options of {@link startPageServer}. */
export interface PageServerOptions {
  /** Path of the built pat-push bundle (dist/patpush.js). */
  bundlePath: string;
  /** WebSocket URL of the push server, e.g. `ws://127.0.0.1:4242/push`. */
  pushUrl: string;
}

/** A running page server; `close()` stops it and drops its keep-alive connections. */
export interface PageServer {
  /** Origin of the page, e.g. `http://127.0.0.1:4243`, with the actual port. */
  origin: string;
  /** URL of the auth endpoint, for the push server's `PATPUSH_AUTH_URL`. */
  authUrl: string;
  /** Number of fragment requests served so far. */
  fragmentsServed(): number;
  close(): Promise<void>;
}

/** Returns the id of the element that the fragment of message `sequence` contains. */
export function fragmentElementId(sequence: number): string {
  return `bench-item-${sequence}`;
}

/**
 * Returns the pat-inject snippet of message `sequence`: it fetches the
 * fragment and appends its element to the log element, so every swapped
 * fragment stays in the DOM.
 */
export function snippetFor(origin: string, sequence: number): string {
  const id = fragmentElementId(sequence);
  return (
    `<a href="${origin}/fragment/${sequence}#${id}" ` +
    `data-pat-inject="source: #${id}::element; target: #${LOG_ELEMENT_ID}::after"></a>`
  );
}

/** Returns the session token in the request's `__ac` cookie, if any. */
function sessionOf(req: IncomingMessage): string | undefined {
  const header = req.headers.cookie ?? "";
  for (const part of header.split(";")) {
    const [name, ...value] = part.trim().split("=");
    if (name === "__ac") return value.join("=");
  }
  return undefined;
}

function renderPage(pushUrl: string): string {
  return `<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>patpush browser benchmark</title></head>
<body>
<div class="pat-push" data-pat-push="socket-url: ${pushUrl}"></div>
<div id="${LOG_ELEMENT_ID}"></div>
<script src="/patpush.js"></script>
</body>
</html>
`;
}

function renderFragment(sequence: number): string {
  const id = fragmentElementId(sequence);
  return `<!doctype html><html><body><div id="${id}" class="bench-item" data-sequence="${sequence}">message ${sequence}</div></body></html>`;
}

function send(res: ServerResponse, status: number, type: string, body: string | Buffer): void {
  res.writeHead(status, { "Content-Type": type, "Cache-Control": "no-store" }).end(body);
}

/** Starts the page server on a free port of 127.0.0.1. */
export async function startPageServer(options: PageServerOptions): Promise<PageServer> {
  const bundle = await readFile(options.bundlePath);
  const page = renderPage(options.pushUrl);
  let fragments = 0;

  const server: Server = createServer((req, res) => {
    const path = new URL(req.url ?? "/", "http://localhost").pathname;
    const fragment = /^\/fragment\/(\d{1,9})$/.exec(path);
    if (fragment !== null) {
      fragments += 1;
      send(res, 200, "text/html; charset=utf-8", renderFragment(Number(fragment[1])));
    } else if (path === "/") {
      send(res, 200, "text/html; charset=utf-8", page);
    } else if (path === "/patpush.js") {
      send(res, 200, "text/javascript; charset=utf-8", bundle);
    } else if (path === "/auth") {
      const valid = sessionOf(req) === BENCH_SESSION;
      const body = valid ? { user: BENCH_USER, channels: ["bench"] } : { error: "unauthorized" };
      send(res, valid ? 200 : 401, "application/json", JSON.stringify(body));
    } else {
      send(res, 404, "text/plain; charset=utf-8", "not found");
    }
  });

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  return {
    origin,
    authUrl: `${origin}/auth`,
    fragmentsServed: () => fragments,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
