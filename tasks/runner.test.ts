import assert from "node:assert/strict";
import { once } from "node:events";
import type { ServerResponse } from "node:http";
import { describe, it, type TestContext } from "node:test";
import { request } from "undici";
import type { DispatchOutcome } from "./dispatch.ts";
import { TaskError } from "./errors.ts";
import { TaskProducer } from "./producer.ts";
import { InProcessRunner } from "./runner.ts";
import {
  buildTask,
  captureLogger,
  startRecordingServer,
  startServer,
  type RecordingHandler,
} from "./test-server.ts";
import type { Task, TaskOptions } from "./types.ts";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Starts a portal stub and a runner for it; both close after the test. */
async function setUp(
  t: TestContext,
  handler?: RecordingHandler,
  config: Record<string, unknown> = {},
) {
  const portal = await startRecordingServer(handler);
  const capture = captureLogger();
  const runner = new InProcessRunner({
    config: { allowedOrigins: [portal.origin], backoffBaseMs: 10, ...config },
    logger: capture.logger,
  });
  t.after(async () => {
    await runner.close();
    await portal.close();
  });
  return { portal, runner, capture };
}

/** Enqueues a task through a producer, from a real portal request. */
async function enqueueFromRequest(
  t: TestContext,
  runner: InProcessRunner,
  origin: string,
  options: Partial<TaskOptions>,
) {
  const producer = new TaskProducer({
    config: { allowedOrigins: [origin] },
    queue: runner,
    authenticator: () => "auth-token-1",
    logger: captureLogger().logger,
  });
  let enqueued: Promise<string> | undefined;
  const view = await startServer((req, res) => {
    enqueued = producer.enqueue(req, {
      url: "/@@work",
      contextUrl: `${origin}/doc`,
      name: "work",
      ...options,
    });
    enqueued.then(
      () => res.end("queued"),
      () => res.end("error"),
    );
  });
  t.after(() => view.close());

  const response = await request(`${view.origin}/doc`, { headers: { cookie: "__ac=s1" } });
  await response.body.dump();
  assert.ok(enqueued);
  return enqueued;
}

