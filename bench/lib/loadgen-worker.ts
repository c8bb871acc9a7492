/**
 * A load generator process: holds up to about 9,900 client sockets (the fd
 * limit is 20,000 per process, and the server side of each socket lives in
 * another process), records publish -> receive latency per message, and
 * handles the coordinator's requests over IPC (see loadgen-protocol.ts).
 * It prints `{"ready":true}` when it listens for requests.
 */
import { nowUs } from "./clock.ts";
import { readMessageId, sequence, stampUs, type MessageId } from "./frame-fields.ts";
import { LatencyHistogram } from "./histogram.ts";
import type { OpenResult, OpenSpec, WorkerReply, WorkerRequest, WorkerStats } from "./loadgen-protocol.ts";
import { LeanSocket, type LeanSocketHandlers } from "./ws-client.ts";

/** Client sockets take source addresses 127.0.0.2 .. 127.0.0.254 in turn. */
const SOURCE_ADDRESS_COUNT = 253;
/** A failed reconnect waits between these many ms before the next attempt, like a client backoff. */
const RETRY_MIN_MS = 250;
const RETRY_MAX_MS = 750;

interface Conn {
  index: number;
  user: number;
  cookie: string;
  localAddress: string;
  socket: LeanSocket | undefined;
  /** Welcome (or Socket.IO namespace connect) received, or 101 when the server sends no welcome. */
  open: boolean;
  pending: boolean;
  /** Incremented when the socket is dropped on purpose, so a stale delayed attempt does nothing. */
  generation: number;
  /** Reconnect after a failed attempt until the request's deadline. */
  retryUntil: number;
  welcomeTimer: NodeJS.Timeout | undefined;
  hasLastId: boolean;
  lastId: MessageId;
  seen: Set<number> | undefined;
  /** nowUs() when the socket was closed on purpose, and when it was open again (0 when never). */
  downAtUs: number;
  upAtUs: number;
}

let spec: OpenSpec | undefined;
const conns: Conn[] = [];
let concurrency = 500;
let inFlight = 0;
const queue: Conn[] = [];
let pendingCount = 0;
let openCount = 0;

let stats = freshStats();
let minN = 0;
let perUser: Map<number, number> | undefined;
let latency = new LatencyHistogram();
let replayLatency = new LatencyHistogram();
/** Failures of the current open or dropAll request. */
let requestFailed: Record<string, number> = {};
const scratchId: MessageId = { ms: 0, seq: 0 };

function freshStats(): Omit<WorkerStats, "open" | "pending" | "latency" | "replayLatency" | "perUser"> {
  return { opens: 0, failed: {}, closed: {}, delivered: 0, duplicates: 0, late: 0, replayed: 0 };
}

function increment(record: Record<string, number>, key: string): void {
  record[key] = (record[key] ?? 0) + 1;
}

function requestPath(conn: Conn, openSpec: OpenSpec): string {
  if (!openSpec.resume || !conn.hasLastId) return openSpec.path;
  const separator = openSpec.path.includes("?") ? "&" : "?";
  return `${openSpec.path}${separator}last=${conn.lastId.ms}-${conn.lastId.seq}`;
}

function enqueue(conn: Conn, delayMs: number): void {
  if (conn.pending) return;
  conn.pending = true;
  pendingCount++;
  if (delayMs <= 0) {
    queue.push(conn);
    pump();
    return;
  }
  const generation = conn.generation;
  setTimeout(() => {
    if (conn.generation !== generation || !conn.pending) return;
    queue.push(conn);
    pump();
  }, delayMs);
}

function pump(): void {
  while (inFlight < concurrency && queue.length > 0) {
    const conn = queue.shift()!;
    inFlight++;
    attempt(conn);
  }
}

function attempt(conn: Conn): void {
  const openSpec = spec!;
  conn.socket = new LeanSocket(
    {
      host: openSpec.host,
      port: openSpec.port,
      path: requestPath(conn, openSpec),
      localAddress: conn.localAddress,
      origin: openSpec.origin,
      cookie: conn.cookie,
      openTimeoutMs: openSpec.openTimeoutMs,
    },
    handlers,
  );
  conn.socket.tag = conn.index - openSpec.first;
}

/** Ends one attempt: the socket is open, or failed and maybe retried. */
function settle(conn: Conn, failure: string | undefined): void {
  if (!conn.pending) return;
  conn.pending = false;
  pendingCount--;
  inFlight--;
  clearTimeout(conn.welcomeTimer);
  if (failure === undefined) {
    conn.open = true;
    openCount++;
    stats.opens++;
    conn.upAtUs = nowUs();
  } else {
    increment(stats.failed, failure);
    increment(requestFailed, failure);
    conn.socket?.destroy();
    conn.socket = undefined;
    if (Date.now() < conn.retryUntil) {
      enqueue(conn, RETRY_MIN_MS + Math.random() * (RETRY_MAX_MS - RETRY_MIN_MS));
    }
  }
  pump();
}

