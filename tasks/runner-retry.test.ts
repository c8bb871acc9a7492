import assert from "node:assert/strict";
import { once } from "node:events";
import { describe, it, type TestContext } from "node:test";
import type { DispatchOutcome } from "./dispatch.ts";
import { DispatchError } from "./errors.ts";
import { InProcessRunner } from "./runner.ts";
import {
  buildTask,
  captureLogger,
  startRecordingServer,
  startServer,
  type RecordingHandler,
} from "./test-server.ts";
import type { Task } from "./types.ts";

/** Starts a portal stub and a runner for it; both close after the test. */
async function setUp(
  t: TestContext,
  handler?: RecordingHandler,
  config: Record<string, unknown> = {},
) {
  const portal = await startRecordingServer(handler);
  const capture = captureLogger();
  const runner = new InProcessRunner({
    config: { allowedOrigins: [portal.origin], backoffBaseMs: 10, backoffMaxMs: 50, ...config },
    logger: capture.logger,
  });
  const retries: { attempt: number; delayMs: number }[] = [];
  runner.on("retrying", (_task, attempt, delayMs) => retries.push({ attempt, delayMs }));
  t.after(async () => {
    await runner.close();
    await portal.close();
  });
  return { portal, runner, capture, retries };
}

function respondWith(statuses: number[], headers: Record<string, string> = {}): RecordingHandler {
  return (_request, res, index) => {
    res.writeHead(statuses[Math.min(index, statuses.length - 1)] ?? 500, headers);
    res.end();
  };
}

async function nextFailure(runner: InProcessRunner): Promise<[Task, DispatchOutcome]> {
  return (await once(runner, "failed")) as [Task, DispatchOutcome];
}

describe("task runner retries", { timeout: 30_000 }, () => {
  it("retries a 500 until success", async (t) => {
    const { portal, runner, retries } = await setUp(t, respondWith([500, 200]));
    const completed = once(runner, "completed");

    await runner.add(buildTask(`${portal.origin}/work`));
    const [, outcome] = (await completed) as [Task, DispatchOutcome];

    assert.equal(outcome.kind, "success");
    assert.equal(portal.requests.length, 2);
    assert.deepEqual(
      portal.requests.map((request) => request.headers["x-task-attempt"]),
      ["1", "2"],
    );
    assert.equal(retries.length, 1);
    assert.equal(retries[0]?.attempt, 2);
    assert.ok((retries[0]?.delayMs ?? -1) <= 10);
  });

  it("honours Retry-After on 429", async (t) => {
    const { portal, runner, retries } = await setUp(
      t,
      respondWith([429, 200], { "retry-after": "1" }),
    );
    const completed = once(runner, "completed");

    await runner.add(buildTask(`${portal.origin}/work`));
    await completed;

    const [first, second] = portal.requests;
    assert.ok(first);
    assert.ok(second);
    const gapMs = second.receivedAt - first.receivedAt;
    assert.ok(gapMs >= 900, `the retry came ${gapMs} ms after the 429, before Retry-After`);
    assert.equal(retries[0]?.delayMs, 1000);
  });

  it("retries after a timeout", async (t) => {
    const handler: RecordingHandler = (_request, res, index) => {
      if (index > 0) res.end("ok");
    };
    const { portal, runner, capture } = await setUp(t, handler, { requestTimeoutMs: 200 });
    const completed = once(runner, "completed");

    await runner.add(buildTask(`${portal.origin}/work`));
    await completed;

    assert.equal(portal.requests.length, 2);
    const retried = await capture.waitFor("task retried");
    assert.equal((retried.err as { code?: string }).code, "PATPUSH_DISPATCH_TIMEOUT");
  });

  it("retries a refused connection", async (t) => {
    const closed = await startServer((_req, res) => res.end());
    await closed.close();
    const runner = new InProcessRunner({
      config: { allowedOrigins: [closed.origin], backoffBaseMs: 10 },
      logger: captureLogger().logger,
    });
    t.after(() => runner.close());
    const retries: number[] = [];
    runner.on("retrying", (_task, attempt) => retries.push(attempt));

    await runner.add(buildTask(`${closed.origin}/work`, { maxAttempts: 2 }));
    const [, outcome] = await nextFailure(runner);

    assert.deepEqual(retries, [2]);
    assert.equal(outcome.kind, "failed");
    assert.equal(outcome.error?.code, "PATPUSH_DISPATCH_ATTEMPTS_EXHAUSTED");
    const cause = outcome.error?.cause;
    assert.ok(cause instanceof DispatchError);
    assert.equal(cause.code, "PATPUSH_DISPATCH_NETWORK");
  });

  it("gives up after maxAttempts", async (t) => {
    const { portal, runner, retries, capture } = await setUp(t, respondWith([500]));
    let failures = 0;
    runner.on("failed", () => failures++);

    const task = buildTask(`${portal.origin}/work`, { maxAttempts: 3 });
    await runner.add(task);
    const [failedTask, outcome] = await nextFailure(runner);

    assert.equal(failedTask.id, task.id);
    assert.equal(outcome.kind, "failed");
    assert.equal(outcome.status, 500);
    assert.equal(outcome.error?.code, "PATPUSH_DISPATCH_ATTEMPTS_EXHAUSTED");
    assert.match(
      outcome.error?.message ?? "",
      /failed after 3 attempts; last error: POST .* returned 500/,
    );
    assert.equal(portal.requests.length, 3);
    assert.deepEqual(
      retries.map((retry) => retry.attempt),
      [2, 3],
    );
    assert.equal(runner.size.waiting, 0);

    await runner.close();
    assert.equal(portal.requests.length, 3);
    assert.equal(failures, 1);
    const line = await capture.waitFor("task failed");
    assert.equal(line.level, 50);
    assert.equal(line.attempt, 3);
  });
});

describe("task runner final outcomes", { timeout: 30_000 }, () => {
  const cases: [
    label: string,
    handler: RecordingHandler,
    kind: string,
    log: string,
    level: number,
  ][] = [
    [
      "redirect to login",
      (_request, res) => {
        res.writeHead(302, { location: "/login?came_from=/work" });
        res.end();
      },
      "unauthorised",
      "task unauthorised",
      40,
    ],
    ["403", respondWith([403]), "unauthorised", "task unauthorised", 40],
    ["401", respondWith([401]), "unauthorised", "task unauthorised", 40],
    [
      "redirect elsewhere",
      (_request, res) => {
        res.writeHead(302, { location: "/other" });
        res.end();
      },
      "failed",
      "task failed",
      50,
    ],
    ["404", respondWith([404]), "failed", "task failed", 50],
    ["400", respondWith([400]), "failed", "task failed", 50],
  ];

  for (const [label, handler, kind, message, level] of cases) {
    it(`does not retry ${label}`, async (t) => {
      const { portal, runner, retries, capture } = await setUp(t, handler);

      await runner.add(buildTask(`${portal.origin}/work`, { maxAttempts: 5 }));
      const [, outcome] = await nextFailure(runner);

      assert.equal(outcome.kind, kind);
      assert.equal(portal.requests.length, 1);
      assert.equal(retries.length, 0);
      assert.equal(runner.size.waiting, 0);
      const line = await capture.waitFor(message);
      assert.equal(line.level, level);
      assert.equal(line.attempt, 1);
    });
  }
});
