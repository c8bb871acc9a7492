import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { randomBytes, randomUUID } from "node:crypto";
import { after, before, describe, it } from "node:test";
import type { ServerResponse } from "node:http";
import { fileURLToPath } from "node:url";
import { freePort } from "../common/free-port.ts";
import { Redis } from "ioredis";
import { createLogger } from "../common/logger.ts";
import { startRedisServer, type RedisTestServer } from "../common/redis-test-server.ts";
import { CloseCode } from "../protocol/close-codes.ts";
import { publishDoneMessage } from "../server/publish.ts";
import { openSocket, startPortalStub, type PortalStub } from "../server/test-support.ts";
import { BullmqQueue } from "../tasks/bullmq-queue.ts";
import { buildTask, startRecordingServer, type RecordingServer } from "../tasks/test-server.ts";
import type { Task } from "../tasks/types.ts";
import { TaskWorker } from "../tasks/worker.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const KEY = randomBytes(32).toString("hex");
const COOKIE = "cookie-value-a81f";
const quietLogger = createLogger({ level: "silent" });

interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Spawns the CLI with only PATH and `env`; `onStart` gets the child process. */
function runCli(
  args: string[],
  env: Record<string, string>,
  onStart?: (child: ReturnType<typeof spawn>) => void,
): Promise<RunResult> {
  const child = spawn(process.execPath, ["--import", "tsx", "cli/patpush.ts", ...args], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? "", ...env },
  });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString("utf8")));
  child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString("utf8")));
  onStart?.(child);
  return new Promise((resolve) => {
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

describe("patpush cli", { timeout: 60_000 }, () => {
  let redisServer: RedisTestServer;
  let portal: RecordingServer;

  /** Responses to /slow requests, held until a test ends them. */
  const heldResponses: ServerResponse[] = [];

  before(async () => {
    redisServer = await startRedisServer();
    portal = await startRecordingServer((request, res) => {
      if (request.path.startsWith("/slow")) {
        heldResponses.push(res);
        return;
      }
      res.writeHead(request.path.startsWith("/bad") ? 400 : 200);
      res.end("");
    });
  });

  after(async () => {
    await portal.close();
    await redisServer.stop();
  });

  /** Opens a queue on a fresh key prefix; returns it with the CLI environment for it. */
  function openQueue() {
    const keyPrefix = `c${randomUUID().slice(0, 8)}:`;
    const config = { allowedOrigins: [portal.origin], encryptionKey: KEY, keyPrefix };
    const queue = new BullmqQueue({ redisUrl: redisServer.url, config, logger: quietLogger });
    after(() => queue.close());
    const env = {
      PATPUSH_REDIS_URL: redisServer.url,
      PATPUSH_KEY_PREFIX: keyPrefix,
      PATPUSH_ENCRYPTION_KEY: KEY,
      PATPUSH_ALLOWED_ORIGINS: portal.origin,
    };
    return { queue, config, env };
  }

  function badTask(name: string): Task {
    return buildTask(`${portal.origin}/bad/${name}`, { name, cookies: { __ac: COOKIE } });
  }

  /** Runs an in-process worker until `tasks` have failed. */
  async function failTasks(config: Record<string, unknown>, queue: BullmqQueue, tasks: Task[]) {
    const worker = new TaskWorker({
      redisUrl: redisServer.url,
      config: { ...config, allowedOrigins: [portal.origin] },
      logger: quietLogger,
    });
    const failed = new Promise<void>((resolve) => {
      let count = 0;
      worker.on("failed", () => {
        count += 1;
        if (count === tasks.length) resolve();
      });
    });
    await worker.start();
    for (const task of tasks) await queue.add(task);
    await failed;
    await worker.close();
  }

  it("exits 2 on a bad environment", async () => {
    const result = await runCli(["worker"], {
      PATPUSH_REDIS_URL: "http://127.0.0.1:1",
      PATPUSH_ENCRYPTION_KEY: "0123456789abcdef-wrong",
      PATPUSH_CONCURRENCY: "many",
    });

    assert.equal(result.code, 2);
    assert.match(result.stderr, /invalid environment configuration/);
    assert.match(result.stderr, /PATPUSH_REDIS_URL: must be a redis:\/\/ or rediss:\/\/ URL/);
    assert.match(
      result.stderr,
      /PATPUSH_ENCRYPTION_KEY: must be 64 hex characters .*\(got \[redacted\]\)/,
    );
    assert.match(result.stderr, /PATPUSH_ALLOWED_ORIGINS: is required \(got missing\)/);
    assert.match(result.stderr, /PATPUSH_CONCURRENCY: /);
    assert.ok(!result.stderr.includes("0123456789abcdef-wrong"));
  });

  it("exits 2 on an unknown command", async () => {
    const result = await runCli(["tasks", "failed", "frobnicate"], {});
    assert.equal(result.code, 2);
    assert.match(result.stderr, /unknown command: patpush tasks failed frobnicate/);
    assert.match(result.stderr, /usage:/);
  });

  it("lists failed tasks without credentials", async () => {
    const { queue, config, env } = openQueue();
    const tasks = [badTask("first"), badTask("second")];
    await failTasks(config, queue, tasks);

    const result = await runCli(["tasks", "failed", "list"], env);
    assert.equal(result.code, 0, result.stderr);
    for (const task of tasks) {
      const line = result.stdout.split("\n").find((l) => l.startsWith(task.id));
      assert.ok(line !== undefined, `no line for ${task.id}`);
      assert.match(line, new RegExp(`\\t${task.name}\\t1/3\\t`));
      assert.match(line, /returned 400/);
    }
    assert.ok(!result.stdout.includes(COOKIE));

    const json = await runCli(["tasks", "failed", "list", "--json"], env);
    assert.equal(json.code, 0, json.stderr);
    const listed = JSON.parse(json.stdout) as { id: string }[];
    assert.deepEqual(listed.map((t) => t.id).sort(), tasks.map((t) => t.id).sort());
  });

  it("retries one failed task", async () => {
    const { queue, config, env } = openQueue();
    const [first, second] = [badTask("first"), badTask("second")];
    await failTasks(config, queue, [first, second]);

    const result = await runCli(["tasks", "failed", "retry", first.id], env);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout, `retried task ${first.id}\n`);
    assert.equal(await queue.queue().getJobState(first.id), "waiting");
    assert.equal(await queue.queue().getJobState(second.id), "failed");
  });

  it("rejects retry of unknown id", async () => {
    const { env } = openQueue();
    const result = await runCli(["tasks", "failed", "retry", "no-such-task"], env);
    assert.equal(result.code, 1);
    assert.match(result.stderr, /PATPUSH_TASK_NOT_FOUND: no failed task with id "no-such-task"/);
  });

  it("retries all failed tasks", async () => {
    const { queue, config, env } = openQueue();
    const tasks = [badTask("first"), badTask("second")];
    await failTasks(config, queue, tasks);

    const result = await runCli(["tasks", "failed", "retry", "--all"], env);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout, "retried 2 failed tasks\n");
    assert.equal(await queue.queue().getFailedCount(), 0);
    assert.equal(await queue.queue().getWaitingCount(), 2);
  });

  it("purges failed tasks", async () => {
    const { queue, config, env } = openQueue();
    const tasks = [badTask("first"), badTask("second")];
    await failTasks(config, queue, tasks);

    const result = await runCli(["tasks", "failed", "purge"], env);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout, "deleted 2 failed tasks\n");
    assert.equal(await queue.queue().getFailedCount(), 0);
    assert.equal(await queue.queue().getJob(tasks[0]?.id ?? ""), undefined);
  });

  it("stops on SIGTERM without Redis", async () => {
    const closedPort = await freePort();
    const env = {
      PATPUSH_REDIS_URL: `redis://127.0.0.1:${closedPort}`,
      PATPUSH_ENCRYPTION_KEY: KEY,
      PATPUSH_ALLOWED_ORIGINS: portal.origin,
    };
    const signalledAt: number[] = [];

    const result = await runCli(["worker"], env, (child) => {
      child.stdout?.on("data", (chunk: Buffer) => {
        if (signalledAt.length > 0) return;
        if (!chunk.toString("utf8").includes("ECONNREFUSED")) return;
        signalledAt.push(Date.now());
        child.kill("SIGTERM");
      });
    });

    assert.equal(signalledAt.length, 1, result.stdout);
    assert.match(result.stdout, /"msg":"shutdown requested"/);
    assert.notEqual(result.code, null, "the worker was killed instead of exiting");
  });

  it("runs a worker until SIGTERM", async () => {
    const { queue, env } = openQueue();
    const task = buildTask(`${portal.origin}/ok/cli-worker`);
    const countBefore = portal.requests.length;

    const result = await runCli(["worker"], env, (child) => {
      child.stdout?.on("data", (chunk: Buffer) => {
        if (chunk.toString("utf8").includes('"msg":"task worker started"')) void queue.add(task);
        if (chunk.toString("utf8").includes('"msg":"task dispatched"')) child.kill("SIGTERM");
      });
    });

    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /"msg":"shutdown requested"/);
    assert.match(result.stdout, /"msg":"task worker closed"/);
    const received = portal.requests.slice(countBefore).map((r) => r.headers["x-task-id"]);
    assert.deepEqual(received, [task.id]);
  });

  it("finishes a running task on SIGTERM", async () => {
    const { queue, env } = openQueue();
    const task = buildTask(`${portal.origin}/slow/cli-worker`);
    const countBefore = portal.requests.length;

    const result = await runCli(["worker"], env, (child) => {
      child.stdout?.on("data", (chunk: Buffer) => {
        const text = chunk.toString("utf8");
        if (text.includes('"msg":"task worker started"')) {
          void queue.add(task);
          void portal.waitForRequests(countBefore + 1).then(() => child.kill("SIGTERM"));
        }
        // The portal responds only after the worker has begun shutting down.
        if (text.includes('"msg":"task worker closing"')) heldResponses.shift()?.end("ok");
      });
    });

    assert.equal(result.code, 0, result.stderr);
    const messages: string[] = result.stdout.match(/"msg":"[^"]+"/g) ?? [];
    const closing = messages.indexOf('"msg":"task worker closing"');
    const dispatched = messages.indexOf('"msg":"task dispatched"');
    assert.ok(closing >= 0, "no closing log line");
    assert.ok(dispatched > closing, "task not finished after shutdown began");
    assert.equal(await queue.queue().getJobState(task.id), "completed");
  });
});

