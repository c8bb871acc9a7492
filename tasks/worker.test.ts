import assert from "node:assert/strict";
import { randomBytes, randomUUID } from "node:crypto";
import { once } from "node:events";
import { after, before, describe, it } from "node:test";
import { startRedisServer, type RedisTestServer } from "../common/redis-test-server.ts";
import { BullmqQueue } from "./bullmq-queue.ts";
import { listFailedTasks } from "./failed-tasks.ts";
import { verifyTaskSignature } from "./signature.ts";
import {
  buildTask,
  captureLogger,
  startRecordingServer,
  type RecordingHandler,
  type RecordingServer,
} from "./test-server.ts";
import type { Task } from "./types.ts";
import { TaskWorker } from "./worker.ts";

const KEY = randomBytes(32).toString("hex");
const COOKIE = "cookie-value-e51a";
const AUTHENTICATOR = "authenticator-value-c3d9";
const SIGNING_SECRET = "worker-signing-secret-42";

interface Setup {
  portal: RecordingServer;
  queue: BullmqQueue;
  worker: TaskWorker;
  logs: ReturnType<typeof captureLogger>;
  task(overrides?: Partial<Task>): Task;
  addWorker(): Promise<TaskWorker>;
}

describe("task worker", { timeout: 60_000 }, () => {
  let redisServer: RedisTestServer;

  before(async () => {
    redisServer = await startRedisServer();
  });

  after(() => redisServer.stop());

  /** Starts a portal stub, a queue and a worker on a fresh key prefix. */
  async function setup(handler?: RecordingHandler): Promise<Setup> {
    const portal = await startRecordingServer(handler);
    const logs = captureLogger();
    const config = {
      allowedOrigins: [portal.origin],
      encryptionKey: KEY,
      keyPrefix: `w${randomUUID().slice(0, 8)}:`,
      backoffBaseMs: 10,
      backoffMaxMs: 20,
      concurrency: 4,
      signingSecret: SIGNING_SECRET,
    };
    const queue = new BullmqQueue({ redisUrl: redisServer.url, config, logger: logs.logger });
    const workers: TaskWorker[] = [];
    const addWorker = async () => {
      const worker = new TaskWorker({ redisUrl: redisServer.url, config, logger: logs.logger });
      workers.push(worker);
      await worker.start();
      return worker;
    };
    const worker = await addWorker();
    after(async () => {
      await Promise.all(workers.map((w) => w.close()));
      await queue.close();
      await portal.close();
    });

    const task = (overrides: Partial<Task> = {}) =>
      buildTask(`${portal.origin}/docs/7/@@make-preview`, {
        form: [
          ["size", "large"],
          ["_authenticator", AUTHENTICATOR],
        ],
        cookies: { __ac: COOKIE },
        ...overrides,
      });
    return { portal, queue, worker, logs, task, addWorker };
  }

  function respondWith(statuses: number[], headers: Record<string, string> = {}): RecordingHandler {
    return (_request, res, index) => {
      res.writeHead(statuses[Math.min(index, statuses.length - 1)] ?? 200, headers);
      res.end("");
    };
  }

  it("dispatches a task with credentials", async () => {
    const { portal, queue, worker, task } = await setup();
    const sent = task();
    const completed = once(worker, "completed");
    await queue.add(sent);
    await completed;

    assert.equal(portal.requests.length, 1);
    const request = portal.requests[0];
    assert.equal(request?.headers.cookie, `__ac=${COOKIE}`);
    assert.equal(request?.form.get("_authenticator"), AUTHENTICATOR);
    assert.equal(request?.form.get("size"), "large");
    assert.equal(request?.headers["x-task-id"], sent.id);
    assert.equal(request?.headers["x-task-attempt"], "1");
    const signature = verifyTaskSignature({
      secret: SIGNING_SECRET,
      header: String(request?.headers["x-task-signature"]),
      method: request?.method ?? "",
      url: `${portal.origin}${request?.path ?? ""}`,
      body: request?.body ?? "",
    });
    assert.deepEqual(signature, { ok: true });
  });

  it("retries a 500 then succeeds", async () => {
    const { portal, queue, worker, task } = await setup(respondWith([500, 200]));
    const completed = once(worker, "completed");
    await queue.add(task());
    await completed;

    assert.equal(portal.requests.length, 2);
    assert.deepEqual(
      portal.requests.map((r) => r.headers["x-task-attempt"]),
      ["1", "2"],
    );
  });

  it("fails after the last attempt", async () => {
    const { portal, queue, worker, task } = await setup(respondWith([503]));
    const failed = once(worker, "failed");
    await queue.add(task({ maxAttempts: 2 }));
    const [, error] = (await failed) as [string, Error];

    assert.equal(portal.requests.length, 2);
    assert.match(error.message, /^task failed after 2 attempts; last error: POST .* returned 503/);
  });

  it("waits for Retry-After", async () => {
    const handler = respondWith([429, 200], { "retry-after": "1" });
    const { portal, queue, worker, task } = await setup(handler);
    const completed = once(worker, "completed");
    await queue.add(task());
    await completed;

    assert.equal(portal.requests.length, 2);
    const [first, second] = portal.requests;
    const gapMs = (second?.receivedAt ?? 0) - (first?.receivedAt ?? 0);
    assert.ok(gapMs >= 900, `retried after ${gapMs} ms, before Retry-After`);
  });

  it("does not retry a 404", async () => {
    const { portal, queue, worker, task } = await setup(respondWith([404]));
    const failed = once(worker, "failed");
    const sent = task();
    await queue.add(sent);
    const [taskId, error] = (await failed) as [string, Error];

    assert.equal(taskId, sent.id);
    assert.equal(portal.requests.length, 1);
    assert.match(error.message, /returned 404; check the task url and form data/);
    assert.equal(await queue.queue().getJobState(sent.id), "failed");
  });

  it("does not retry a login redirect", async () => {
    const { portal, queue, worker, task } = await setup((_request, res) => {
      res.writeHead(302, { location: `${portal.origin}/login?came_from=x` });
      res.end();
    });
    const failed = once(worker, "failed");
    await queue.add(task());
    const [, error] = (await failed) as [string, Error];

    assert.equal(portal.requests.length, 1);
    assert.match(error.message, /a redirect to the login page/);
  });

  it("drops an expired task", async () => {
    const { portal, queue, worker, logs, task } = await setup();
    const now = Date.now();
    const expired = once(worker, "expired");
    await queue.add(task({ notBefore: now + 300, expiresAt: now + 100 }));
    await expired;

    assert.equal(portal.requests.length, 0);
    assert.ok(logs.messages().includes("task expired"));
  });

  it("honours a countdown", async () => {
    const { portal, queue, worker, task } = await setup();
    const sent = task({ notBefore: Date.now() + 500 });
    const completed = once(worker, "completed");
    await queue.add(sent);
    assert.equal(await queue.queue().getJobState(sent.id), "delayed");
    await completed;

    assert.equal(portal.requests.length, 1);
    const receivedAt = portal.requests[0]?.receivedAt ?? 0;
    assert.ok(receivedAt >= sent.notBefore, "dispatched before notBefore");
  });

  it("debounces a burst into one", async () => {
    const { portal, queue, worker, task } = await setup();
    const notBefore = Date.now() + 300;
    const completed = once(worker, "completed");
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) {
      ids.push(await queue.add(task({ debounceKey: "doc-7", notBefore })));
    }
    await completed;

    assert.equal(new Set(ids).size, 1);
    const counts = await queue.queue().getJobCounts("completed", "delayed", "waiting", "active");
    const jobCount = Object.values(counts).reduce((sum, count) => sum + count, 0);
    assert.equal(jobCount, 1);
    assert.equal(portal.requests.length, 1);
  });

  it("shares a queue between workers", async () => {
    const { portal, queue, worker, task, addWorker } = await setup();
    const second = await addWorker();
    const total = 50;
    const done = new Promise<void>((resolve) => {
      let count = 0;
      const onCompleted = () => {
        count += 1;
        if (count === total) resolve();
      };
      worker.on("completed", onCompleted);
      second.on("completed", onCompleted);
    });
    const sent = Array.from({ length: total }, () => task());
    await Promise.all(sent.map((t) => queue.add(t)));
    await done;

    const received = portal.requests.map((r) => String(r.headers["x-task-id"]));
    assert.equal(received.length, total);
    assert.deepEqual(new Set(received), new Set(sent.map((t) => t.id)));
  });

  it("keeps and lists failed tasks", async () => {
    const { queue, worker, task } = await setup(respondWith([400]));
    const sent = [task({ name: "first" }), task({ name: "second" })];
    const failed = new Promise<void>((resolve) => {
      let count = 0;
      worker.on("failed", () => {
        count += 1;
        if (count === sent.length) resolve();
      });
    });
    for (const t of sent) await queue.add(t);
    await failed;

    const listed = await listFailedTasks(queue.queue());
    assert.deepEqual(listed.map((t) => t.id).sort(), sent.map((t) => t.id).sort());
    for (const entry of listed) {
      assert.equal(entry.attempts, 1);
      assert.match(entry.failedReason, /returned 400/);
      assert.ok(!JSON.stringify(entry).includes(COOKIE));
    }
  });

  it("never logs credentials", async () => {
    const { queue, worker, logs, task } = await setup(respondWith([500, 401]));
    const failed = once(worker, "failed");
    await queue.add(task({ authorization: "Basic c2VjcmV0LXZhbHVl" }));
    await failed;

    const text = logs.lines.join("\n");
    assert.ok(logs.messages().includes("task retried"));
    assert.ok(logs.messages().includes("task unauthorised"));
    assert.ok(!text.includes(COOKIE));
    assert.ok(!text.includes(AUTHENTICATOR));
    assert.ok(!text.includes("c2VjcmV0LXZhbHVl"));
  });

  it("requires an encryption key", () => {
    assert.throws(
      () =>
        new TaskWorker({
          redisUrl: redisServer.url,
          config: { allowedOrigins: ["http://127.0.0.1:8480"] },
        }),
      {
        name: "ConfigError",
        code: "PATPUSH_CONFIG_INVALID",
        message: /encryptionKey: is required/,
      },
    );
  });
});
