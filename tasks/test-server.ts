/**
 * A real HTTP server on 127.0.0.1, port 0, for the task tests: it records
 * every request it receives and responds through a handler the test chooses.
 */
import { randomUUID } from "node:crypto";
import { once } from "node:events";
import {
  createServer,
  type IncomingHttpHeaders,
  type RequestListener,
  type ServerResponse,
} from "node:http";
import type { AddressInfo } from "node:net";
import { Writable } from "node:stream";
import { createLogger, type Logger } from "../common/logger.ts";
import type { Task } from "./types.ts";

/** One request as the server received it. */
export interface RecordedRequest {
  method: string;
  path: string;
  headers: IncomingHttpHeaders;
  body: string;
  form: URLSearchParams;
  /** Arrival time in milliseconds since the epoch. */
  receivedAt: number;
}

/** Responds to a recorded request (`index` counts from 0). An unended `res` keeps it pending. */
export type RecordingHandler = (
  request: RecordedRequest,
  res: ServerResponse,
  index: number,
) => void;

export interface RecordingServer {
  /** `http://127.0.0.1:<port>` */
  origin: string;
  requests: RecordedRequest[];
  /** Resolves once `count` requests have arrived. */
  waitForRequests(count: number): Promise<void>;
  close(): Promise<void>;
}

/** Starts a recording server; the default handler responds 200 "ok". */
export async function startRecordingServer(handler?: RecordingHandler): Promise<RecordingServer> {
  const requests: RecordedRequest[] = [];
  const waiters: { count: number; resolve: () => void }[] = [];

  const server = await startServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const body = Buffer.concat(chunks).toString("utf8");
    const recorded: RecordedRequest = {
      method: req.method ?? "",
      path: req.url ?? "",
      headers: req.headers,
      body,
      form: new URLSearchParams(body),
      receivedAt: Date.now(),
    };
    const index = requests.push(recorded) - 1;
    for (const waiter of waiters.filter((w) => requests.length >= w.count)) waiter.resolve();

    if (handler) handler(recorded, res, index);
    else res.end("ok");
  });

  return {
    origin: server.origin,
    requests,
    waitForRequests(count) {
      if (requests.length >= count) return Promise.resolve();
      return new Promise((resolve) => waiters.push({ count, resolve }));
    },
    close: () => server.close(),
  };
}

/** Starts a plain server on 127.0.0.1, port 0, with `listener`; returns its origin and a closer. */
export async function startServer(
  listener: RequestListener,
): Promise<{ origin: string; close(): Promise<void> }> {
  const server = createServer(listener);
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address() as AddressInfo;
  return {
    origin: `http://127.0.0.1:${port}`,
    async close() {
      server.closeAllConnections();
      server.close();
      await once(server, "close");
    },
  };
}

/** Creates a pino logger that keeps its JSON lines in `lines`; `waitFor` awaits a message. */
export function captureLogger(level = "debug"): {
  logger: Logger;
  lines: string[];
  messages(): string[];
  waitFor(msg: string): Promise<Record<string, unknown>>;
} {
  const lines: string[] = [];
  const waiters: { msg: string; resolve: (entry: Record<string, unknown>) => void }[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      for (const line of chunk.toString("utf8").split("\n").filter(Boolean)) {
        lines.push(line);
        const entry = JSON.parse(line) as Record<string, unknown>;
        for (const waiter of waiters.filter((w) => w.msg === entry.msg)) waiter.resolve(entry);
      }
      callback();
    },
  });

  const parsed = () => lines.map((line) => JSON.parse(line) as Record<string, unknown>);
  return {
    logger: createLogger({ level, destination }),
    lines,
    messages: () => parsed().map((entry) => String(entry.msg)),
    waitFor(msg) {
      const found = parsed().find((entry) => entry.msg === msg);
      if (found) return Promise.resolve(found);
      return new Promise((resolve) => waiters.push({ msg, resolve }));
    },
  };
}

/** Builds a task for `url` the way the producer would, due now, with `overrides` applied. */
export function buildTask(url: string, overrides: Partial<Task> = {}): Task {
  return {
    id: randomUUID(),
    name: "test-task",
    url,
    form: [
      ["size", "large"],
      ["_authenticator", "auth-token-1"],
    ],
    headers: {},
    cookies: { __ac: "session-1" },
    notBefore: Date.now(),
    maxAttempts: 3,
    createdAt: Date.now(),
    ...overrides,
  };
}
