/**
 * Hostile requests at the producer HTTP API of a push server backed by a
 * real Redis: the RedisBus done stream and a BullMQ task queue. Each case
 * asserts the documented status and error code, that the stream and the
 * queue did not grow, that the rejection was counted, and that neither the
 * response body nor any log line contains a secret the case sent.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { Queue } from "bullmq";
import { Redis } from "ioredis";
import { startRedisServer, type RedisTestServer } from "../common/redis-test-server.ts";
import { startPushServer, type PushServer } from "../server/push-server.ts";
import { RedisBus } from "../server/redis-bus.ts";
import {
  captureLogs,
  metricValue,
  startPortalStub,
  type LogCapture,
  type PortalStub,
} from "../server/test-support.ts";
import { BullmqQueue, bullmqPrefix } from "../tasks/bullmq-queue.ts";
import { startRecordingServer, type RecordingServer } from "../tasks/test-server.ts";
import {
  assertNoInternalDetail,
  assertNoSecrets,
  sendRaw,
  type HostileCase,
  type RawRequest,
} from "./support.ts";

const API_KEY = `api-key-${randomBytes(16).toString("hex")}`;
const COOKIE_SECRET = `cookie-secret-${randomBytes(8).toString("hex")}`;
const AUTHENTICATOR_SECRET = `csrf-secret-${randomBytes(8).toString("hex")}`;
const HEADER_SECRET = `header-secret-${randomBytes(8).toString("hex")}`;
const ENCRYPTION_KEY = randomBytes(32).toString("hex");
const MAX_BODY_BYTES = 4096;
const KEY_PREFIX = `sa${randomBytes(4).toString("hex")}:`;
const SECRETS = [API_KEY, COOKIE_SECRET, AUTHENTICATOR_SECRET, HEADER_SECRET, ENCRYPTION_KEY];

const SNIPPET = '<a href="http://portal.test/doc#main" data-pat-inject="target: #main"></a>';
const JSON_TYPE = { "content-type": "application/json" };
const WITH_KEY = { authorization: `Bearer ${API_KEY}`, ...JSON_TYPE };

let redis: RedisTestServer;
let admin: Redis;
let jobs: Queue;
let authPortal: PortalStub;
let taskPortal: RecordingServer;
let logs: LogCapture;
let bus: RedisBus;
let queue: BullmqQueue;
let server: PushServer;

before(async () => {
  redis = await startRedisServer();
  admin = new Redis(redis.url);
  authPortal = await startPortalStub();
  taskPortal = await startRecordingServer();
  logs = captureLogs("debug");
  const taskConfig = {
    allowedOrigins: [taskPortal.origin],
    encryptionKey: ENCRYPTION_KEY,
    keyPrefix: KEY_PREFIX,
  };
  bus = new RedisBus({ redisUrl: redis.url, keyPrefix: KEY_PREFIX, logger: logs.logger });
  queue = new BullmqQueue({ redisUrl: redis.url, config: taskConfig, logger: logs.logger });
  jobs = new Queue("tasks", { connection: { url: redis.url }, prefix: bullmqPrefix(KEY_PREFIX) });
  server = await startPushServer({
    config: {
      port: 0,
      authUrl: authPortal.authUrl,
      allowedOrigins: ["http://portal.test"],
      apiKey: API_KEY,
      maxApiBodyBytes: MAX_BODY_BYTES,
    },
    bus,
    queue,
    taskConfig,
    logger: logs.logger,
  });
});

after(async () => {
  await server.close();
  await queue.close();
  await jobs.close();
  await bus.close();
  admin.disconnect();
  await taskPortal.close();
  await authPortal.close();
  await redis.stop();
});

/** Entries in the done stream plus jobs in every state of the task queue. */
async function writtenCount(): Promise<number> {
  const streamLength = await admin.xlen(`${KEY_PREFIX}done`);
  const counts = await jobs.getJobCounts(
    "waiting",
    "delayed",
    "prioritized",
    "active",
    "completed",
    "failed",
  );
  return streamLength + Object.values(counts).reduce((sum, count) => sum + count, 0);
}

async function rejectedMetric(route: string, reason: string): Promise<number> {
  const response = await sendRaw(server.httpUrl, { method: "GET", path: "/metrics" });
  const series = `patpush_api_requests_rejected_total{route="${route}",reason="${reason}"}`;
  return metricValue(response.text, series) ?? 0;
}