function connOf(socket: LeanSocket): Conn {
  return conns[socket.tag]!;
}

function markClosed(conn: Conn, reason: string): void {
  if (conn.open) {
    conn.open = false;
    openCount--;
    increment(stats.closed, reason);
  }
}

const handlers: LeanSocketHandlers = {
  onOpen(socket) {
    const conn = connOf(socket);
    const openSpec = spec!;
    if (openSpec.protocol === "plain" && !openSpec.awaitWelcome) {
      settle(conn, undefined);
      return;
    }
    conn.welcomeTimer = setTimeout(() => settle(conn, "welcome timeout"), openSpec.openTimeoutMs);
  },
  onText(socket, data, start, end) {
    const conn = connOf(socket);
    if (spec!.protocol === "socketio") onSocketioPacket(conn, socket, data, start, end);
    else if (!conn.open) onWelcome(conn, data, start, end);
    else onMessage(conn, data, start, end);
  },
  onFail(socket, reason) {
    settle(connOf(socket), reason);
  },
  onClose(socket, reason) {
    const conn = connOf(socket);
    conn.socket = undefined;
    if (conn.pending) settle(conn, reason);
    else markClosed(conn, reason);
  },
};

/** Handles patpush's welcome frame, the first frame on every socket. */
function onWelcome(conn: Conn, data: Buffer, start: number, end: number): void {
  const welcome = JSON.parse(data.toString("utf8", start, end)) as {
    type?: string;
    id?: string;
    recovery?: string;
  };
  if (welcome.type !== "welcome") {
    settle(conn, "no welcome");
    return;
  }
  // The last id moves to the welcome id unless the resume was complete (docs/protocol.md).
  if (welcome.recovery !== "complete" && welcome.id !== undefined) {
    const [ms, seq] = welcome.id.split("-").map(Number);
    conn.lastId = { ms: ms ?? 0, seq: seq ?? 0 };
    conn.hasLastId = true;
  }
  settle(conn, undefined);
}

const CHAR_0 = 0x30;
const CHAR_2 = 0x32;
const CHAR_4 = 0x34;
const PONG = "3";
const CONNECT = "40";

/** Handles one Engine.IO v4 packet: open, ping, Socket.IO connect, connect error or event. */
function onSocketioPacket(conn: Conn, socket: LeanSocket, data: Buffer, start: number, end: number): void {
  const type = data[start];
  const subtype = data[start + 1];
  if (type === CHAR_2) {
    socket.sendText(PONG);
  } else if (type === CHAR_0) {
    socket.sendText(CONNECT);
  } else if (type === CHAR_4 && subtype === CHAR_0) {
    settle(conn, undefined);
  } else if (type === CHAR_4 && subtype === CHAR_4) {
    settle(conn, "socket.io connect_error");
  } else if (type === CHAR_4 && subtype === CHAR_2) {
    onMessage(conn, data, start, end);
  }
}

function onMessage(conn: Conn, data: Buffer, start: number, end: number): void {
  const t = stampUs(data, start, end);
  const n = sequence(data, start, end);
  if (t < 0 || n < 0) return;
  if (n < minN) {
    stats.late++;
    return;
  }
  if (spec!.resume && readMessageId(data, start, end, scratchId)) {
    conn.lastId.ms = scratchId.ms;
    conn.lastId.seq = scratchId.seq;
    conn.hasLastId = true;
  }
  if (conn.seen) {
    if (conn.seen.has(n)) {
      stats.duplicates++;
      return;
    }
    conn.seen.add(n);
  }
  const now = nowUs();
  stats.delivered++;
  latency.record(now - t);
  if (perUser) perUser.set(conn.user, (perUser.get(conn.user) ?? 0) + 1);
  if (conn.downAtUs > 0 && t >= conn.downAtUs && t < conn.upAtUs) {
    stats.replayed++;
    replayLatency.record(now - t);
  }
}

function createConns(openSpec: OpenSpec): void {
  const perSession = openSpec.socketsPerSession ?? 1;
  conns.length = 0;
  for (let i = 0; i < openSpec.count; i++) {
    const index = openSpec.first + i;
    const session = Math.floor(index / perSession);
    conns.push({
      index,
      user: session,
      cookie: `__ac=u${session}-s${session}`,
      localAddress: `127.0.0.${2 + (index % SOURCE_ADDRESS_COUNT)}`,
      socket: undefined,
      open: false,
      pending: false,
      generation: 0,
      retryUntil: 0,
      welcomeTimer: undefined,
      hasLastId: false,
      lastId: { ms: 0, seq: 0 },
      seen: openSpec.dedupe ? new Set() : undefined,
      downAtUs: 0,
      upAtUs: 0,
    });
  }
}

