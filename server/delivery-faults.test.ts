/**
 * Delivery under faults, counted end to end: a persistent redis-server, three
 * `patpush push-server` processes reading it, and PushConnection clients in
 * this process that reconnect through the `ws` package to a push server
 * picked at random. While a publisher appends messages to the done stream,
 * the test kills a push server with SIGKILL (it stays in the rotation for
 * another second) and starts a replacement, restarts Redis, and drops client
 * sockets. A few sockets lose their network across the Redis restart and
 * then resume on the replacement. Every message must then have reached every socket
 * of its user, in id order, and no other socket.
 */
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { randomUUID } from "node:crypto";
import { once } from "node:events";
import { fileURLToPath } from "node:url";
import { setTimeout as delay } from "node:timers/promises";
import { after, before, describe, it } from "node:test";
import { Redis } from "ioredis";
import WebSocket from "ws";
import { PushConnection } from "../client/connection.ts";
import type { Transport, TransportHandlers } from "../client/transport.ts";
import { startRedisServer, type RedisTestServer } from "../common/redis-test-server.ts";
import type { MessageFrame } from "../protocol/frames.ts";
import { compareMessageIds, type MessageId } from "../protocol/message-id.ts";
import { publishDoneMessage } from "./publish.ts";
import { sessionResponder, startPortalStub, type PortalStub } from "./test-support.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const USER_COUNT = 20;
const SOCKETS_PER_USER = 3;
const MESSAGE_COUNT = 2000;
/** Sockets that lose their network across the Redis restart. */
const SLEEPER_COUNT = 6;
const PUBLISH_DURATION_MS = 20_000;
/** Maximum wait for the last deliveries after the publisher finished, in milliseconds. */
const TAIL_LIMIT_MS = 15_000;
/** Upper bound of each start-up and shutdown step, in milliseconds. */
const STEP_LIMIT_MS = 15_000;
/** Reconnect delays of the clients, shorter than the browser default to keep the run short. */
const BACKOFF = { baseMs: 100, maxMs: 1000 };

