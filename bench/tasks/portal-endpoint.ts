/**
 * Portal endpoint for the task benchmark: a node:http server that responds
 * to every task POST with 200 and records, per task, the time from enqueue to
 * arrival. The form carries `t` (enqueue time, microseconds on
 * CLOCK_MONOTONIC) and `n` (task sequence number). A POST without the
 * task-name header gets 400 and is counted apart.
 *
 * Control routes:
 * - `GET /stats?expected=N` returns {@link EndpointStats}; `missing` counts
 *   the numbers 0..N-1 that never arrived.
 * - `GET /wait?count=N&timeoutMs=T` responds once N tasks arrived, or at the
 *   timeout, with the same stats.
 * - `POST /stats/reset` zeroes every counter.
 *
 * Env: BENCH_PORT (0 picks a free port), BENCH_TASK_HEADER (default
 * `x-task-name`). Prints `{"ready":true,"port":...}` when listening.
 */
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { nowUs } from "../lib/clock.ts";
import { LatencyHistogram, type LatencySummary } from "../lib/histogram.ts";

/** Counters returned by the control routes. */
export interface EndpointStats {
  /** Task POSTs that got 200. */
  received: number;
  /** Distinct task numbers among them. */
  distinct: number;
  /** POSTs whose task number had arrived before. */
  duplicates: number;
  /** Task numbers in 0..expected-1 that did not arrive; 0 without `expected`. */
  missing: number;
  /** POSTs without the task-name header, which got 400. */
  missingHeader: number;
  /** POSTs without numeric `t` and `n` fields, which got 400. */
  invalidBody: number;
  /** Arrival time of the first and last task since the reset, in microseconds on CLOCK_MONOTONIC. */
  firstArrivalUs: number;
  lastArrivalUs: number;
  /** Enqueue-to-arrival latency of every received task. */
  latency: LatencySummary;
  /** The latency histogram, compressed base64, for merging. */
  histogram: string;
}

const taskHeader = (process.env.BENCH_TASK_HEADER ?? "x-task-name").toLowerCase();
const histogram = new LatencyHistogram();
let arrivals = new Uint8Array(32_768);
let received = 0;
let distinct = 0;
let duplicates = 0;
let missingHeader = 0;
let invalidBody = 0;
let firstArrivalUs = 0;
let lastArrivalUs = 0;
const waiters = new Set<{ count: number; respond: () => void }>();

function resetStats(): void {
  histogram.reset();
  arrivals = new Uint8Array(arrivals.length);
  received = 0;
  distinct = 0;
  duplicates = 0;
  missingHeader = 0;
  invalidBody = 0;
  firstArrivalUs = 0;
  lastArrivalUs = 0;
}

function countMissing(expected: number): number {
  let missing = 0;
  for (let n = 0; n < expected; n++) if (n >= arrivals.length || arrivals[n] === 0) missing++;
  return missing;
}

function stats(expected: number): EndpointStats {
  return {
    received,
    distinct,
    duplicates,
    missing: countMissing(expected),
    missingHeader,
    invalidBody,
    firstArrivalUs,
    lastArrivalUs,
    latency: histogram.summary(),
    histogram: histogram.encode(),
  };
}

/** Marks task `n` as arrived; returns false when it had arrived before. */
function markArrival(n: number): boolean {
  if (n >= arrivals.length) {
    const grown = new Uint8Array(Math.max(n + 1, arrivals.length * 2));
    grown.set(arrivals);
    arrivals = grown;
  }
  if (arrivals[n] !== 0) return false;
  arrivals[n] = 1;
  return true;
}

function recordTask(body: string, arrivalUs: number): boolean {
  const form = new URLSearchParams(body);
  const t = Number(form.get("t"));
  const n = Number(form.get("n"));
  if (!Number.isSafeInteger(t) || !Number.isSafeInteger(n) || n < 0 || t <= 0) return false;

  received++;
  if (markArrival(n)) distinct++;
  else duplicates++;
  histogram.record(arrivalUs - t);
  if (firstArrivalUs === 0) firstArrivalUs = arrivalUs;
  lastArrivalUs = arrivalUs;
  for (const waiter of waiters) if (received >= waiter.count) waiter.respond();
  return true;
}

function sendJson(res: ServerResponse, status: number, value: unknown): void {
  const body = JSON.stringify(value);
  const length = Buffer.byteLength(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": length });
  res.end(body);
}

function waitForCount(res: ServerResponse, count: number, timeoutMs: number): void {
  const waiter = {
    count,
    respond: (): void => {
      waiters.delete(waiter);
      clearTimeout(timer);
      sendJson(res, 200, stats(0));
    },
  };
  const timer = setTimeout(waiter.respond, timeoutMs);
  waiters.add(waiter);
  if (received >= count) waiter.respond();
}

function handleControl(req: IncomingMessage, res: ServerResponse, url: URL): void {
  if (req.method === "POST" && url.pathname === "/stats/reset") {
    resetStats();
    sendJson(res, 200, { reset: true });
  } else if (req.method === "GET" && url.pathname === "/stats") {
    sendJson(res, 200, stats(Number(url.searchParams.get("expected") ?? 0)));
  } else if (req.method === "GET" && url.pathname === "/wait") {
    const count = Number(url.searchParams.get("count") ?? 0);
    const timeoutMs = Number(url.searchParams.get("timeoutMs") ?? 10_000);
    waitForCount(res, count, timeoutMs);
  } else {
    sendJson(res, 404, { error: `no route ${req.method} ${url.pathname}` });
  }
}

function handleTask(req: IncomingMessage, res: ServerResponse): void {
  const chunks: Buffer[] = [];
  req.on("data", (chunk: Buffer) => chunks.push(chunk));
  req.on("end", () => {
    const arrivalUs = nowUs();
    if (req.headers[taskHeader] === undefined) {
      missingHeader++;
      res.writeHead(400).end(`missing ${taskHeader} header`);
      return;
    }
    if (!recordTask(Buffer.concat(chunks).toString("latin1"), arrivalUs)) {
      invalidBody++;
      res.writeHead(400).end("form must carry numeric t and n fields");
      return;
    }
    res.writeHead(200, { "content-type": "text/plain", "content-length": 2 }).end("ok");
  });
}

const server = createServer((req, res) => {
  const url = new URL(req.url ?? "/", "http://endpoint");
  if (url.pathname === "/stats" || url.pathname === "/stats/reset" || url.pathname === "/wait") {
    handleControl(req, res, url);
  } else if (req.method === "POST") {
    handleTask(req, res);
  } else {
    res.writeHead(405, { allow: "POST" }).end();
  }
});
server.keepAliveTimeout = 30_000;

server.listen(Number(process.env.BENCH_PORT ?? 0), "127.0.0.1", () => {
  const { port } = server.address() as AddressInfo;
  console.log(JSON.stringify({ ready: true, port, impl: "portal-endpoint" }));
});

process.once("SIGTERM", () => {
  server.closeAllConnections();
  server.close(() => process.exit(0));
});