/** Upper bound of each step of a push-server test, in milliseconds. */
const STEP_LIMIT_MS = 15_000;

/** Rejects with a timeout error unless `promise` settles within `limitMs`. */
async function withinMs<T>(promise: Promise<T>, limitMs: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${limitMs} ms`)), limitMs);
  });
  try {
    return await Promise.race([promise, expired]);
  } finally {
    clearTimeout(timer);
  }
}

/** Returns the port of the first "push server listening" line in `text`, if any. */
function listeningPort(text: string): number | undefined {
  for (const line of text.split("\n")) {
    if (!line.includes('"msg":"push server listening"')) continue;
    return (JSON.parse(line) as { port: number }).port;
  }
  return undefined;
}

describe("patpush push-server", { timeout: 60_000 }, () => {
  let redisServer: RedisTestServer;
  let portal: PortalStub;

  before(async () => {
    redisServer = await startRedisServer();
    portal = await startPortalStub();
  });

  after(async () => {
    await portal.close();
    await redisServer.stop();
  });

  /** Environment of a push server on a free port that authenticates against the portal stub. */
  function pushEnv(extra: Record<string, string> = {}): Record<string, string> {
    return { PATPUSH_AUTH_URL: portal.authUrl, PATPUSH_PUSH_PORT: "0", ...extra };
  }

  /**
   * Spawns `patpush push-server`, runs `whileRunning` with its HTTP base URL
   * once it listens, then sends SIGTERM and returns the exit result.
   */
  async function runPushServer(
    env: Record<string, string>,
    whileRunning: (httpUrl: string) => Promise<void>,
  ): Promise<RunResult & { failure: unknown }> {
    let failure: unknown;
    const result = await runCli(["push-server"], env, (child) => {
      let output = "";
      let started = false;
      child.stdout?.on("data", (chunk: Buffer) => {
        output += chunk.toString("utf8");
        const port = started ? undefined : listeningPort(output);
        if (port === undefined) return;
        started = true;
        withinMs(whileRunning(`http://127.0.0.1:${port}`), STEP_LIMIT_MS)
          .catch((error: unknown) => (failure = error))
          .finally(() => {
            child.kill("SIGTERM");
            // A server that does not stop in time fails the exit-code check instead of hanging.
            setTimeout(() => child.kill("SIGKILL"), STEP_LIMIT_MS).unref();
          });
      });
    });
    return { ...result, failure };
  }

  it("exits 2 on a bad environment", async () => {
    const result = await runCli(["push-server"], {
      PATPUSH_AUTH_URL: "ftp://portal.example/auth",
      PATPUSH_PUSH_PORT: "eighty",
      PATPUSH_PUSH_ORIGINS: "https://portal.example/path",
      PATPUSH_REDIS_URL: "http://:hunter2-redis@127.0.0.1:1",
      PATPUSH_API_KEY: "short-api-secret",
      PATPUSH_RECOVERY_WINDOW_MS: "-5",
      PATPUSH_SHUTDOWN_DRAIN_MS: "soon",
      PATPUSH_LOG_LEVEL: "loud",
    });

    assert.equal(result.code, 2);
    assert.match(result.stderr, /invalid environment configuration/);
    assert.match(result.stderr, /PATPUSH_AUTH_URL: must be an absolute http or https URL/);
    assert.match(result.stderr, /PATPUSH_PUSH_PORT: must be a whole number .*\(got "eighty"\)/);
    assert.match(result.stderr, /PATPUSH_PUSH_ORIGINS: must be an origin/);
    assert.match(result.stderr, /PATPUSH_REDIS_URL: .*\(got \[redacted\]\)/);
    assert.match(
      result.stderr,
      /PATPUSH_API_KEY: must have at least 32 characters \(got \[redacted\]\)/,
    );
    assert.match(result.stderr, /PATPUSH_RECOVERY_WINDOW_MS: must be a whole number/);
    assert.match(result.stderr, /PATPUSH_SHUTDOWN_DRAIN_MS: must be a whole number/);
    assert.match(result.stderr, /PATPUSH_LOG_LEVEL: must be one of fatal, error/);
    assert.ok(!result.stderr.includes("hunter2-redis"));
    assert.ok(!result.stderr.includes("short-api-secret"));
  });

  it("requires an auth URL", async () => {
    const result = await runCli(["push-server"], {});
    assert.equal(result.code, 2);
    assert.match(result.stderr, /PATPUSH_AUTH_URL: .* \(got missing\)/);
  });

  it("exits 1 on a taken port", async () => {
    const result = await runCli(["push-server"], {
      PATPUSH_AUTH_URL: portal.authUrl,
      PATPUSH_PUSH_PORT: String(new URL(portal.origin).port),
    });
    assert.equal(result.code, 1);
    assert.match(result.stderr, /PATPUSH_LISTEN_FAILED: failed to listen on 127\.0\.0\.1:/);
  });

  it("serves sockets until SIGTERM", async () => {
    let closeCode: number | undefined;
    const result = await runPushServer(pushEnv(), async (httpUrl) => {
      const health = await fetch(`${httpUrl}/health`);
      assert.equal(health.status, 200);
      assert.deepEqual(await health.json(), { status: "ok" });

      const socket = await openSocket(`${httpUrl.replace("http:", "ws:")}/push`, {
        origin: portal.origin,
        cookie: "__ac=alice-session",
      });
      const welcome = await socket.waitFor((frame) => frame.type === "welcome");
      assert.equal(welcome.type === "welcome" && welcome.user, "alice");
      // The socket closes once the server got SIGTERM, which follows this callback.
      void socket.closed.then(({ code }) => (closeCode = code));
    });

    assert.equal(result.failure, undefined);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /"msg":"shutdown requested"/);
    assert.match(result.stdout, /"msg":"push server closed"/);
    assert.equal(closeCode, CloseCode.RESTART);
  });

  it("delivers from Redis", async () => {
    const keyPrefix = `p${randomUUID().slice(0, 8)}:`;
    const env = pushEnv({ PATPUSH_REDIS_URL: redisServer.url, PATPUSH_KEY_PREFIX: keyPrefix });
    const redis = new Redis(redisServer.url);
    after(() => redis.quit());

    const result = await runPushServer(env, async (httpUrl) => {
      const socket = await openSocket(`${httpUrl.replace("http:", "ws:")}/push`, {
        origin: portal.origin,
        cookie: "__ac=bob-session",
      });
      await socket.waitFor((frame) => frame.type === "welcome");
      const message = { user: "bob", html: "<p>done</p>", data: { n: 1 } };
      const id = await publishDoneMessage(redis, message, { keyPrefix });

      const frame = await socket.waitFor((f) => f.type === "message");
      assert.equal(frame.id, id);
      assert.deepEqual(frame.type === "message" && frame.data, { n: 1 });
    });

    assert.equal(result.failure, undefined, result.stdout);
    assert.equal(result.code, 0, result.stderr);
  });
});