describe("task runner scheduling", { timeout: 30_000 }, () => {
  it("runs a due task on the next tick", async (t) => {
    const { portal, runner } = await setUp(t);
    const task = buildTask(`${portal.origin}/work`);
    const completed = once(runner, "completed");

    assert.equal(await runner.add(task), task.id);
    assert.equal(portal.requests.length, 0);

    const [doneTask, outcome] = (await completed) as [Task, DispatchOutcome];
    assert.equal(doneTask.id, task.id);
    assert.equal(outcome.kind, "success");
    assert.equal(portal.requests.length, 1);
  });

  it("delays a countdown task", async (t) => {
    const { portal, runner } = await setUp(t);
    const completed = once(runner, "completed");
    const started = Date.now();

    await enqueueFromRequest(t, runner, portal.origin, { countdown: 0.3 });
    await completed;

    const received = portal.requests[0];
    assert.ok(received);
    assert.ok(received.receivedAt >= started + 300, "the POST arrived before the countdown ended");
  });

  it("delays an eta task", async (t) => {
    const { portal, runner } = await setUp(t);
    const completed = once(runner, "completed");
    const eta = new Date(Date.now() + 300);

    await enqueueFromRequest(t, runner, portal.origin, { eta: eta.toISOString() });
    await completed;

    const received = portal.requests[0];
    assert.ok(received);
    assert.ok(received.receivedAt >= eta.getTime(), "the POST arrived before the eta");
  });

  it("never dispatches an expired task", async (t) => {
    const { portal, runner, capture } = await setUp(t);
    const task = buildTask(`${portal.origin}/work`, {
      notBefore: Date.now() + 100,
      expiresAt: Date.now() + 50,
    });
    const expired = once(runner, "expired");

    await runner.add(task);
    const [expiredTask] = (await expired) as [Task];
    assert.equal(expiredTask.id, task.id);
    assert.equal(portal.requests.length, 0);

    const line = await capture.waitFor("task expired");
    assert.equal(line.level, 30);
    assert.equal(line.taskId, task.id);
    assert.equal(line.attempt, 1);
  });

  it("expires a task between retries", async (t) => {
    const { portal, runner } = await setUp(t, (_request, res) => {
      res.writeHead(503, { "retry-after": "1" });
      res.end();
    });
    const task = buildTask(`${portal.origin}/work`, { expiresAt: Date.now() + 500 });
    const expired = once(runner, "expired");

    await runner.add(task);
    await expired;
    assert.equal(portal.requests.length, 1);
  });

  it("runs a debounced burst once", async (t) => {
    const { portal, runner } = await setUp(t);
    const debounced: string[] = [];
    runner.on("debounced", (_task, existingId) => debounced.push(existingId));
    const completed = once(runner, "completed");

    const burst = Array.from({ length: 5 }, () =>
      buildTask(`${portal.origin}/work`, { debounceKey: "doc-7", notBefore: Date.now() + 100 }),
    );
    const ids = [];
    for (const task of burst) ids.push(await runner.add(task));

    assert.deepEqual(ids, Array(5).fill(burst[0]?.id));
    assert.deepEqual(debounced, Array(4).fill(burst[0]?.id));
    await completed;
    await sleep(100);
    assert.equal(portal.requests.length, 1);
    assert.equal(portal.requests[0]?.headers["x-task-id"], burst[0]?.id);

    const later = buildTask(`${portal.origin}/work`, { debounceKey: "doc-7" });
    assert.equal(await runner.add(later), later.id);
    await portal.waitForRequests(2);
  });

  it("bounds concurrent dispatches", async (t) => {
    const heldResponses: ServerResponse[] = [];
    const { portal, runner } = await setUp(t, (_request, res) => heldResponses.push(res), {
      concurrency: 2,
    });
    let completed = 0;
    runner.on("completed", () => completed++);

    for (let i = 0; i < 4; i++) await runner.add(buildTask(`${portal.origin}/work/${i}`));
    await portal.waitForRequests(2);
    await sleep(100);
    assert.equal(portal.requests.length, 2);
    assert.deepEqual(runner.size, { waiting: 2, running: 2 });

    for (const res of heldResponses.splice(0)) res.end("ok");
    await portal.waitForRequests(4);
    for (const res of heldResponses.splice(0)) res.end("ok");
    while (completed < 4) await once(runner, "completed");
    assert.deepEqual(runner.size.waiting, 0);
  });

  it("close waits for a running task", async (t) => {
    const heldResponses: ServerResponse[] = [];
    const { portal, runner } = await setUp(t, (_request, res) => heldResponses.push(res));
    const events: string[] = [];
    runner.on("completed", () => events.push("completed"));

    await runner.add(buildTask(`${portal.origin}/work`));
    await runner.add(buildTask(`${portal.origin}/later`, { notBefore: Date.now() + 60_000 }));
    await portal.waitForRequests(1);

    const closed = runner.close().then(() => events.push("closed"));
    await sleep(100);
    assert.deepEqual(events, []);

    heldResponses[0]?.end("ok");
    await closed;
    assert.deepEqual(events, ["completed", "closed"]);
    assert.equal(portal.requests.length, 1);
    assert.deepEqual(runner.size, { waiting: 0, running: 0 });
  });

  it("rejects tasks after close", async (t) => {
    const { portal, runner } = await setUp(t);
    await runner.close();
    await assert.rejects(runner.add(buildTask(`${portal.origin}/work`)), (error: unknown) => {
      assert.ok(error instanceof TaskError);
      assert.equal(error.code, "PATPUSH_TASK_QUEUE_CLOSED");
      assert.match(error.message, /^task runner is closed; task .* was not added$/);
      return true;
    });
  });

  it("rejects an unparsable task URL", async (t) => {
    const { runner } = await setUp(t);
    await assert.rejects(runner.add(buildTask("not a url")), {
      code: "PATPUSH_TASK_URL_INVALID",
      message: /has an invalid url; pass an absolute http\(s\) URL$/,
    });
  });

  it("rejects CR LF in a cookie", async (t) => {
    const { runner, portal } = await setUp(t);
    const task = buildTask(`${portal.origin}/work`, { cookies: { __ac: "a\r\nX-Admin: 1" } });
    await assert.rejects(runner.add(task), {
      code: "PATPUSH_TASK_INVALID",
      message: /is invalid: cookies\.__ac: contains invalid characters$/,
    });
  });

  it("rejects a task for another origin", async (t) => {
    const { runner } = await setUp(t);
    await assert.rejects(runner.add(buildTask("http://evil.example/work")), {
      code: "PATPUSH_TASK_URL_NOT_ALLOWED",
      message: /origin http:\/\/evil\.example is not allowed/,
    });
  });
});