function taskBody(overrides: Record<string, unknown> = {}): string {
  return JSON.stringify({
    url: `${taskPortal.origin}/docs/7/@@make-preview`,
    name: "preview",
    cookies: { __ac: COOKIE_SECRET },
    authenticator: AUTHENTICATOR_SECRET,
    headers: { "X-Trace": HEADER_SECRET },
    ...overrides,
  });
}

const validMessage = JSON.stringify({ user: "alice", html: SNIPPET });

/** The documented response: status, `code` of the body, the metric's `reason`, a problem line. */
interface Expected {
  status: number;
  code: string;
  reason: string;
  problem?: RegExp;
  header?: [name: string, value: string];
}

/** A request; a body that names the task portal is built when the case runs. */
type ApiAttack = Omit<RawRequest, "body"> & { body?: string | Buffer | (() => string) };

type ApiCase = HostileCase<ApiAttack, Expected>;

const unauthorized = (reason: string): Expected => ({
  status: 401,
  code: "PATPUSH_API_UNAUTHORIZED",
  reason,
  header: ["www-authenticate", "Bearer"],
});
const invalid = (problem: RegExp): Expected => ({
  status: 400,
  code: "PATPUSH_API_INVALID_REQUEST",
  reason: "invalid request",
  problem,
});
const invalidJson = (problem: RegExp): Expected => ({
  ...invalid(problem),
  reason: "invalid JSON",
});
const wrongMethod: Expected = {
  status: 405,
  code: "PATPUSH_API_METHOD_NOT_ALLOWED",
  reason: "method not allowed",
  header: ["allow", "POST"],
};
const wrongType: Expected = {
  status: 415,
  code: "PATPUSH_API_UNSUPPORTED_MEDIA_TYPE",
  reason: "content type not JSON",
};
const tooLarge: Expected = {
  status: 413,
  code: "PATPUSH_API_BODY_TOO_LARGE",
  reason: "body too large",
};