/** Waits until no attempt is pending or the deadline passes. */
async function settled(startedMs: number, deadlineMs: number): Promise<OpenResult> {
  let lastOpenMs = Date.now();
  while (pendingCount > 0 && Date.now() < deadlineMs) {
    await new Promise((resolve) => setTimeout(resolve, 5));
    if (pendingCount > 0) lastOpenMs = Date.now();
  }
  if (pendingCount === 0) lastOpenMs = Date.now();
  return {
    durationMs: lastOpenMs - startedMs,
    open: openCount,
    missing: conns.length - openCount,
    failed: { ...requestFailed },
  };
}

async function open(openSpec: OpenSpec, deadlineMs: number): Promise<OpenResult> {
  closeAll();
  spec = openSpec;
  concurrency = openSpec.concurrency;
  requestFailed = {};
  createConns(openSpec);
  const startedMs = Date.now();
  // A failed attempt retries (after 250-750 ms) until the deadline, as a browser would; the failures stay counted.
  for (const conn of conns) {
    conn.retryUntil = startedMs + deadlineMs;
    enqueue(conn, 0);
  }
  return settled(startedMs, startedMs + deadlineMs);
}

/** Destroys the connection's socket; the new generation makes its late events stale. */
function takeDown(conn: Conn): void {
  clearTimeout(conn.welcomeTimer);
  conn.socket?.destroy();
  conn.socket = undefined;
  conn.open = false;
  conn.pending = false;
  conn.generation++;
}

/** Destroys every socket at once, then reconnects each after a random delay up to `jitterMs`. */
async function dropAll(jitterMs: number, storm: number, deadlineMs: number): Promise<OpenResult> {
  const startedMs = Date.now();
  const retryUntil = startedMs + deadlineMs;
  const downAtUs = nowUs();
  queue.length = 0;
  for (const conn of conns) {
    takeDown(conn);
    conn.downAtUs = downAtUs;
  }
  openCount = 0;
  pendingCount = 0;
  inFlight = 0;
  concurrency = storm;
  requestFailed = {};
  for (const conn of conns) {
    conn.retryUntil = retryUntil;
    enqueue(conn, Math.random() * jitterMs);
  }
  return settled(startedMs, retryUntil);
}

/** Destroys a random `fraction` of the open sockets; each reconnects after up to `reconnectDelayMs`. */
function forceClose(fraction: number, reconnectDelayMs: number): number {
  const candidates = conns.filter((conn) => conn.open);
  const target = Math.round(candidates.length * fraction);
  const downAtUs = nowUs();
  for (let i = 0; i < target; i++) {
    const pick = i + Math.floor(Math.random() * (candidates.length - i));
    const conn = candidates[pick]!;
    candidates[pick] = candidates[i]!;
    takeDown(conn);
    openCount--;
    conn.downAtUs = downAtUs;
    conn.retryUntil = Date.now() + 60_000;
    enqueue(conn, Math.random() * reconnectDelayMs);
  }
  return target;
}

function closeAll(): void {
  queue.length = 0;
  for (const conn of conns) {
    takeDown(conn);
    conn.retryUntil = 0;
  }
  conns.length = 0;
  pendingCount = 0;
  inFlight = 0;
  openCount = 0;
}

function currentStats(): WorkerStats {
  const result: WorkerStats = {
    ...stats,
    failed: { ...stats.failed },
    closed: { ...stats.closed },
    open: openCount,
    pending: pendingCount,
    latency: latency.encode(),
    replayLatency: replayLatency.encode(),
  };
  if (perUser) result.perUser = Object.fromEntries(perUser);
  return result;
}

function resetStats(nextMinN: number, countPerUser: boolean): void {
  stats = freshStats();
  minN = nextMinN;
  perUser = countPerUser ? new Map() : undefined;
  latency = new LatencyHistogram();
  replayLatency = new LatencyHistogram();
  for (const conn of conns) conn.seen?.clear();
}

async function handle(request: WorkerRequest): Promise<unknown> {
  switch (request.op) {
    case "open":
      return open(request.spec, request.deadlineMs);
    case "dropAll":
      return dropAll(request.jitterMs, request.concurrency, request.deadlineMs);
    case "forceClose":
      return forceClose(request.fraction, request.reconnectDelayMs);
    case "resetStats":
      resetStats(request.minN, request.perUser);
      return null;
    case "stats":
      return currentStats();
    case "closeAll":
      closeAll();
      return null;
  }
}

process.on("message", (message: WorkerRequest & { id: number }) => {
  handle(message).then(
    (result) => process.send!({ id: message.id, ok: true, result } satisfies WorkerReply),
    (error: unknown) =>
      process.send!({ id: message.id, ok: false, error: String(error) } satisfies WorkerReply),
  );
});
process.on("disconnect", () => process.exit(0));
process.stdout.write(`${JSON.stringify({ ready: true, pid: process.pid })}\n`);
