/**
 * The `patpush` command: runs a push server or a task worker, and manages
 * the queue's failed tasks. Configuration comes from PATPUSH_* environment
 * variables. Exit codes: 0 done, 1 failed, 2 invalid usage or configuration.
 */
import { Queue } from "bullmq";
import { Redis } from "ioredis";
import { ConfigError } from "../common/config.ts";
import { createLogger } from "../common/logger.ts";
import { PatpushError } from "../protocol/errors.ts";
import { EmbeddedBus, type Bus } from "../server/bus.ts";
import { startPushServer, type PushServer } from "../server/push-server.ts";
import { RedisBus } from "../server/redis-bus.ts";
import { bullmqPrefix } from "../tasks/bullmq-queue.ts";
import {
  listFailedTasks,
  purgeFailedTasks,
  retryAllFailedTasks,
  retryFailedTask,
} from "../tasks/failed-tasks.ts";
import { TaskWorker } from "../tasks/worker.ts";
import { parsePushServerEnv, parseQueueEnv, parseWorkerEnv } from "./env.ts";

export const USAGE = `usage:
  patpush push-server                run a push server until SIGTERM or SIGINT
  patpush worker                     dispatch tasks from the Redis queue until SIGTERM or SIGINT
  patpush tasks failed list [--json] list failed tasks: id, name, attempts, failure reason
  patpush tasks failed retry <id>    move one failed task back to the queue
  patpush tasks failed retry --all   move every failed task back to the queue
  patpush tasks failed purge         delete every failed task

push-server environment:
  PATPUSH_AUTH_URL               portal URL that authenticates a session (required)
  PATPUSH_PUSH_HOST              interface to listen on (default 127.0.0.1)
  PATPUSH_PUSH_PORT              TCP port, 0 for a free one (default 8481)
  PATPUSH_PUSH_PATH              WebSocket path (default /push)
  PATPUSH_PUSH_ORIGINS           comma-separated origins allowed to open sockets
                                 (default the origin of PATPUSH_AUTH_URL)
  PATPUSH_COOKIE_NAMES           comma-separated cookies sent to the auth URL (default __ac)
  PATPUSH_REDIS_URL              Redis URL of the done stream; unset, messages stay in
                                 this process
  PATPUSH_KEY_PREFIX             Redis key prefix (default "patpush:")
  PATPUSH_API_KEY                Bearer key of the producer HTTP API, at least 32 characters
                                 (default unset: the API is off)
  PATPUSH_RECOVERY_WINDOW_MS     how far back a reconnecting socket gets missed messages,
                                 in milliseconds (default 300000)
  PATPUSH_RECOVERY_MAX_MESSAGES  messages kept for recovery per user or channel (default 100)
  PATPUSH_SHUTDOWN_DRAIN_MS      wait for sockets to close at shutdown, in milliseconds
                                 (default 10000)
  PATPUSH_LOG_LEVEL              pino log level (default "info")

worker and tasks environment:
  PATPUSH_REDIS_URL        Redis URL (required)
  PATPUSH_QUEUE            queue name (default "tasks")
  PATPUSH_KEY_PREFIX       Redis key prefix (default "patpush:")
  PATPUSH_ENCRYPTION_KEY   credentials key: 64 hex characters or base64 of 32 bytes
                           (worker, required)
  PATPUSH_ALLOWED_ORIGINS  comma-separated origins tasks may be sent to (worker, required)
  PATPUSH_SIGNING_SECRET   HMAC secret for X-Task-Signature (worker, optional)
  PATPUSH_CONCURRENCY      tasks dispatched at once (worker, default 8)
  PATPUSH_LOG_LEVEL        pino log level (default "info")
`;

/** Error for a command line that does not match USAGE. */
class UsageError extends Error {}

async function runWorker(env: NodeJS.ProcessEnv): Promise<number> {
  const settings = parseWorkerEnv(env);
  const logger = createLogger();
  const worker = new TaskWorker({
    redisUrl: settings.PATPUSH_REDIS_URL,
    queue: settings.PATPUSH_QUEUE,
    logger,
    config: {
      allowedOrigins: settings.PATPUSH_ALLOWED_ORIGINS,
      encryptionKey: settings.PATPUSH_ENCRYPTION_KEY,
      signingSecret: settings.PATPUSH_SIGNING_SECRET,
      concurrency: settings.PATPUSH_CONCURRENCY,
      keyPrefix: settings.PATPUSH_KEY_PREFIX,
    },
  });

  const stopped = new Promise<NodeJS.Signals>((resolve) => {
    process.once("SIGTERM", () => resolve("SIGTERM"));
    process.once("SIGINT", () => resolve("SIGINT"));
  });
  // start() waits for Redis, so a signal during an outage must not wait for it.
  const started = worker.start().then(() => true);
  const startedFirst = await Promise.race([started, stopped.then(() => false)]);
  const signal = await stopped;
  logger.info({ signal }, "shutdown requested");

  // A worker that never reached Redis has no job to finish, and closing it
  // would wait for a connection that may never come.
  const limitMs = startedFirst ? SHUTDOWN_LIMIT_MS : UNSTARTED_SHUTDOWN_LIMIT_MS;
  const closed = await settlesWithin(worker.close(), limitMs);
  if (!closed) {
    logger.warn({ limitMs }, "shutdown timed out; exiting without a clean close");
    process.exit(1);
  }
  return 0;
}

/**
 * Runs a push server until SIGTERM or SIGINT, then closes it: every socket
 * gets close code 4000 and up to shutdownDrainMs to go. Returns 0 after a
 * clean close, and exits with 1 when the close takes longer than that plus
 * a margin.
 */
