/**
 * Helpers for the push server tests: a portal auth stub on a real HTTP
 * server, a `ws` client that records frames, and a log capture.
 */
import {
  createServer,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type ServerResponse,
} from "node:http";
import type { AddressInfo } from "node:net";
import { Writable } from "node:stream";
import WebSocket from "ws";
import { createLogger, type Logger } from "../common/logger.ts";
import { parseServerFrame, type ServerFrame } from "../protocol/frames.ts";
import type { MessageId } from "../protocol/message-id.ts";
import type { DoneMessage } from "../protocol/message.ts";
import type { AuthIdentity } from "./auth.ts";
import { EmbeddedBus, validateMessage, type Bus, type BusEvent, type BusHandler } from "./bus.ts";
import type { ServerConfigInput } from "./config.ts";
import { startPushServer, type PushServer } from "./push-server.ts";
import { Subscribers } from "./subscribers.ts";

/** One request the portal stub received. */
export interface RecordedRequest {
  method: string;
  url: string;
  /** The raw Cookie header, or undefined when none was sent. */
  cookie: string | undefined;
}

/** Writes the portal's response to one auth request. */
export type PortalResponder = (req: IncomingMessage, res: ServerResponse) => void;

/** A running portal stub. */
export interface PortalStub {
  /** http://127.0.0.1:port */
  origin: string;
  /** URL of the stub's auth endpoint. */
  authUrl: string;
  requests: RecordedRequest[];
  close(): Promise<void>;
}

/** Sessions that the default responder accepts, by `__ac` cookie value. */
export const SESSIONS: Record<string, AuthIdentity> = {
  "alice-session": { user: "alice", channels: [] },
  "alice-session-2": { user: "alice", channels: [] },
  "bob-session": { user: "bob", channels: [] },
  "bob-session-2": { user: "bob", channels: [] },
  "carol-session": { user: "carol", channels: ["news"] },
};

/** Returns the `__ac` value of a raw Cookie header. */
function sessionCookie(header: string | undefined): string | undefined {
  for (const part of (header ?? "").split(";")) {
    const [name, ...rest] = part.trim().split("=");
    if (name === "__ac") return rest.join("=");
  }
  return undefined;
}

/**
 * Responds like a portal: 200 with the identity for a known `__ac` session,
 * 403 for the session "forbidden-session", 401 for anything else.
 */
export function sessionResponder(
  sessions: Record<string, AuthIdentity> = SESSIONS,
): PortalResponder {
  return (req, res) => {
    const session = sessionCookie(req.headers.cookie);
    const identity = session === undefined ? undefined : sessions[session];
    if (identity) {
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(identity));
    } else if (session === "forbidden-session") {
      res.writeHead(403).end("forbidden");
    } else {
      res.writeHead(401).end("unauthorized");
    }
  };
}

/** Starts a portal stub on 127.0.0.1 and a free port, and records every request. */
export async function startPortalStub(
  respond: PortalResponder = sessionResponder(),
): Promise<PortalStub> {
  const requests: RecordedRequest[] = [];
  const server = createServer((req, res) => {
    requests.push({ method: req.method ?? "", url: req.url ?? "", cookie: req.headers.cookie });
    respond(req, res);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  const origin = `http://127.0.0.1:${port}`;

  return {
    origin,
    authUrl: `${origin}/@@patpush-auth`,
    requests,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** Returns the URL of a loopback port that nothing listens on, by closing a server bound to it. */
export async function closedPortUrl(): Promise<string> {
  const stub = await startPortalStub();
  await stub.close();
  return stub.authUrl;
}

/** Options of a test socket: the Origin and Cookie headers to send. */
export interface SocketOptions {
  origin?: string;
  cookie?: string;
  /** Further request headers, sent as given. */
  headers?: Record<string, string>;
  /** Loopback address to connect from, such as 127.0.0.2, to act as another client. */
  localAddress?: string;
}

/** A connected `ws` client that records every server frame. */
export interface TestSocket {
  ws: WebSocket;
  frames: ServerFrame[];
  /** Resolves with the first frame, past or future, that matches `predicate`. */
  waitFor(predicate: (frame: ServerFrame) => boolean): Promise<ServerFrame>;
  /** Resolves when the socket closes, with the close code and reason. */
  closed: Promise<{ code: number; reason: string }>;
}

/** Thrown by {@link openSocket} when the server responds to the upgrade with plain HTTP. */
export class UpgradeRejected extends Error {
  constructor(
    readonly status: number,
    readonly body: string,
  ) {
    super(`upgrade rejected with ${status}: ${body}`);
  }
}

function createClient(url: string, options: SocketOptions): WebSocket {
  const headers: Record<string, string> = { ...options.headers };
  if (options.cookie !== undefined) headers.cookie = options.cookie;
  return new WebSocket(url, {
    ...(options.origin !== undefined ? { origin: options.origin } : {}),
    ...(options.localAddress !== undefined ? { localAddress: options.localAddress } : {}),
    headers,
  });
}

interface FrameWaiter {
  predicate: (frame: ServerFrame) => boolean;
  resolve: (frame: ServerFrame) => void;
}

/** Opens a socket. Rejects with UpgradeRejected when the server rejects the upgrade. */
export function openSocket(url: string, options: SocketOptions = {}): Promise<TestSocket> {
  const ws = createClient(url, options);
  const frames: ServerFrame[] = [];
  const waiters: FrameWaiter[] = [];

  ws.on("message", (data, isBinary) => {
    const frame = isBinary ? undefined : parseServerFrame(String(data));
    if (!frame) throw new Error(`unexpected frame: ${String(data)}`);
    frames.push(frame);
    for (const waiter of [...waiters]) {
      if (!waiter.predicate(frame)) continue;
      waiters.splice(waiters.indexOf(waiter), 1);
      waiter.resolve(frame);
    }
  });
  const closed = new Promise<{ code: number; reason: string }>((resolve) => {
    ws.on("close", (code, reason) => resolve({ code, reason: String(reason) }));
  });

  const waitFor = (predicate: (frame: ServerFrame) => boolean) => {
    const seen = frames.find(predicate);
    if (seen) return Promise.resolve(seen);
    return new Promise<ServerFrame>((resolve) => waiters.push({ predicate, resolve }));
  };

  return new Promise<TestSocket>((resolve, reject) => {
    ws.on("unexpected-response", (_req, res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => (body += chunk));
      res.on("end", () => {
        ws.on("error", () => undefined);
        ws.terminate();
        reject(new UpgradeRejected(res.statusCode ?? 0, body));
      });
    });
    ws.once("error", reject);
    ws.once("open", () => resolve({ ws, frames, waitFor, closed }));
  });
}

/** Opens a socket that the server must reject, and returns the rejection. */
export async function expectRejected(
  url: string,
  options: SocketOptions,
): Promise<UpgradeRejected> {
  try {
    const socket = await openSocket(url, options);
    socket.ws.terminate();
  } catch (error) {
    if (error instanceof UpgradeRejected) return error;
    throw error;
  }
  throw new Error("expected the upgrade to be rejected, but the socket opened");
}

/** A rejected upgrade with its response headers. */
export interface RawRejection {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

/** Sends an upgrade with exactly `headers` and returns the HTTP response that rejects it. */
export function rejectedUpgrade(
  url: string,
  headers: Record<string, string>,
  localAddress = "127.0.0.1",
): Promise<RawRejection> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers, localAddress });
    ws.on("unexpected-response", (_req, res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => (body += chunk));
      res.on("end", () => {
        ws.on("error", () => undefined);
        ws.terminate();
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body });
      });
    });
    ws.once("open", () => {
      ws.terminate();
      reject(new Error("expected the upgrade to be rejected, but the socket opened"));
    });
    ws.once("error", reject);
  });
}