const CASES: ApiCase[] = [
  {
    name: "missing key",
    attack: { path: "/api/publish", headers: JSON_TYPE, body: validMessage },
    expected: unauthorized("api key missing"),
  },
  {
    name: "wrong key",
    attack: {
      path: "/api/publish",
      headers: { authorization: `Bearer ${API_KEY.slice(0, -1)}X`, ...JSON_TYPE },
      body: validMessage,
    },
    expected: unauthorized("api key invalid"),
  },
  {
    name: "key in query string",
    attack: {
      path: `/api/publish?apiKey=${API_KEY}&access_token=${API_KEY}`,
      headers: JSON_TYPE,
      body: validMessage,
    },
    expected: unauthorized("api key missing"),
  },
  {
    name: "key one character longer",
    attack: {
      path: "/api/tasks",
      headers: { authorization: `Bearer ${API_KEY}0`, ...JSON_TYPE },
      body: () => taskBody(),
    },
    expected: unauthorized("api key invalid"),
  },
  {
    name: "key prefix only",
    attack: {
      path: "/api/publish",
      headers: { authorization: `Bearer ${API_KEY.slice(0, 8)}`, ...JSON_TYPE },
      body: validMessage,
    },
    expected: unauthorized("api key invalid"),
  },
  {
    name: "Basic scheme with the key",
    attack: {
      path: "/api/publish",
      headers: {
        authorization: `Basic ${Buffer.from(`api:${API_KEY}`).toString("base64")}`,
        ...JSON_TYPE,
      },
      body: validMessage,
    },
    expected: unauthorized("api key invalid"),
  },
  {
    name: "key without a scheme",
    attack: {
      path: "/api/publish",
      headers: { authorization: API_KEY, ...JSON_TYPE },
      body: validMessage,
    },
    expected: unauthorized("api key invalid"),
  },
  {
    name: "key followed by another token",
    attack: {
      path: "/api/publish",
      headers: { authorization: `Bearer ${API_KEY} ${API_KEY}`, ...JSON_TYPE },
      body: validMessage,
    },
    expected: unauthorized("api key invalid"),
  },
  {
    name: "announced oversized body",
    attack: { path: "/api/publish", headers: WITH_KEY, body: "x".repeat(MAX_BODY_BYTES + 1) },
    expected: tooLarge,
  },
  {
    name: "chunked oversized body",
    attack: {
      path: "/api/tasks",
      headers: { ...WITH_KEY, "transfer-encoding": "chunked" },
      body: () => taskBody({ data: { blob: "x".repeat(MAX_BODY_BYTES) } }),
    },
    expected: tooLarge,
  },
  {
    name: "invalid JSON",
    attack: { path: "/api/publish", headers: WITH_KEY, body: `{"user": "alice", ` },
    expected: invalidJson(/^\(body\): must be valid JSON$/),
  },
  {
    name: "invalid UTF-8",
    attack: {
      path: "/api/publish",
      headers: WITH_KEY,
      body: Buffer.from([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x7d]),
    },
    expected: invalidJson(/^\(body\): must be UTF-8 text$/),
  },
  {
    name: "empty body",
    attack: { path: "/api/tasks", headers: WITH_KEY, body: "" },
    expected: invalidJson(/^\(body\): is empty$/),
  },
  {
    name: "JSON array, not an object",
    attack: { path: "/api/publish", headers: WITH_KEY, body: `[${validMessage}]` },
    expected: invalid(/object/),
  },
  {
    name: "JSON string, not an object",
    attack: { path: "/api/tasks", headers: WITH_KEY, body: () => JSON.stringify(taskBody()) },
    expected: invalid(/object/),
  },
  {
    name: "deeply nested JSON",
    attack: {
      path: "/api/publish",
      headers: WITH_KEY,
      body: `${"[".repeat(1500)}${"]".repeat(1500)}`,
    },
    expected: invalid(/object/),
  },
  {
    name: "unknown field in a message",
    attack: {
      path: "/api/publish",
      headers: WITH_KEY,
      body: JSON.stringify({ user: "alice", html: SNIPPET, script: "alert(1)" }),
    },
    expected: invalid(/script/),
  },
  {
    name: "__proto__ field in a message",
    attack: {
      path: "/api/publish",
      headers: WITH_KEY,
      body: `{"user": "alice", "html": "x", "__proto__": {"channel": "news"}}`,
    },
    expected: invalid(/__proto__/),
  },
  {
    name: "message to user and channel",
    attack: {
      path: "/api/publish",
      headers: WITH_KEY,
      body: JSON.stringify({ user: "alice", channel: "news", html: SNIPPET }),
    },
    expected: invalid(/exactly one recipient/),
  },
  {
    name: "unknown field in a task",
    attack: {
      path: "/api/tasks",
      headers: WITH_KEY,
      body: () => taskBody({ followRedirects: true }),
    },
    expected: invalid(/followRedirects/),
  },
  {
    name: "task URL on another host",
    attack: {
      path: "/api/tasks",
      headers: WITH_KEY,
      body: () => taskBody({ url: "http://attacker.test/steal" }),
    },
    expected: invalid(/^url: origin http:\/\/attacker\.test is not an allowed task origin$/),
  },
  {
    name: "task URL with user info",
    attack: {
      path: "/api/tasks",
      headers: WITH_KEY,
      body: () => taskBody({ url: `http://${"127.0.0.1"}@attacker.test/steal` }),
    },
    expected: invalid(/^url: must be an absolute http or https URL without a user name/),
  },
  {
    name: "task URL with javascript: scheme",
    attack: {
      path: "/api/tasks",
      headers: WITH_KEY,
      body: () => taskBody({ url: "javascript:alert(1)" }),
    },
    expected: invalid(/^url: must be an absolute http or https URL$/),
  },
  {
    name: "task header with CR LF",
    attack: {
      path: "/api/tasks",
      headers: WITH_KEY,
      body: () => taskBody({ headers: { "X-Trace": `${HEADER_SECRET}\r\nHost: attacker.test` } }),
    },
    expected: invalid(/^headers\.X-Trace: must not contain CR, LF/),
  },
  {
    name: "task Host header",
    attack: {
      path: "/api/tasks",
      headers: WITH_KEY,
      body: () => taskBody({ headers: { Host: "attacker.test" } }),
    },
    expected: invalid(/^headers\.Host: is set by the dispatcher or not allowed/),
  },
  {
    name: "task cookie not allowed",
    attack: {
      path: "/api/tasks",
      headers: WITH_KEY,
      body: () => taskBody({ cookies: { __ac: COOKIE_SECRET, admin_session: COOKIE_SECRET } }),
    },
    expected: invalid(/^cookies\.admin_session: is not an allowed cookie name$/),
  },
  {
    name: "task cookie value with ';'",
    attack: {
      path: "/api/tasks",
      headers: WITH_KEY,
      body: () => taskBody({ cookies: { __ac: `${COOKIE_SECRET}; admin=1` } }),
    },
    expected: invalid(/^cookies\.__ac: must not contain ';'/),
  },
  {
    name: "task _authenticator in data",
    attack: {
      path: "/api/tasks",
      headers: WITH_KEY,
      body: () => taskBody({ data: { _authenticator: AUTHENTICATOR_SECRET } }),
    },
    expected: invalid(/^data\._authenticator: is added by the producer/),
  },
  {
    name: "GET on publish",
    attack: { method: "GET", path: `/api/publish?user=alice&key=${API_KEY}`, headers: WITH_KEY },
    expected: wrongMethod,
  },
  {
    name: "PUT on tasks",
    attack: { method: "PUT", path: "/api/tasks", headers: WITH_KEY, body: () => taskBody() },
    expected: wrongMethod,
  },
  {
    name: "text/plain content type",
    attack: {
      path: "/api/publish",
      headers: { authorization: `Bearer ${API_KEY}`, "content-type": "text/plain" },
      body: validMessage,
    },
    expected: wrongType,
  },
  {
    name: "form content type",
    attack: {
      path: "/api/tasks",
      headers: {
        authorization: `Bearer ${API_KEY}`,
        "content-type": "application/x-www-form-urlencoded",
      },
      body: () => `url=${encodeURIComponent(`${taskPortal.origin}/x`)}&name=x`,
    },
    expected: wrongType,
  },
  {
    name: "missing content type",
    attack: {
      path: "/api/publish",
      headers: { authorization: `Bearer ${API_KEY}` },
      body: validMessage,
    },
    expected: wrongType,
  },
];