async function runPushServer(env: NodeJS.ProcessEnv): Promise<number> {
  const settings = parsePushServerEnv(env);
  const logger = createLogger({ level: settings.logLevel });
  const { config } = settings;
  const bus: Bus =
    config.redisUrl === undefined
      ? new EmbeddedBus({ logger })
      : new RedisBus({
          redisUrl: config.redisUrl,
          keyPrefix: config.keyPrefix,
          streamMaxLen: config.streamMaxLen,
          recoveryWindowMs: config.recoveryWindowMs,
          logger,
        });

  const stopped = new Promise<NodeJS.Signals>((resolve) => {
    process.once("SIGTERM", () => resolve("SIGTERM"));
    process.once("SIGINT", () => resolve("SIGINT"));
  });
  let server: PushServer;
  try {
    server = await startPushServer({ config, bus, logger });
  } catch (error) {
    await bus.close();
    throw error;
  }

  const signal = await stopped;
  logger.info({ signal, connections: server.connectionCount() }, "shutdown requested");
  const limitMs = config.shutdownDrainMs + SHUTDOWN_MARGIN_MS;
  const closed = await settlesWithin(server.close(), limitMs);
  await settlesWithin(bus.close(), SHUTDOWN_MARGIN_MS);
  if (!closed) {
    logger.warn({ limitMs }, "shutdown timed out; exiting without a clean close");
    process.exit(1);
  }
  return 0;
}

/** Time allowed beyond the drain for the push server and its bus to close. */
const SHUTDOWN_MARGIN_MS = 5000;

/** Maximum wait for running tasks at shutdown: the default request timeout plus a margin. */
const SHUTDOWN_LIMIT_MS = 35_000;
/** Maximum wait at shutdown for a worker that never connected to Redis. */
const UNSTARTED_SHUTDOWN_LIMIT_MS = 2_000;

/** Resolves true when `promise` settles within `limitMs`, false otherwise. */
async function settlesWithin(promise: Promise<unknown>, limitMs: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), limitMs);
  });
  try {
    return await Promise.race([promise.then(() => true, () => true), expired]);
  } finally {
    clearTimeout(timer);
  }
}

async function withQueue<T>(env: NodeJS.ProcessEnv, run: (queue: Queue) => Promise<T>): Promise<T> {
  const settings = parseQueueEnv(env);
  // A command fails after a few reconnects instead of waiting for Redis forever.
  const connection = new Redis(settings.PATPUSH_REDIS_URL, {
    maxRetriesPerRequest: 1,
    retryStrategy: (times) => (times > 3 ? null : 200),
  });
  connection.on("error", () => {});
  const queue = new Queue(settings.PATPUSH_QUEUE, {
    connection,
    prefix: bullmqPrefix(settings.PATPUSH_KEY_PREFIX),
  });
  queue.on("error", () => {});
  try {
    return await run(queue);
  } finally {
    await queue.close().catch(() => undefined);
    connection.disconnect();
  }
}

async function runFailedCommand(args: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const [action, ...rest] = args;
  const out = (line: string) => process.stdout.write(`${line}\n`);

  if (action === "list" && (rest.length === 0 || (rest.length === 1 && rest[0] === "--json"))) {
    const tasks = await withQueue(env, (queue) => listFailedTasks(queue));
    if (rest[0] === "--json") out(JSON.stringify(tasks));
    else if (tasks.length === 0) out("no failed tasks");
    for (const task of rest[0] === "--json" ? [] : tasks) {
      const attempts = `${task.attempts}/${task.maxAttempts}`;
      out(`${task.id}\t${task.name}\t${attempts}\t${task.failedAt ?? "-"}\t${task.failedReason}`);
    }
    return 0;
  }
  if (action === "retry" && rest.length === 1 && rest[0] === "--all") {
    const count = await withQueue(env, (queue) => retryAllFailedTasks(queue));
    out(`retried ${count} failed tasks`);
    return 0;
  }
  const id = rest[0];
  if (action === "retry" && rest.length === 1 && id !== undefined && !id.startsWith("-")) {
    await withQueue(env, (queue) => retryFailedTask(queue, id));
    out(`retried task ${id}`);
    return 0;
  }
  if (action === "purge" && rest.length === 0) {
    const count = await withQueue(env, (queue) => purgeFailedTasks(queue));
    out(`deleted ${count} failed tasks`);
    return 0;
  }
  throw new UsageError(`unknown command: patpush tasks failed ${args.join(" ")}`.trim());
}

/** Runs the command in `args` (without node and script path) and returns the exit code. */
export async function main(args: string[], env: NodeJS.ProcessEnv): Promise<number> {
  try {
    if (args[0] === "--help" || args[0] === "-h" || args[0] === "help") {
      process.stdout.write(USAGE);
      return 0;
    }
    if (args[0] === "push-server" && args.length === 1) return await runPushServer(env);
    if (args[0] === "worker" && args.length === 1) return await runWorker(env);
    if (args[0] === "tasks" && args[1] === "failed") {
      return await runFailedCommand(args.slice(2), env);
    }
    const command = `patpush ${args.join(" ")}`;
    throw new UsageError(args.length === 0 ? "missing command" : `unknown command: ${command}`);
  } catch (error) {
    if (error instanceof UsageError) {
      process.stderr.write(`patpush: ${error.message}\n${USAGE}`);
      return 2;
    }
    if (error instanceof ConfigError) {
      process.stderr.write(`patpush: ${error.message}\n`);
      return 2;
    }
    const code = error instanceof PatpushError ? `${error.code}: ` : "";
    const message = error instanceof Error ? error.message : String(error);
    process.stderr.write(`patpush: ${code}${message}\n`);
    return 1;
  }
}

process.exitCode = await main(process.argv.slice(2), process.env);
