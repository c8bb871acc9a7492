/**
 * The servers that the benchmarks compare: patpush and three peers that do
 * the same work (cookie check at the portal, Redis in, per-user and channel
 * delivery out) with other libraries. Each entry gives the command that
 * starts the server, the URL a client connects to, and the publish function
 * that hands it messages.
 *
 * Every server returns 200 for `GET /ready` once it can deliver, so
 * {@link waitForReady} works for all of them. The peers also print one JSON
 * line `{"ready":true,"port":...,"impl":"..."}` on stdout. patpush runs at
 * log level warn and prints nothing when it is ready.
 */
import { fileURLToPath } from "node:url";
import { Emitter } from "@socket.io/redis-emitter";
import type { Redis } from "ioredis";
import { spawnPinned, type PinnedProcess } from "./processes.ts";

/** Names of the servers, in the order the reports list them. */
export const PEER_NAMES = ["patpush", "patpush-live", "uws-raw", "ws-ioredis", "socketio"] as const;
export type PeerName = (typeof PEER_NAMES)[number];

/**
 * Wire protocol between client and server. "plain": RFC 6455 text frames that
 * carry the message JSON. "socketio": Engine.IO v4 over a WebSocket, where a
 * message arrives as `42["message",{...}]`.
 */
export type PeerProtocol = "plain" | "socketio";

/** The channel that the portal stub grants every session, and that broadcasts go to. */
export const BENCH_CHANNEL = "bench";

/** Event name that every benchmark message carries. */
export const BENCH_EVENT = "bench";

/** Redis Pub/Sub channel that uws-raw and ws-ioredis subscribe to. */
export const PEER_DONE_CHANNEL = "bench:done";

/** patpush's done stream (default key prefix). */
export const PATPUSH_DONE_STREAM = "patpush:done";

/** Approximate length that XADD trims patpush's done stream to. */
export const PATPUSH_STREAM_MAX_LEN = 100_000;

/** A message's recipient: one user (`u<N>`) or the channel. */
export type Recipient = { user: string } | { channel: string };

/**
 * A done message as patpush's schema defines it. `t` is the publisher's
 * nowUs() clock (bench/lib/clock.ts) in microseconds, `n` a sequence number.
 */
export type BenchMessage = Recipient & { event: string; data: { t: number; n: number } };

/** Builds the message that every server gets for the same (recipient, t, n). */
export function message(recipient: Recipient, t: number, n: number): BenchMessage {
  return { ...recipient, event: BENCH_EVENT, data: { t, n } };
}

/** Returns the recipient for user `u<index>`. */
export function userRecipient(index: number): Recipient {
  return { user: `u${index}` };
}

/** The recipient of a broadcast: every socket, through the channel. */
export const CHANNEL_RECIPIENT: Recipient = { channel: BENCH_CHANNEL };

/** Settings that every server starts with. */
export interface PeerStartOptions {
  /**
   * Port to listen on, on 127.0.0.1. Pick it with freePort(), because patpush
   * does not report a port that it picked itself.
   */
  port: number;
  /** The portal stub's auth URL. */
  authUrl: string;
  /** The portal stub's origin, the only Origin that patpush accepts. */
  origin: string;
  /** `redis://127.0.0.1:<port>` of the benchmark's own redis-server. */
  redisUrl: string;
  /** Node.js flags for this run only, after those of BENCH_SERVER_NODE_FLAGS. */
  nodeFlags?: readonly string[];
}

/** A process to spawn: `command args...` in `cwd` with `env` added to the parent's environment. */
export interface PeerCommand {
  command: string;
  args: string[];
  cwd: string;
  env: Record<string, string>;
}

/** One server under test. */
export interface Peer {
  name: PeerName;
  protocol: PeerProtocol;
  /** Path of the WebSocket endpoint. */
  path: string;
  /** True when the server prints a JSON ready line on stdout (every peer but patpush). */
  printsReadyLine: boolean;
  /** Returns the command to start the server; prefix it with `taskset -c <cpu>` to pin it. */
  command(options: PeerStartOptions): PeerCommand;
  /** Returns the WebSocket URL, with patpush's `last` resume id when given. */
  socketUrl(port: number, options?: { host?: string; last?: string }): string;
  /** Returns the URL that returns 200 once the server is ready. */
  readyUrl(port: number): string;
  /**
   * Sends every message in one pipeline, in order, to where this server reads
   * them, and resolves when Redis has acknowledged all of them.
   */
  publish(redis: Redis, messages: readonly BenchMessage[]): Promise<void>;
}

