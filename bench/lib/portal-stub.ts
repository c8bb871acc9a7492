/**
 * A minimal portal for benchmarks: the auth URL that patpush and every peer
 * server request before they accept a socket, plus call counters.
 *
 * - `GET /auth` with `Cookie: __ac=u<N>-s<M>` returns 200
 *   `{"user":"u<N>","channels":["bench"]}`; any other request returns 401.
 * - `GET /stats` returns {@link PortalStubStats} as JSON.
 * - `POST /stats/reset` zeroes the counters and returns 204.
 *
 * It logs nothing per request. Run it in-process with {@link startPortalStub},
 * or as its own process: `node --import tsx bench/lib/portal-stub.ts [port]`
 * prints one JSON line `{"ready":true,"port":...,"url":...,"authUrl":...,"origin":...}`
 * when it listens, and closes on SIGTERM or SIGINT.
 */
import { once } from "node:events";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { pathToFileURL } from "node:url";

/** Name of the session cookie that the stub reads. */
export const SESSION_COOKIE = "__ac";

/** Channel that every accepted session is granted. */
export const BENCH_CHANNEL = "bench";

/** Session token format: user N, session M. */
const TOKEN_PATTERN = /^u(\d{1,9})-s(\d{1,9})$/;

/** Counters of the auth requests since start or the last reset. */
export interface PortalStubStats {
  /** Every `GET /auth` request, accepted or rejected. */
  calls: number;
  /** Requests that got 200. */
  accepted: number;
  /** Requests that got 401. */
  rejected: number;
  /** Number of distinct `__ac` values seen, including absent (counted as ""). */
  distinctCookies: number;
  /** Largest number of calls made with one `__ac` value. */
  maxCallsPerCookie: number;
}

/** Options of {@link startPortalStub}. */
export interface PortalStubOptions {
  /** Port to listen on; 0 picks a free one. @defaultValue 0 */
  port?: number;
  /** Interface to listen on. @defaultValue "127.0.0.1" */
  host?: string;
}

/** A running portal stub. */
export interface PortalStub {
  /** `http://<host>:<port>`, without a trailing slash. */
  readonly url: string;
  /** `<url>/auth`, the value for PATPUSH_AUTH_URL and BENCH_AUTH_URL. */
  readonly authUrl: string;
  /** The portal's origin, the value for PATPUSH_PUSH_ORIGINS and the clients' Origin header. */
  readonly origin: string;
  readonly port: number;
  /** Returns a copy of the counters. */
  stats(): PortalStubStats;
  /** Zeroes the counters. */
  reset(): void;
  /** Stops listening and ends open keep-alive connections. */
  close(): Promise<void>;
}

/** Returns the cookie's value from a raw `Cookie` header, or "" when it is absent. */
export function sessionToken(cookieHeader: string | undefined): string {
  if (!cookieHeader) return "";
  for (const part of cookieHeader.split(";")) {
    const eq = part.indexOf("=");
    if (eq < 0) continue;
    if (part.slice(0, eq).trim() === SESSION_COOKIE) return part.slice(eq + 1).trim();
  }
  return "";
}

/** Call counter per distinct cookie value, and the totals. */
class AuthCounter {
  #calls = 0;
  #accepted = 0;
  #perCookie = new Map<string, number>();

  count(token: string, accepted: boolean): void {
    this.#calls += 1;
    if (accepted) this.#accepted += 1;
    this.#perCookie.set(token, (this.#perCookie.get(token) ?? 0) + 1);
  }

  stats(): PortalStubStats {
    let maxCallsPerCookie = 0;
    for (const calls of this.#perCookie.values()) {
      if (calls > maxCallsPerCookie) maxCallsPerCookie = calls;
    }
    return {
      calls: this.#calls,
      accepted: this.#accepted,
      rejected: this.#calls - this.#accepted,
      distinctCookies: this.#perCookie.size,
      maxCallsPerCookie,
    };
  }

  reset(): void {
    this.#calls = 0;
    this.#accepted = 0;
    this.#perCookie.clear();
  }
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    "content-type": "application/json",
    "content-length": Buffer.byteLength(text),
  });
  res.end(text);
}

function handleAuth(req: IncomingMessage, res: ServerResponse, counter: AuthCounter): void {
  const token = sessionToken(req.headers.cookie);
  const match = TOKEN_PATTERN.exec(token);
  counter.count(token, match !== null);
  if (match === null) {
    sendJson(res, 401, { error: "invalid session" });
    return;
  }
  sendJson(res, 200, { user: `u${match[1]}`, channels: [BENCH_CHANNEL] });
}

/** Starts the stub and resolves once it listens. */
export async function startPortalStub(options: PortalStubOptions = {}): Promise<PortalStub> {
  const host = options.host ?? "127.0.0.1";
  const counter = new AuthCounter();

  const server = createServer((req, res) => {
    const path = req.url?.split("?", 1)[0];
    if (req.method === "GET" && path === "/auth") return handleAuth(req, res, counter);
    if (req.method === "GET" && path === "/stats") return sendJson(res, 200, counter.stats());
    if (req.method === "POST" && path === "/stats/reset") {
      counter.reset();
      res.writeHead(204).end();
      return;
    }
    sendJson(res, 404, { error: "not found" });
  });
  // Thousands of sockets may be authenticated at once over a few keep-alive connections.
  server.keepAliveTimeout = 60_000;
  server.maxRequestsPerSocket = 0;

  server.listen(options.port ?? 0, host);
  await once(server, "listening");
  const { port } = server.address() as AddressInfo;
  const url = `http://${host}:${port}`;

  return {
    url,
    authUrl: `${url}/auth`,
    origin: url,
    port,
    stats: () => counter.stats(),
    reset: () => counter.reset(),
    close: async () => {
      const closed = once(server, "close");
      server.close();
      server.closeAllConnections();
      await closed;
    },
  };
}

async function main(): Promise<void> {
  const rawPort = process.argv[2] ?? process.env.BENCH_PORT ?? "0";
  const port = Number(rawPort);
  if (!Number.isInteger(port) || port < 0 || port > 65_535) {
    throw new RangeError(`port must be an integer from 0 to 65535 (got ${rawPort})`);
  }
  const stub = await startPortalStub({ port });
  const { url, authUrl, origin } = stub;
  const readyLine = { ready: true, port: stub.port, url, authUrl, origin };
  process.stdout.write(`${JSON.stringify(readyLine)}\n`);

  const signal = await new Promise<NodeJS.Signals>((resolve) => {
    process.once("SIGTERM", () => resolve("SIGTERM"));
    process.once("SIGINT", () => resolve("SIGINT"));
  });
  await stub.close();
  process.stderr.write(`portal stub closed on ${signal}\n`);
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) await main();
