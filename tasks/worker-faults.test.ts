/**
 * Redis faults under a running TaskWorker: each test starts its own
 * redis-server (no persistence) and kills it with SIGKILL, so Redis comes
 * back empty, as a non-persistent Redis does after a crash.
 */
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes, randomUUID } from "node:crypto";
import { once } from "node:events";
import type { ServerResponse } from "node:http";
import { fileURLToPath } from "node:url";
import { setTimeout as delay } from "node:timers/promises";
import { after, before, describe, it, type TestContext } from "node:test";
import { startRedisServer, type RedisTestServer } from "../common/redis-test-server.ts";
import { BullmqQueue } from "./bullmq-queue.ts";
import type { TaskConfigInput } from "./config.ts";
import {
  buildTask,
  captureLogger,
  startRecordingServer,
  type RecordingHandler,
  type RecordingServer,
} from "./test-server.ts";
import type { Task } from "./types.ts";
import { TaskWorker, type TaskWorkerOptions } from "./worker.ts";

const KEY = randomBytes(32).toString("hex");

/** Upper bound of every wait in these tests, in milliseconds. */
const WAIT_MS = 15_000;

/** Short lock settings, so a stalled job is taken over within about two seconds. */
const SHORT_LOCKS = { lockDurationMs: 1000, stalledIntervalMs: 500 };

/** Rejects with "timed out after … waiting for <what>" unless `promise` settles within WAIT_MS. */
async function within<T>(promise: Promise<T>, what: string): Promise<T> {
  const timeout = delay(WAIT_MS, undefined, { ref: false }).then(() => {
    throw new Error(`timed out after ${WAIT_MS} ms waiting for ${what}`);
  });
  return Promise.race([promise, timeout]);
}

/**
 * Resolves once the job `id` reaches `state`. TaskWorker emits "completed"
 * when the portal responded, a moment before BullMQ records it in Redis.
 */
async function waitForJobState(queue: BullmqQueue, id: string, state: string): Promise<void> {
  const reached = (async () => {
    while ((await queue.queue().getJobState(id)) !== state) {
      await delay(50, undefined, { ref: false });
    }
  })();
  await within(reached, `job ${id} to be ${state}`);
}

interface Setup {
  redis: RedisTestServer;
  portal: RecordingServer;
  logs: ReturnType<typeof captureLogger>;
  config: TaskConfigInput;
  task(): Task;
  /** Creates and starts a worker in this process; the test closes it. */
  startWorker(options?: Partial<TaskWorkerOptions>): Promise<TaskWorker>;
  /** Creates a queue; the test closes it. */
  openQueue(): BullmqQueue;
}

/**
 * Starts a redis-server and a portal stub, and creates the workers and queues
 * a test requests. Teardown closes the workers and queues while Redis runs,
 * then stops Redis and the portal.
 */
async function setup(t: TestContext, handler?: RecordingHandler): Promise<Setup> {
  const redis = await startRedisServer();
  const portal = await startRecordingServer(handler);
  const logs = captureLogger();
  const config: TaskConfigInput = {
    allowedOrigins: [portal.origin],
    encryptionKey: KEY,
    keyPrefix: `f${randomUUID().slice(0, 8)}:`,
    backoffBaseMs: 10,
    backoffMaxMs: 20,
    requestTimeoutMs: WAIT_MS,
  };
  const closers: (() => Promise<void>)[] = [];
  t.after(async () => {
    await redis.start();
    // A bounded close, so that a failed test reports instead of hanging in teardown.
    const results = await Promise.allSettled(closers.map((close) => within(close(), "close")));
    await redis.stop();
    await portal.close();
    for (const result of results) if (result.status === "rejected") throw result.reason;
  });

  return {
    redis,
    portal,
    logs,
    config,
    task: () => buildTask(`${portal.origin}/docs/7/@@make-preview`),
    async startWorker(options = {}) {
      const logger = logs.logger;
      const worker = new TaskWorker({ redisUrl: redis.url, config, logger, ...options });
      closers.push(() => worker.close());
      await worker.start();
      return worker;
    },
    openQueue() {
      const queue = new BullmqQueue({ redisUrl: redis.url, config, logger: logs.logger });
      closers.push(() => queue.close());
      return queue;
    },
  };
}

/** Returns the X-Task-Id of every request the portal received. */
function receivedIds(portal: RecordingServer): string[] {
  return portal.requests.map((request) => String(request.headers["x-task-id"]));
}

/**
 * Starts a TaskWorker in a child process and resolves once it logged that it
 * started; SIGKILL on the child simulates a worker that dies mid-task.
 */
async function spawnWorker(options: TaskWorkerOptions): Promise<ChildProcess> {
  const workerModule = new URL("./worker.ts", import.meta.url).href;
  const source = [
    `const { TaskWorker } = await import(${JSON.stringify(workerModule)});`,
    "const worker = new TaskWorker(JSON.parse(process.env.PATPUSH_TEST_WORKER_OPTIONS));",
    "await worker.start();",
  ].join("\n");
  const child = spawn(
    process.execPath,
    ["--import", "tsx", "--input-type=module", "--eval", source],
    {
      cwd: fileURLToPath(new URL("..", import.meta.url)),
      env: { ...process.env, PATPUSH_TEST_WORKER_OPTIONS: JSON.stringify(options) },
      stdio: ["ignore", "pipe", "inherit"],
    },
  );
  const started = new Promise<void>((resolve, reject) => {
    child.once("exit", (code) => reject(new Error(`worker process exited with code ${code}`)));
    child.stdout?.setEncoding("utf8");
    child.stdout?.on("data", (text: string) => {
      if (text.includes('"msg":"task worker started"')) resolve();
    });
  });
  await within(started, "the worker process to start");
  return child;
}

