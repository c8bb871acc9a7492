/**
 * Fixtures for the browser tests of client/ and patterns/push/: the bundle
 * built with esbuild, an HTTP server for pages and fragments, a `ws` server
 * standing in for the push server, and Chromium pages that record events.
 * This module runs in Node only and is not part of the bundle.
 */
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { Duplex } from "node:stream";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";
import type { Browser, Page } from "playwright-core";
import { WebSocketServer, type WebSocket } from "ws";
import type * as patpush from "../patterns/push/index.ts";
import type { Recovery, WelcomeFrame } from "../protocol/frames.ts";
import type { MessageId } from "../protocol/message-id.ts";

declare global {
  interface Window {
    patpush: typeof patpush;
    /** Events collected by the recorder script ({@link RECORDER_SCRIPT}). */
    recordedEvents: RecordedEvent[];
    recordEvents(types: string[]): void;
    /** Connection a test page creates directly. */
    testConnection: patpush.PushConnection;
  }
}

export interface RecordedEvent {
  type: string;
  /** `tag#id` of the element the event was dispatched on, or "document". */
  target: string;
  detail: unknown;
}

const root = fileURLToPath(new URL("..", import.meta.url));

/** Bundles patterns/push/index.ts as scripts/build-browser.mjs does and returns the code. */
export async function buildBundle(): Promise<string> {
  const directory = await mkdtemp(join(tmpdir(), "patpush-bundle-"));
  try {
    const outfile = join(directory, "patpush.js");
    await build({
      absWorkingDir: root,
      entryPoints: ["patterns/push/index.ts"],
      outfile,
      bundle: true,
      format: "iife",
      globalName: "patpush",
      platform: "browser",
      target: ["es2020"],
      logLevel: "warning",
    });
    return await readFile(outfile, "utf8");
  } finally {
    await rm(directory, { recursive: true, force: true });
  }
}

export interface Route {
  status?: number;
  body: string;
  type?: string;
  headers?: Record<string, string>;
}

export interface FixtureServer {
  origin: string;
  /** Responses by path without the query. Tests may add or replace entries at any time. */
  routes: Map<string, Route>;
  /** Every request as `METHOD /path?query`, in arrival order. */
  requests: string[];
  close(): Promise<void>;
}

async function listen(server: Server, host: string): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, host, () => resolve());
  });
  return (server.address() as AddressInfo).port;
}

async function closeServer(server: Server): Promise<void> {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
}

/**
 * Starts an HTTP server on port 0 that serves `routes`, and the bundle at
 * /patpush.js when given; `cors` lets any origin read its responses.
 */
export async function startFixtureServer(
  options: { host?: string; bundle?: string; cors?: boolean } = {},
): Promise<FixtureServer> {
  const host = options.host ?? "127.0.0.1";
  const routes = new Map<string, Route>();
  const requests: string[] = [];
  if (options.bundle !== undefined) {
    routes.set("/patpush.js", { body: options.bundle, type: "text/javascript" });
  }

  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    requests.push(`${req.method} ${req.url}`);
    const path = new URL(req.url ?? "/", "http://fixture").pathname;
    const route = routes.get(path) ?? { status: 404, body: "<p>not found</p>" };
    res.writeHead(route.status ?? 200, {
      "Content-Type": `${route.type ?? "text/html"}; charset=utf-8`,
      "Cache-Control": "no-store",
      ...(options.cors === true ? { "Access-Control-Allow-Origin": "*" } : {}),
      ...route.headers,
    });
    res.end(route.body);
  });
  const port = await listen(server, host);
  return { origin: `http://${host}:${port}`, routes, requests, close: () => closeServer(server) };
}

/**
 * Returns an HTML page that loads the event recorder and then the bundle in
 * its head; `recordTypes` are recorded from before the bundle runs. The
 * empty icon stops Chromium from requesting /favicon.ico at a moment no test
 * controls, which would otherwise show up in a fixture's `requests`.
 */
export function pageHtml(body: string, recordTypes: readonly string[] = []): string {
  return `<!doctype html><html><head><meta charset="utf-8"><title>patpush test</title>
<link rel="icon" href="data:,">
<script>${RECORDER_SCRIPT}
recordEvents(${JSON.stringify(recordTypes)});</script>
<script src="/patpush.js"></script></head>
<body>${body}</body></html>`;
}

/** Page script: `recordEvents(types)` stores every event of those types in `recordedEvents`. */
export const RECORDER_SCRIPT = `
window.recordedEvents = [];
window.recordEvents = function (types) {
  types.forEach(function (type) {
    document.addEventListener(type, function (event) {
      var target = event.target;
      var name = target === document ? "document"
        : target.localName + (target.id ? "#" + target.id : "");
      var detail = event.detail === undefined ? null : JSON.parse(JSON.stringify(event.detail));
      window.recordedEvents.push({ type: type, target: name, detail: detail });
    }, true);
  });
};`;

