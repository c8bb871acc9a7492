import assert from "node:assert/strict";
import { randomBytes, randomUUID } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { Redis } from "ioredis";
import { startRedisServer, type RedisTestServer } from "../common/redis-test-server.ts";
import { BullmqQueue } from "./bullmq-queue.ts";
import { fromJobData } from "./job-data.ts";
import { buildTask } from "./test-server.ts";

const ORIGIN = "http://127.0.0.1:8480";
const KEY = randomBytes(32);
const COOKIE = "cookie-value-4f1c";
const AUTHORIZATION = "Bearer authorization-value-9d2e";
const AUTHENTICATOR = "authenticator-value-77ab";

describe("bullmq queue", { timeout: 30_000 }, () => {
  let redisServer: RedisTestServer;
  let redis: Redis;

  before(async () => {
    redisServer = await startRedisServer();
    redis = new Redis(redisServer.url);
  });

  after(async () => {
    redis.disconnect();
    await redisServer.stop();
  });

  function openQueue(extra: Record<string, unknown> = {}) {
    const keyPrefix = `t${randomUUID().slice(0, 8)}:`;
    const queue = new BullmqQueue({
      redisUrl: redisServer.url,
      config: { allowedOrigins: [ORIGIN], encryptionKey: KEY.toString("hex"), keyPrefix, ...extra },
    });
    after(() => queue.close());
    return { queue, prefix: keyPrefix.slice(0, -1) };
  }

  function secretTask(overrides = {}) {
    return buildTask(`${ORIGIN}/docs/7/@@make-preview`, {
      form: [
        ["size", "large"],
        ["_authenticator", AUTHENTICATOR],
      ],
      cookies: { __ac: COOKIE },
      authorization: AUTHORIZATION,
      ...overrides,
    });
  }

  it("stores no credentials in clear", async () => {
    const { queue, prefix } = openQueue();
    const task = secretTask();
    const id = await queue.add(task);

    assert.equal(id, task.id);
    const hash = await redis.hgetall(`${prefix}:tasks:${task.id}`);
    const raw = JSON.stringify(hash);
    assert.ok(hash.data !== undefined, "job hash has no data field");
    assert.ok(!raw.includes(COOKIE), "cookie value in clear");
    assert.ok(!raw.includes("authorization-value-9d2e"), "Authorization value in clear");
    assert.ok(!raw.includes(AUTHENTICATOR), "authenticator in clear");
    assert.ok(!raw.includes("_authenticator"), "authenticator field name in form");
    assert.equal(hash.name, task.name);
  });

  it("stores a task that reopens whole", async () => {
    const { queue, prefix } = openQueue();
    const task = secretTask();
    await queue.add(task);

    const data = await redis.hget(`${prefix}:tasks:${task.id}`, "data");
    assert.deepEqual(fromJobData(JSON.parse(data ?? "null"), KEY), task);
  });

  it("delays a task until notBefore", async () => {
    const { queue, prefix } = openQueue();
    const task = secretTask({ notBefore: Date.now() + 60_000 });
    await queue.add(task);

    const delayed = await redis.zrange(`${prefix}:tasks:delayed`, 0, -1);
    assert.deepEqual(delayed, [task.id]);
    const state = await queue.queue().getJobState(task.id);
    assert.equal(state, "delayed");
  });

  it("sets attempts and retention", async () => {
    const { queue } = openQueue();
    const task = secretTask({ maxAttempts: 7 });
    await queue.add(task);

    const job = await queue.queue().getJob(task.id);
    assert.equal(job?.opts.attempts, 7);
    assert.deepEqual(job?.opts.removeOnFail, { count: 1000 });
    assert.deepEqual(job?.opts.removeOnComplete, { count: 100 });
  });

  it("returns the debounced task id", async () => {
    const { queue } = openQueue();
    const first = secretTask({ debounceKey: "doc-7", notBefore: Date.now() + 60_000 });
    const second = secretTask({ debounceKey: "doc-7" });

    assert.equal(await queue.add(first), first.id);
    assert.equal(await queue.add(second), first.id);
    assert.equal(await queue.queue().getJob(second.id), undefined);
  });

  it("uses the task queue name", async () => {
    const { queue, prefix } = openQueue();
    const task = secretTask({ queue: "high" });
    await queue.add(task);

    assert.equal(await redis.exists(`${prefix}:high:${task.id}`), 1);
    assert.equal(await redis.exists(`${prefix}:tasks:${task.id}`), 0);
  });

  it("rejects an invalid queue name", async () => {
    const { queue } = openQueue();
    await assert.rejects(queue.add(secretTask({ queue: "a:b" })), {
      code: "PATPUSH_TASK_INVALID",
      message: /queue: must be 1-64 letters, digits, '_' or '-'/,
    });
  });

  it("rejects a disallowed origin", async () => {
    const { queue } = openQueue();
    const task = buildTask("http://127.0.0.2:8480/x");
    await assert.rejects(queue.add(task), { code: "PATPUSH_TASK_URL_NOT_ALLOWED" });
  });

  it("rejects a forbidden header", async () => {
    const { queue } = openQueue();
    const task = secretTask();
    task.headers = { Host: "attacker.test" };
    await assert.rejects(queue.add(task), {
      code: "PATPUSH_TASK_INVALID",
      message: /is invalid: headers\.Host: is not allowed$/,
    });
  });

  it("rejects tasks after close", async () => {
    const { queue } = openQueue();
    await queue.close();
    await assert.rejects(queue.add(secretTask()), {
      code: "PATPUSH_TASK_QUEUE_CLOSED",
      message: /task queue is closed/,
    });
  });

  it("requires an encryption key", () => {
    assert.throws(
      () => new BullmqQueue({ redisUrl: redisServer.url, config: { allowedOrigins: [ORIGIN] } }),
      {
        name: "ConfigError",
        code: "PATPUSH_CONFIG_INVALID",
        message: /encryptionKey: is required/,
      },
    );
  });
});