/** Rejects with "timed out after … waiting for <description>" unless `promise` settles in time. */
async function within<T>(promise: Promise<T>, limitMs: number, description: string): Promise<T> {
  const controller = new AbortController();
  const timeout = delay(limitMs, undefined, { signal: controller.signal }).then(() => {
    throw new Error(`timed out after ${limitMs} ms waiting for ${description}`);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    controller.abort();
    timeout.catch(() => undefined);
  }
}

/** Resolves once `condition` returns true, checking every 50 ms, or rejects after `limitMs`. */
async function waitUntil(condition: () => boolean, limitMs: number, description: string): Promise<void> {
  const deadline = performance.now() + limitMs;
  while (!condition()) {
    if (performance.now() > deadline) {
      throw new Error(`timed out after ${limitMs} ms waiting for ${description}`);
    }
    await delay(50);
  }
}

/** A `patpush push-server` child process. */
class PushServerProcess {
  readonly child: ChildProcess;
  readonly name: string;
  port = 0;
  alive = true;
  /** False once the load balancer stopped sending new sockets here. */
  routable = true;
  /** Times the stream reader logged that it reconnected to Redis. */
  readerReconnects = 0;
  /** Last lines of standard error, for a failure report. */
  readonly errors: string[] = [];
  readonly listening: Promise<void>;

  constructor(name: string, env: Record<string, string>) {
    this.name = name;
    this.child = spawn(process.execPath, ["--import", "tsx", "cli/patpush.ts", "push-server"], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? "", ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    this.child.once("exit", () => (this.alive = false));
    this.child.stderr?.setEncoding("utf8");
    this.child.stderr?.on("data", (text: string) => {
      this.errors.push(text);
      if (this.errors.length > 20) this.errors.shift();
    });

    this.listening = new Promise((resolve, reject) => {
      let partial = "";
      this.child.once("exit", (code) => reject(new Error(`${name} exited with code ${code}`)));
      this.child.stdout?.setEncoding("utf8");
      // The server logs every socket, so standard output is read to the end in any case.
      this.child.stdout?.on("data", (text: string) => {
        const lines = (partial + text).split("\n");
        partial = lines.pop() ?? "";
        for (const line of lines) {
          if (line.includes('"msg":"push server listening"')) {
            this.port = (JSON.parse(line) as { port: number }).port;
            resolve();
          }
          const reader = line.includes('"connection":"reader"');
          if (reader && line.includes('"msg":"redis reconnected"')) this.readerReconnects += 1;
        }
      });
    });
  }

  /** Ends the process with `signal` and waits for it to exit. */
  async stop(signal: NodeJS.Signals): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = once(this.child, "exit");
    this.child.kill(signal);
    await exited;
  }
}

/** One client socket of a user: a PushConnection and what it received. */
interface ClientSocket {
  user: string;
  session: string;
  connection: PushConnection;
  /** The `ws` client of the current attempt, so the test can drop it. */
  current: WebSocket | undefined;
  /** Start time of the current attempt (performance.now()). */
  attemptStartedAt: number;
  attempts: number;
  /** Sequence numbers received, with how often each arrived past the duplicate check. */
  received: Map<number, number>;
  ids: MessageId[];
  foreign: string[];
  welcomes: string[];
  recovered: number;
  /** True while the socket's network is down: every attempt and auth check fails. */
  offline: boolean;
  /** Push server that the next attempt goes to, instead of a random one. */
  pinned: PushServerProcess | undefined;
}

/** Publish record of one message: its recipient and when XADD returned (performance.now()). */
interface SentMessage {
  user: string;
  storedAt: number;
}

/**
 * A transport over the `ws` package that sends the Origin and Cookie headers
 * a browser would, and picks a random push server on every attempt, as
 * a load balancer in front of the push servers does. It keeps the path and
 * query of the URL the connection opens, so `last` reaches the server.
 */
class LoadBalancedTransport implements Transport {
  readonly name = "websocket";
  readonly #url: string;
  readonly #socket: ClientSocket;
  readonly #origin: string;
  readonly #servers: () => PushServerProcess[];
  #ws: WebSocket | undefined;

  constructor(
    url: string,
    socket: ClientSocket,
    origin: string,
    servers: () => PushServerProcess[],
  ) {
    this.#url = url;
    this.#socket = socket;
    this.#origin = origin;
    this.#servers = servers;
  }

  connect(handlers: TransportHandlers): void {
    this.#socket.attempts += 1;
    if (this.#socket.offline) {
      // No network: the attempt fails before it opens, on a later turn as a socket would.
      setTimeout(() => handlers.onClose(1006, "offline", false), 0);
      return;
    }

    const routable = this.#servers().filter((server) => server.routable && server.port !== 0);
    const server = this.#socket.pinned ?? routable[Math.floor(Math.random() * routable.length)];
    const url = new URL(this.#url);
    url.port = String(server?.port ?? 9);

    const ws = new WebSocket(url.href, {
      origin: this.#origin,
      headers: { cookie: `__ac=${this.#socket.session}` },
    });
    this.#ws = ws;
    this.#socket.current = ws;
    this.#socket.attemptStartedAt = performance.now();

    let wasOpen = false;
    ws.on("open", () => {
      wasOpen = true;
      handlers.onOpen();
    });
    ws.on("message", (data, isBinary) => {
      if (!isBinary) handlers.onFrame(String(data));
    });
    // A failed upgrade emits "error" and then "close" with 1006, which reports it.
    ws.on("error", () => undefined);
    ws.on("close", (code, reason) => {
      if (this.#ws !== ws) return;
      this.#ws = undefined;
      handlers.onClose(code, String(reason), wasOpen);
    });
  }

  close(code = 1000, reason = ""): void {
    const ws = this.#ws;
    this.#ws = undefined;
    if (ws === undefined) return;
    if (ws.readyState === WebSocket.CONNECTING) ws.terminate();
    else ws.close(code, reason);
  }
}

describe("delivery faults", { timeout: 90_000 }, () => {
  let redis: RedisTestServer;
  let portal: PortalStub;
  let publisher: Redis;
  const servers: PushServerProcess[] = [];
  const sockets: ClientSocket[] = [];
  const keyPrefix = `d${randomUUID().slice(0, 8)}:`;
  const originalFetch = globalThis.fetch;
  /** Auth checks that connections made after a failed attempt. */
  let authChecks = 0;

  /** Environment of one push server process. */
  function serverEnv(): Record<string, string> {
    return {
      PATPUSH_AUTH_URL: portal.authUrl,
      PATPUSH_PUSH_PORT: "0",
      PATPUSH_REDIS_URL: redis.url,
      PATPUSH_KEY_PREFIX: keyPrefix,
      PATPUSH_SHUTDOWN_DRAIN_MS: "1000",
    };
  }

  async function startServer(name: string): Promise<PushServerProcess> {
    const server = new PushServerProcess(name, serverEnv());
    servers.push(server);
    await within(server.listening, STEP_LIMIT_MS, `${name} to listen`);
    return server;
  }

  before(async () => {
    redis = await startRedisServer({ persistent: true });
    const sessions = Object.fromEntries(
      Array.from({ length: USER_COUNT }, (_, i) => [`s${i}`, { user: `u${i}`, channels: [] }]),
    );
    portal = await startPortalStub(sessionResponder(sessions));
    publisher = new Redis(redis.url);
    publisher.on("error", () => undefined);

    // After a socket failed to open, PushConnection requests `<path>/auth` with
    // the page's cookies. A browser sends them and the Origin with that fetch;
    // Node's fetch sends neither, so this adds them for the socket named in `tab`.
    globalThis.fetch = (input, init) => {
      const url = new URL(input instanceof Request ? input.url : String(input));
      const tab = url.searchParams.get("tab");
      const socket = tab === null ? undefined : sockets[Number(tab)];
      if (!url.pathname.endsWith("/auth") || socket === undefined) {
        return originalFetch(input, init);
      }
      authChecks += 1;
      if (socket.offline) return Promise.reject(new TypeError("fetch failed: offline"));
      const headers = { origin: portal.origin, cookie: `__ac=${socket.session}` };
      return originalFetch(input, { ...init, headers });
    };
  });

  after(async () => {
    globalThis.fetch = originalFetch;
    for (const socket of sockets) socket.connection.close();
    const stops = servers.map((server) => within(server.stop("SIGTERM"), 5000, server.name));
    const results = await Promise.allSettled(stops);
    for (const server of servers) await server.stop("SIGKILL");
    publisher?.disconnect();
    await portal?.close();
    await redis?.stop();
    for (const result of results) if (result.status === "rejected") throw result.reason;
    // Every push server but the killed one ended on SIGTERM with a clean close.
    const stopped = servers.filter((server) => server.name !== "push-2");
    assert.deepEqual(
      stopped.map((server) => `${server.name}: ${server.child.exitCode}`),
      stopped.map((server) => `${server.name}: 0`),
    );
  });

  it("delivers every message despite faults", async () => {
    await Promise.all(["push-1", "push-2", "push-3"].map((name) => startServer(name)));
    const [first] = servers;
    assert.ok(first !== undefined);

    // Open the sockets. The connection URL names the first push server, which
    // is never killed, so an auth check after a failed attempt reaches a live one.
    for (let i = 0; i < USER_COUNT * SOCKETS_PER_USER; i += 1) {
      const userIndex = i % USER_COUNT;
      const socket: ClientSocket = {
        user: `u${userIndex}`,
        session: `s${userIndex}`,
        connection: undefined as unknown as PushConnection,
        current: undefined,
        attemptStartedAt: 0,
        attempts: 0,
        received: new Map(),
        ids: [],
        foreign: [],
        welcomes: [],
        recovered: 0,
        offline: false,
        pinned: undefined,
      };
      socket.connection = new PushConnection({
        url: `ws://127.0.0.1:${first.port}/push?tab=${i}`,
        backoff: BACKOFF,
        createTransport: (url) =>
          new LoadBalancedTransport(url, socket, portal.origin, () => servers),
      });
      sockets.push(socket);
    }

    const sent = new Map<number, SentMessage>();
    for (const socket of sockets) {
      socket.connection.addEventListener("welcome", (event) => {
        socket.welcomes.push(event.detail.frame.recovery);
        socket.pinned = undefined;
      });
      socket.connection.addEventListener("message", (event: CustomEvent<MessageFrame>) => {
        const frame = event.detail;
        const data = frame.data as { seq: number; to: string };
        if (data.to !== socket.user) socket.foreign.push(`${frame.id} for ${data.to}`);
        socket.ids.push(frame.id);
        socket.received.set(data.seq, (socket.received.get(data.seq) ?? 0) + 1);
        // Stored before this attempt began, and arriving on a later socket: it came by replay.
        const stored = sent.get(data.seq);
        const replayed = stored !== undefined && stored.storedAt < socket.attemptStartedAt;
        if (socket.attempts > 1 && replayed && socket.received.get(data.seq) === 1) {
          socket.recovered += 1;
        }
      });
      socket.connection.connect();
    }
    await waitUntil(
      () => sockets.every((socket) => socket.welcomes.length > 0),
      STEP_LIMIT_MS,
      "every socket's first welcome",
    );

    // The publisher appends MESSAGE_COUNT messages at an even pace. A failed
    // XADD (Redis is restarting) is retried, so a message may be stored twice.
    const started = performance.now();
    let publishFailures = 0;
    const publishOne = async (seq: number): Promise<void> => {
      const user = `u${Math.floor(Math.random() * USER_COUNT)}`;
      const message = { user, event: "patpush:test", data: { seq, to: user, sentAt: Date.now() } };
      const deadline = performance.now() + STEP_LIMIT_MS;
      for (;;) {
        try {
          await publishDoneMessage(publisher, message, { keyPrefix });
          sent.set(seq, { user, storedAt: performance.now() });
          return;
        } catch (error) {
          publishFailures += 1;
          if (performance.now() > deadline) throw error;
          await delay(100);
        }
      }
    };
    const publishing = (async () => {
      const pending: Promise<void>[] = [];
      for (let seq = 0; seq < MESSAGE_COUNT; seq += 1) {
        const dueMs = started + (seq * PUBLISH_DURATION_MS) / MESSAGE_COUNT - performance.now();
        if (dueMs > 0) await delay(dueMs);
        pending.push(publishOne(seq));
      }
      await within(Promise.all(pending), STEP_LIMIT_MS, "the last XADD");
    })();

    // Faults, at fixed times after the first message. The sleepers are the
    // first sockets, one per user, and the drops below skip them.
    const sleepers = sockets.slice(0, SLEEPER_COUNT);
    const at = async (ms: number) => {
      const waitMs = started + ms - performance.now();
      if (waitMs > 0) await delay(waitMs);
    };
    let droppedSockets = 0;
    const dropping = (async () => {
      while (performance.now() - started < PUBLISH_DURATION_MS) {
        await delay(1000 + Math.random() * 1000);
        for (let n = 0; n < 5; n += 1) {
          const awake = sockets.length - SLEEPER_COUNT;
          const socket = sockets[SLEEPER_COUNT + Math.floor(Math.random() * awake)];
          if (socket?.current?.readyState !== WebSocket.OPEN) continue;
          socket.current.terminate();
          droppedSockets += 1;
        }
      }
    })();
    const faults = (async () => {
      await at(5000);
      const victim = servers[1];
      assert.ok(victim !== undefined);
      await victim.stop("SIGKILL");
      // As a load balancer whose health check has not noticed yet, keep sending sockets there.
      await delay(1000);
      victim.routable = false;

      // A few tabs lose their network before the Redis restart and come back
      // after it, to a push server started after it. Only a done stream that
      // survived the restart lets that server replay what they missed.
      await at(7000);
      for (const sleeper of sleepers) {
        sleeper.offline = true;
        sleeper.current?.terminate();
      }

      await at(9000);
      await redis.stop();
      await delay(1000);
      await redis.start();

      await at(13_000);
      const replacement = await startServer("push-4");
      for (const sleeper of sleepers) {
        sleeper.pinned = replacement;
        sleeper.offline = false;
      }
    })();

    await Promise.all([publishing, dropping, faults]);
    const publishedMs = performance.now() - started;

    // Every (message, socket of its user) pair that has not arrived yet.
    const missing = (): string[] => {
      const lines: string[] = [];
      for (const [seq, message] of sent) {
        for (const socket of sockets) {
          if (socket.user === message.user && !socket.received.has(seq)) {
            lines.push(`seq ${seq} to ${message.user}`);
          }
        }
      }
      return lines;
    };
    const tailStarted = performance.now();
    await waitUntil(() => missing().length === 0, TAIL_LIMIT_MS, "the last deliveries").catch(
      () => undefined,
    );
    const tailMs = performance.now() - tailStarted;

    let delivered = 0;
    let passedDuplicates = 0;
    let duplicatesDropped = 0;
    let recovered = 0;
    let reconnects = 0;
    for (const socket of sockets) {
      for (const count of socket.received.values()) {
        delivered += count;
        passedDuplicates += count - 1;
      }
      duplicatesDropped += socket.connection.duplicatesDropped;
      recovered += socket.recovered;
      reconnects += socket.attempts - 1;
    }
    const lost = missing();
    const counts = {
      sent: sent.size,
      expectedDeliveries: sent.size * SOCKETS_PER_USER,
      delivered,
      duplicatesDropped,
      duplicatesPassed: passedDuplicates,
      recovered,
      lost: lost.length,
      publishFailures,
      droppedSockets,
      reconnects,
      authChecks,
      publishedMs: Math.round(publishedMs),
      tailMs: Math.round(tailMs),
    };
    console.log(`delivery faults: ${JSON.stringify(counts)}`);

    assert.equal(sent.size, MESSAGE_COUNT);
    assert.deepEqual(lost.slice(0, 20), [], `${lost.length} deliveries lost`);
    for (const socket of sockets) {
      assert.deepEqual(socket.foreign, [], `a socket of ${socket.user} got other users' messages`);
    }
    for (const [index, socket] of sockets.entries()) {
      const backwards = socket.ids.findIndex(
        (id, i) => i > 0 && compareMessageIds(id, socket.ids[i - 1] ?? "0-0") <= 0,
      );
      assert.equal(backwards, -1, `socket ${index} received ${socket.ids[backwards]} out of order`);
    }
    const gaps = sockets.filter((socket) => socket.welcomes.includes("gap")).length;
    assert.equal(gaps, 0, `${gaps} sockets got a welcome with recovery "gap"`);
    assert.ok(droppedSockets > 0, "no client socket was dropped");
    assert.ok(recovered > 0, "no message arrived by replay");
    for (const [index, sleeper] of sleepers.entries()) {
      assert.ok(sleeper.recovered > 0, `sleeping socket ${index} got nothing by replay`);
    }
    for (const server of servers.filter((s) => s.name === "push-1" || s.name === "push-3")) {
      assert.ok(server.readerReconnects > 0, `${server.name} did not reconnect to Redis`);
    }
    assert.ok(servers.every((server) => server.name === "push-2" || server.alive));
  });
});