/** Log lines written by a logger made with {@link captureLogs}. */
export interface LogCapture {
  logger: Logger;
  /** Every raw line written so far. */
  text(): string;
  /** Every line parsed as JSON. */
  records(): Record<string, unknown>[];
}

/** Creates a logger that writes to memory, at `level`. */
export function captureLogs(level = "debug"): LogCapture {
  const chunks: string[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      chunks.push(chunk.toString("utf8"));
      callback();
    },
  });
  const text = () => chunks.join("");
  return {
    logger: createLogger({ level, destination }),
    text,
    records: () =>
      text()
        .split("\n")
        .filter((line) => line.length > 0)
        .map((line) => JSON.parse(line) as Record<string, unknown>),
  };
}

/**
 * A bus that hands over exactly the events a test gives it, for the events
 * the embedded bus never sends: live and backfill messages, and coverage
 * resets. It keeps the latest coverage like every bus, so a new subscriber
 * receives it first.
 */
export class ScriptedBus implements Bus {
  readonly #subscribers = new Subscribers();

  /** Hands `event` to every subscriber; a coverage event also becomes the latest coverage. */
  emit(event: BusEvent): void {
    if (event.type === "coverage") this.#subscribers.setCoverage(event, undefined);
    else this.#subscribers.deliver(event, undefined);
  }

  /** Hands over a stored message with `id`; `kind` marks it live or backfill. */
  emitMessage(id: MessageId, message: DoneMessage, kind?: "live" | "backfill"): void {
    this.emit({
      type: "message",
      id,
      message: validateMessage(message),
      live: kind === "live",
      backfill: kind === "backfill",
    });
  }

  async publish(): Promise<MessageId> {
    throw new Error("ScriptedBus does not publish; call emit()");
  }

  subscribe(handler: BusHandler): () => void {
    return this.#subscribers.add(handler);
  }

  async close(): Promise<void> {
    this.#subscribers.clear();
  }
}

/** Returns `url` with the `last` query parameter set to `last`. */
export function withLast(url: string, last: string): string {
  return `${url}?last=${encodeURIComponent(last)}`;
}

/** Returns the value of the metric line `series` (name and labels as printed) in `text`. */
export function metricValue(text: string, series: string): number | undefined {
  for (const line of text.split("\n")) {
    if (line.startsWith(`${series} `)) return Number(line.slice(series.length + 1));
  }
  return undefined;
}

/** A push server on a free port with its bus and captured logs. */
export interface TestServer<B extends Bus = EmbeddedBus> {
  server: PushServer;
  bus: B;
  logs: LogCapture;
  close(): Promise<void>;
}

/** Starts a push server on 127.0.0.1 and port 0 with an embedded bus, logging at debug. */
export async function startTestServer(config: ServerConfigInput): Promise<TestServer> {
  const logs = captureLogs("debug");
  return startTestServerWith(config, new EmbeddedBus({ logger: logs.logger }), logs);
}

/** Starts a push server on 127.0.0.1 and port 0 with `bus`, logging at debug. */
export async function startTestServerWith<B extends Bus>(
  config: ServerConfigInput,
  bus: B,
  logs: LogCapture = captureLogs("debug"),
): Promise<TestServer<B>> {
  const server = await startPushServer({
    config: { port: 0, ...config },
    bus,
    logger: logs.logger,
  });
  return {
    server,
    bus,
    logs,
    close: async () => {
      await server.close();
      await bus.close();
    },
  };
}