/** Repository root, the working directory of every server. */
export const REPO_ROOT = fileURLToPath(new URL("../../", import.meta.url));

/**
 * Extra Node.js flags for every server under test, from BENCH_SERVER_NODE_FLAGS, e.g.
 * "--cpu-prof --cpu-prof-dir=/tmp/prof" to profile a scenario's servers.
 */
function serverNodeFlags(): string[] {
  return (process.env.BENCH_SERVER_NODE_FLAGS ?? "").split(" ").filter((flag) => flag !== "");
}

function peerCommand(file: string, options: PeerStartOptions): PeerCommand {
  return {
    command: process.execPath,
    args: [...serverNodeFlags(), ...(options.nodeFlags ?? []), "--import", "tsx", `bench/peers/${file}`],
    cwd: REPO_ROOT,
    env: {
      BENCH_PORT: String(options.port),
      BENCH_AUTH_URL: options.authUrl,
      BENCH_REDIS_URL: options.redisUrl,
    },
  };
}

function patpushCommand(options: PeerStartOptions): PeerCommand {
  return {
    command: process.execPath,
    args: [...serverNodeFlags(), ...(options.nodeFlags ?? []), "bin/patpush.mjs", "push-server"],
    cwd: REPO_ROOT,
    env: {
      PATPUSH_REDIS_URL: options.redisUrl,
      PATPUSH_AUTH_URL: options.authUrl,
      PATPUSH_PUSH_HOST: "127.0.0.1",
      PATPUSH_PUSH_PORT: String(options.port),
      PATPUSH_PUSH_ORIGINS: options.origin,
      PATPUSH_MAX_SOCKETS_PER_USER: "0",
      PATPUSH_MAX_SOCKETS_PER_IP: "0",
      PATPUSH_UPGRADES_PER_IP_PER_SECOND: "0",
      PATPUSH_REVALIDATE_INTERVAL_MS: "0",
      PATPUSH_LOG_LEVEL: "warn",
    },
  };
}

async function execPipeline(pipeline: ReturnType<Redis["pipeline"]>): Promise<void> {
  const results = await pipeline.exec();
  const failed = results?.find(([error]) => error !== null);
  if (failed) {
    const text = "Redis rejected a published message; check the Redis URL and its memory limit";
    throw new Error(text, { cause: failed[0] });
  }
}

function plainUrl(path: string) {
  return (port: number, options: { host?: string; last?: string } = {}): string => {
    const query = options.last === undefined ? "" : `?last=${encodeURIComponent(options.last)}`;
    return `ws://${options.host ?? "127.0.0.1"}:${port}${path}${query}`;
  };
}

/** Publishes to uws-raw and ws-ioredis: `PUBLISH bench:done <json>`. */
async function publishToChannel(redis: Redis, messages: readonly BenchMessage[]): Promise<void> {
  const pipeline = redis.pipeline();
  for (const item of messages) pipeline.publish(PEER_DONE_CHANNEL, JSON.stringify(item));
  await execPipeline(pipeline);
}

/** Returns the Socket.IO room of a recipient: `user:<id>` or `channel:<name>`. */
export function socketioRoom(recipient: Recipient): string {
  return "user" in recipient ? `user:${recipient.user}` : `channel:${recipient.channel}`;
}

const readyUrl = (port: number): string => `http://127.0.0.1:${port}/ready`;

/** What the two patpush peers share: one push server, fed through two paths. */
const PATPUSH_SERVER = {
  protocol: "plain",
  path: "/push",
  printsReadyLine: false,
  command: patpushCommand,
  socketUrl: plainUrl("/push"),
  readyUrl,
} as const;