describe("task worker faults", { timeout: 60_000 }, () => {
  const processErrors: unknown[] = [];
  const onProcessError = (error: unknown) => processErrors.push(error);

  before(() => {
    process.on("unhandledRejection", onProcessError);
    process.on("uncaughtException", onProcessError);
  });

  after(() => {
    process.off("unhandledRejection", onProcessError);
    process.off("uncaughtException", onProcessError);
  });

  it("survives an idle Redis outage", { timeout: 25_000 }, async (t) => {
    const { redis, portal, logs, task, startWorker, openQueue } = await setup(t);
    const worker = await startWorker();
    const errorsBefore = processErrors.length;

    await redis.kill();
    const outage = await within(logs.waitFor("redis connection error"), "the outage to be logged");
    assert.equal(outage.component, "task-worker");
    await delay(2000);
    await redis.start();

    const queue = openQueue();
    const sent = task();
    const completed = once(worker, "completed");
    await queue.add(sent);
    await within(completed, "the task enqueued after the restart");

    await waitForJobState(queue, sent.id, "completed");
    assert.deepEqual(receivedIds(portal), [sent.id]);
    assert.deepEqual(processErrors.slice(errorsBefore), []);

    // ioredis retried many times during the two seconds, and the log contains one line for the outage.
    const workerLines = logs.lines
      .map((line) => JSON.parse(line) as { component?: string; msg?: string })
      .filter((entry) => entry.component === "task-worker");
    const outageLines = workerLines.filter((entry) => entry.msg === "redis connection error");
    assert.equal(outageLines.length, 1);
    assert.ok(workerLines.some((entry) => entry.msg === "redis connection restored"));
  });

  it("keeps working after losing a job", { timeout: 25_000 }, async (t) => {
    let releaseFirst: ((res: ServerResponse) => void) | undefined;
    const firstHeld = new Promise<ServerResponse>((resolve) => {
      releaseFirst = resolve;
    });
    const { redis, portal, logs, task, startWorker, openQueue } = await setup(t, (_, res, i) => {
      if (i === 0) releaseFirst?.(res);
      else res.end("ok");
    });
    const worker = await startWorker();
    const queue = openQueue();
    const errorsBefore = processErrors.length;

    const lost = task();
    const lostCompleted = once(worker, "completed");
    await queue.add(lost);
    const heldResponse = await within(firstHeld, "the first POST");
    await redis.kill();
    heldResponse.end("ok");
    // The portal did the work, so the worker reports the task as completed,
    // but BullMQ cannot record that in Redis while it is down.
    await within(lostCompleted, "the in-flight task to complete");
    await within(logs.waitFor("redis connection error"), "the outage to be logged");
    await redis.start();

    // Redis restarted without the job, so it is lost: neither completed,
    // failed nor waiting, and never POSTed again. That is the limit of a
    // Redis without persistence. With RDB or AOF enabled, Redis reloads the
    // jobs it saved before the crash. BullMQ reports the loss when it tries
    // to record the result, and the worker logs it with the job id.
    const lossLogged = (async () => {
      while (!logs.lines.some((line) => line.includes(`Missing key for job ${lost.id}`))) {
        await delay(50, undefined, { ref: false });
      }
    })();
    await within(lossLogged, "the lost job to be logged");

    const next = task();
    const nextCompleted = once(worker, "completed");
    await queue.add(next);
    await within(nextCompleted, "the task enqueued after the restart");

    await waitForJobState(queue, next.id, "completed");
    assert.deepEqual(receivedIds(portal), [lost.id, next.id]);
    assert.equal(await queue.queue().getJobState(lost.id), "unknown");
    assert.deepEqual(processErrors.slice(errorsBefore), []);
  });

  it("redelivers a stalled job", { timeout: 25_000 }, async (t) => {
    // The first POST never gets a response: its worker dies while waiting.
    const { redis, portal, logs, config, task, startWorker, openQueue } = await setup(
      t,
      (_, res, i) => {
        if (i > 0) res.end("ok");
      },
    );
    const queue = openQueue();
    const errorsBefore = processErrors.length;

    const child = await spawnWorker({ redisUrl: redis.url, config, ...SHORT_LOCKS });
    const childExited = once(child, "exit");
    t.after(() => {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    });
    const sent = task();
    await queue.add(sent);
    await within(portal.waitForRequests(1), "the first POST");
    child.kill("SIGKILL");
    await childExited;

    const rescuer = await startWorker(SHORT_LOCKS);
    const completed = once(rescuer, "completed");
    await within(completed, "another worker to take over the stalled job");

    // At-least-once: the portal received the task twice and must treat
    // X-Task-Id as the idempotency key. X-Task-Attempt counts started runs,
    // so the redelivered request reads 2.
    assert.deepEqual(receivedIds(portal), [sent.id, sent.id]);
    const attempts = portal.requests.map((request) => request.headers["x-task-attempt"]);
    assert.deepEqual(attempts, ["1", "2"]);
    await waitForJobState(queue, sent.id, "completed");
    assert.ok(logs.messages().includes("task dispatched"));
    assert.deepEqual(processErrors.slice(errorsBefore), []);
  });
});
