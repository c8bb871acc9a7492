/**
 * The push server under test, run as `patpush push-server` in its own
 * process, pinned to its own CPUs and reading done messages from Redis.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { request } from "undici";
import { spawnPinned, type PinnedProcess } from "../lib/processes.ts";

const PROJECT_ROOT = fileURLToPath(new URL("../../", import.meta.url));

/** Options of {@link startPushServerProcess}. */
export interface PushServerProcessOptions {
  /** CPU list for `taskset -c`, such as "0". */
  cpus: string;
  port: number;
  redisUrl: string;
  /** Auth URL the push server checks each socket's cookies against. */
  authUrl: string;
  /** Page origin that may open sockets. */
  origin: string;
  /** Time allowed until GET /health returns 200, in milliseconds. */
  readyTimeoutMs: number;
}

/** Returns true when GET `url` returns 200, false on another status or a request error. */
async function isHealthy(url: string): Promise<boolean> {
  try {
    const response = await request(url, { headersTimeout: 1000, bodyTimeout: 1000 });
    await response.body.dump();
    return response.statusCode === 200;
  } catch {
    return false;
  }
}

/**
 * Node flags for the push server, separated by spaces, from
 * BENCH_PUSH_NODE_FLAGS, such as `--cpu-prof --cpu-prof-dir=/tmp/prof` to
 * profile it. Node rejects --cpu-prof in NODE_OPTIONS.
 */
function extraNodeFlags(): string[] {
  return (process.env.BENCH_PUSH_NODE_FLAGS ?? "").split(" ").filter((flag) => flag !== "");
}

/**
 * Starts `taskset -c <cpus> node bin/patpush.mjs push-server` with the limits
 * and revalidation off, and waits until its /health returns 200.
 */
export async function startPushServerProcess(
  options: PushServerProcessOptions,
): Promise<PinnedProcess> {
  const server = await spawnPinned({
    cpus: options.cpus,
    command: [process.execPath, ...extraNodeFlags(), "bin/patpush.mjs", "push-server"],
    cwd: PROJECT_ROOT,
    isReady: null,
    env: {
      ...process.env,
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
  });

  const healthUrl = `http://127.0.0.1:${options.port}/health`;
  const deadline = Date.now() + options.readyTimeoutMs;
  while (!(await isHealthy(healthUrl))) {
    if (server.child.exitCode !== null || Date.now() > deadline) {
      await server.stop();
      throw new Error(
        `push server (pid ${server.pid}) did not return 200 on ${healthUrl} within ` +
          `${options.readyTimeoutMs} ms\n${server.stderrTail()}`,
      );
    }
    await sleep(100);
  }
  return server;
}