/** The servers under test, by name. */
export const PEERS: Record<PeerName, Peer> = {
  patpush: {
    ...PATPUSH_SERVER,
    name: "patpush",
    // The durable path that the dispatcher uses: XADD to the done stream.
    // publishDoneMessage() does the same per message, after a schema check.
    async publish(redis, messages) {
      const pipeline = redis.pipeline();
      for (const item of messages) {
        pipeline.xadd(
          PATPUSH_DONE_STREAM,
          "MAXLEN",
          "~",
          PATPUSH_STREAM_MAX_LEN,
          "*",
          "message",
          JSON.stringify(item),
        );
      }
      await execPipeline(pipeline);
    },
  },
  // The same push server, fed through the fire-and-forget path: PUBLISH to the done
  // channel. Live messages are neither stored nor replayed, like the other peers' messages.
  "patpush-live": {
    ...PATPUSH_SERVER,
    name: "patpush-live",
    async publish(redis, messages) {
      const pipeline = redis.pipeline();
      for (const item of messages) pipeline.publish(PATPUSH_DONE_STREAM, JSON.stringify(item));
      await execPipeline(pipeline);
    },
  },
  "uws-raw": {
    name: "uws-raw",
    protocol: "plain",
    path: "/push",
    printsReadyLine: true,
    command: (options) => peerCommand("uws-raw.ts", options),
    socketUrl: plainUrl("/push"),
    readyUrl,
    publish: publishToChannel,
  },
  "ws-ioredis": {
    name: "ws-ioredis",
    protocol: "plain",
    path: "/push",
    printsReadyLine: true,
    command: (options) => peerCommand("ws-ioredis.ts", options),
    socketUrl: plainUrl("/push"),
    readyUrl,
    publish: publishToChannel,
  },
  socketio: {
    name: "socketio",
    protocol: "socketio",
    path: "/socket.io/",
    printsReadyLine: true,
    command: (options) => peerCommand("socketio.ts", options),
    socketUrl: (port, options = {}) =>
      `ws://${options.host ?? "127.0.0.1"}:${port}/socket.io/?EIO=4&transport=websocket`,
    readyUrl,
    // The emitter calls publish() on its client synchronously for each emit,
    // so an emitter over a pipeline batches every message in one round trip.
    async publish(redis, messages) {
      const pipeline = redis.pipeline();
      const emitter = new Emitter(pipeline);
      for (const item of messages) emitter.to(socketioRoom(item)).emit("message", item);
      await execPipeline(pipeline);
    },
  },
};

/** Polls `url` until it returns 200, and throws when `timeoutMs` passes first. */
export async function waitForReady(url: string, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastProblem = "no response";
  while (Date.now() < deadline) {
    try {
      const response = await fetch(url, { signal: AbortSignal.timeout(1_000) });
      await response.body?.cancel();
      if (response.status === 200) return;
      lastProblem = `status ${response.status}`;
    } catch (error) {
      lastProblem = error instanceof Error ? error.message : String(error);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`${url} was not ready within ${timeoutMs} ms (last: ${lastProblem})`);
}

/** Options of {@link startPeer}. */
export interface StartPeerOptions extends PeerStartOptions {
  /** CPU list for `taskset -c`. @defaultValue "0" */
  cpus?: string;
  /** @defaultValue 20000 */
  readyTimeoutMs?: number;
}

/**
 * Starts a server pinned with taskset and resolves once it is ready: after
 * its ready line when it prints one, and after `GET /ready` returns 200.
 */
export async function startPeer(name: PeerName, options: StartPeerOptions): Promise<PinnedProcess> {
  const peer = PEERS[name];
  const { command, args, cwd, env } = peer.command(options);
  const readyTimeoutMs = options.readyTimeoutMs ?? 20_000;
  const started = await spawnPinned({
    cpus: options.cpus ?? "0",
    command: [command, ...args],
    cwd,
    env: { ...process.env, ...env },
    isReady: peer.printsReadyLine ? undefined : null,
    readyTimeoutMs,
  });
  try {
    await waitForReady(peer.readyUrl(options.port), readyTimeoutMs);
  } catch (error) {
    await started.stop();
    throw new Error(`${name} did not become ready\n${started.stderrTail()}`, { cause: error });
  }
  return started;
}