/**
 * Opens a page that collects its console output in `console`.
 * tsx compiles test files with esbuild's keepNames, which wraps named
 * functions in `__name(...)`. Functions passed to `page.evaluate` run in the
 * page, where that helper does not exist, so the page gets a stand-in.
 */
export async function openTestPage(
  browser: Browser,
): Promise<{ page: Page; console: ConsoleEntry[] }> {
  const page = await browser.newPage();
  const console: ConsoleEntry[] = [];
  page.on("console", (message) => console.push({ type: message.type(), text: message.text() }));
  await page.addInitScript("globalThis.__name = function (value) { return value; };");
  return { page, console };
}

export interface ConsoleEntry {
  /** Console method, such as "warning" or "debug". */
  type: string;
  text: string;
}

export interface PushStandIn {
  /** WebSocket URL, `ws://127.0.0.1:<port>/push`. */
  url: string;
  /** Upgrade requests received, accepted or not. */
  upgrades: number;
  /** Path and query of every upgrade request, in arrival order. */
  upgradeUrls: string[];
  /** Requests to `/push/auth`. */
  authRequests: number;
  /** Accepted sockets, in order. */
  sockets: WebSocket[];
  /** When set, upgrades are rejected with this HTTP status. */
  rejectStatus: number | undefined;
  /** Status that `/push/auth` returns, 200 unless a test changes it. */
  authStatus: number;
  /**
   * Welcome id sent on each accepted socket whose recovery is not "complete".
   * When undefined, no welcome is sent.
   */
  welcomeId: MessageId | undefined;
  /**
   * Recovery that welcomes report. When undefined, the stand-in acts as a
   * push server that keeps every message: "none" without a `last` query
   * parameter, else "complete" with the `last` value as id.
   */
  recovery: Recovery | undefined;
  /** Resolves once `count` sockets have been accepted in total. */
  waitForSockets(count: number): Promise<WebSocket>;
  close(): Promise<void>;
}

/** Starts a `ws` server on port 0 that plays the push server's part of the protocol. */
export async function startPushStandIn(): Promise<PushStandIn> {
  const wss = new WebSocketServer({ noServer: true });
  const waiters: Array<{ count: number; resolve: (socket: WebSocket) => void }> = [];

  const server = createServer((req, res) => {
    const path = new URL(req.url ?? "/", "http://push").pathname;
    if (path !== "/push/auth") {
      res.writeHead(404).end();
      return;
    }
    standIn.authRequests += 1;
    res.writeHead(standIn.authStatus, {
      "Content-Type": "application/json",
      "Access-Control-Allow-Origin": req.headers.origin ?? "null",
      "Access-Control-Allow-Credentials": "true",
      Vary: "Origin",
    });
    res.end(
      JSON.stringify(
        standIn.authStatus === 200 ? { user: "alice", channels: [] } : { error: "rejected" },
      ),
    );
  });

  server.on("upgrade", (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    standIn.upgrades += 1;
    standIn.upgradeUrls.push(req.url ?? "");
    if (standIn.rejectStatus !== undefined) {
      socket.end(
        `HTTP/1.1 ${standIn.rejectStatus} Rejected\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`,
      );
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      standIn.sockets.push(ws);
      const welcome = welcomeFor(new URL(req.url ?? "/", "http://push").searchParams.get("last"));
      if (welcome !== undefined) ws.send(JSON.stringify(welcome));
      for (const waiter of waiters.filter(
        (candidate) => candidate.count <= standIn.sockets.length,
      )) {
        waiters.splice(waiters.indexOf(waiter), 1);
        waiter.resolve(standIn.sockets[waiter.count - 1]!);
      }
    });
  });

  function welcomeFor(last: string | null): WelcomeFrame | undefined {
    const recovery = standIn.recovery ?? (last === null ? "none" : "complete");
    const id = recovery === "complete" && last !== null ? last : standIn.welcomeId;
    if (id === undefined) return undefined;
    const conn = `c${standIn.sockets.length}`;
    return { type: "welcome", id, recovery, user: "alice", channels: [], conn };
  }

  const port = await listen(server, "127.0.0.1");
  const standIn: PushStandIn = {
    url: `ws://127.0.0.1:${port}/push`,
    upgrades: 0,
    upgradeUrls: [],
    authRequests: 0,
    sockets: [],
    rejectStatus: undefined,
    authStatus: 200,
    welcomeId: "0-0",
    recovery: undefined,
    waitForSockets(count) {
      const socket = standIn.sockets[count - 1];
      if (socket !== undefined) return Promise.resolve(socket);
      return new Promise((resolve) => waiters.push({ count, resolve }));
    },
    async close() {
      for (const socket of wss.clients) socket.terminate();
      wss.close();
      await closeServer(server);
    },
  };
  return standIn;
}

/** Polls `condition` until it holds, and rejects after `timeoutMs`. */
export async function waitUntil(
  condition: () => boolean,
  message: string,
  timeoutMs = 5000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${message}`);
    await pause(20);
  }
}

/** Waits `ms` milliseconds, to give a client the chance to do something it must not do. */
export function pause(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
