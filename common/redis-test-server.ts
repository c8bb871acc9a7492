import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Redis } from "ioredis";
import { freePort } from "./free-port.ts";

/** Path of the redis-server binary; override with PATPUSH_REDIS_SERVER. */
export const REDIS_SERVER_PATH = process.env.PATPUSH_REDIS_SERVER ?? "redis-server";

/**
 * A redis-server that a test started on a free loopback port. `stop()` and
 * `kill()` end it, `start()` starts it again on the same port, so a test can
 * simulate an outage. It keeps nothing on disk unless it was started with
 * `persistent: true`.
 */
export interface RedisTestServer {
  readonly port: number;
  /** `redis://127.0.0.1:<port>`, with `:<password>@` before the host when a password is set. */
  readonly url: string;
  /** Directory of the append-only file of a persistent server, undefined otherwise. */
  readonly dataDir: string | undefined;
  start(): Promise<void>;
  /** Ends the server with SIGTERM and waits for it to exit. */
  stop(): Promise<void>;
  /** Ends the server with SIGKILL and waits for it to exit. */
  kill(): Promise<void>;
}

async function waitForPing(url: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const client = new Redis(url, {
      lazyConnect: true,
      maxRetriesPerRequest: 0,
      retryStrategy: () => null,
    });
    client.on("error", () => {});
    try {
      await client.connect();
      await client.ping();
      return;
    } catch (error) {
      if (Date.now() > deadline)
        throw new Error(`redis-server at ${url} did not respond to PING`, { cause: error });
      await new Promise((resolve) => setTimeout(resolve, 50));
    } finally {
      client.disconnect();
    }
  }
}

/** Options of {@link startRedisServer}. */
export interface RedisTestServerOptions {
  /**
   * Keeps the data across stop()/kill() and start(): the server writes an
   * append-only file with `appendfsync always`, so every write it acknowledged
   * survives even SIGKILL. The file sits in a temporary directory that is
   * removed when the process exits. @defaultValue false
   */
  persistent?: boolean;
  /** Password that clients must send with AUTH (`--requirepass`). @defaultValue none */
  password?: string;
}

/** Creates a temporary directory that is removed when the process exits. */
function temporaryDataDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "patpush-redis-"));
  process.once("exit", () => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Starts a redis-server on a free port of 127.0.0.1 and waits until it responds to PING. */
export async function startRedisServer(
  options: RedisTestServerOptions = {},
): Promise<RedisTestServer> {
  const port = await freePort();
  const auth = options.password === undefined ? "" : `:${encodeURIComponent(options.password)}@`;
  const url = `redis://${auth}127.0.0.1:${port}`;
  const dataDir = options.persistent ? temporaryDataDir() : undefined;
  let child: ChildProcess | undefined;

  const start = async (): Promise<void> => {
    if (child) return;
    const args = ["--port", String(port), "--bind", "127.0.0.1", "--save", ""];
    if (options.password !== undefined) args.push("--requirepass", options.password);
    if (dataDir === undefined) {
      args.push("--appendonly", "no");
    } else {
      args.push("--dir", dataDir, "--appendonly", "yes", "--appendfsync", "always");
    }
    child = spawn(REDIS_SERVER_PATH, args, { stdio: "ignore" });
    child.once("exit", () => {
      child = undefined;
    });
    await waitForPing(url, 10_000);
  };

  const end = async (signal: NodeJS.Signals): Promise<void> => {
    const running = child;
    if (!running) return;
    const exited = once(running, "exit");
    running.kill(signal);
    await exited;
  };

  await start();
  return { port, url, dataDir, start, stop: () => end("SIGTERM"), kill: () => end("SIGKILL") };
}