describe("producer api security", { timeout: 60_000 }, () => {
  it("accepts a valid message and task", async () => {
    // The control case: the same setup does write, so the checks below can fail.
    const before = await writtenCount();
    const message = await sendRaw(server.httpUrl, {
      path: "/api/publish",
      headers: WITH_KEY,
      body: validMessage,
    });
    assert.equal(message.status, 202, message.text);
    const task = await sendRaw(server.httpUrl, {
      path: "/api/tasks",
      headers: WITH_KEY,
      body: taskBody({ countdown: 3600 }),
    });
    assert.equal(task.status, 202, task.text);
    assert.equal(await writtenCount(), before + 2);
  });

  it("has at least 10 hostile cases", () => {
    assert.ok(CASES.length >= 10, `only ${CASES.length} cases`);
  });

  for (const { name, attack, expected } of CASES) {
    it(`rejects ${name}`, async () => {
      const route = attack.path.startsWith("/api/tasks") ? "tasks" : "publish";
      const writtenBefore = await writtenCount();
      const metricBefore = await rejectedMetric(route, expected.reason);
      const taskRequestsBefore = taskPortal.requests.length;

      const body = typeof attack.body === "function" ? attack.body() : attack.body;
      const response = await sendRaw(server.httpUrl, { ...attack, body });

      assert.equal(response.status, expected.status, response.text);
      const reply = JSON.parse(response.text) as { code?: string; problems?: string[] };
      assert.equal(reply.code, expected.code);
      if (expected.problem !== undefined) {
        const problems = reply.problems ?? [];
        assert.ok(
          problems.some((line) => expected.problem!.test(line)),
          `no problem line matches ${expected.problem}: ${JSON.stringify(problems)}`,
        );
      }
      if (expected.header !== undefined) {
        const [headerName, value] = expected.header;
        assert.equal(response.headers[headerName], value);
      }

      assert.equal(await writtenCount(), writtenBefore, "the stream or the queue grew");
      assert.equal(taskPortal.requests.length, taskRequestsBefore, "the portal got a request");
      assert.equal(await rejectedMetric(route, expected.reason), metricBefore + 1);
      assertNoSecrets(response.text, SECRETS, "the response body");
      assertNoInternalDetail(response.text, "the response body");
      assertNoSecrets(logs.text(), SECRETS, "the log lines");
    });
  }

  it("hides a Redis error", async () => {
    // A string under the stream's key makes XADD fail with a WRONGTYPE error from Redis.
    const streamKey = `${KEY_PREFIX}done`;
    const metricBefore = await rejectedMetric("publish", "internal error");
    await admin.set(streamKey, "not a stream");
    try {
      const response = await sendRaw(server.httpUrl, {
        path: "/api/publish",
        headers: WITH_KEY,
        body: validMessage,
      });

      assert.equal(response.status, 500);
      assert.deepEqual(JSON.parse(response.text), {
        error: "internal error",
        code: "PATPUSH_API_INTERNAL",
      });
      assertNoInternalDetail(response.text, "the response body");
      assert.equal(await rejectedMetric("publish", "internal error"), metricBefore + 1);
      assert.match(logs.text(), /"msg":"api request failed"/);
      assertNoSecrets(logs.text(), SECRETS, "the log lines");
    } finally {
      await admin.del(streamKey);
    }
  });
});
