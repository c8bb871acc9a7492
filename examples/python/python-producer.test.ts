/**
 * Runs the Python producer module against a real push server, a real task
 * runner and a real redis-server, all started here on loopback ports.
 */
import assert from "node:assert/strict";
import { execFile, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { fileURLToPath } from "node:url";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";
import { Redis } from "ioredis";
import { startRedisServer, type RedisTestServer } from "../../common/redis-test-server.ts";
import { startPushServer, type PushServer } from "../../server/push-server.ts";
import { RedisBus } from "../../server/redis-bus.ts";
import {
  captureLogs,
  openSocket,
  startPortalStub,
  type LogCapture,
  type PortalStub,
} from "../../server/test-support.ts";
import { InProcessRunner } from "../../tasks/runner.ts";
import { startRecordingServer, type RecordingServer } from "../../tasks/test-server.ts";

const run = promisify(execFile);
const MODULE_DIR = fileURLToPath(new URL(".", import.meta.url));
const PAGE_ORIGIN = "http://portal.test";
const API_KEY = `python-test-key-${randomBytes(16).toString("hex")}`;
const SNIPPET =
  '<a href="http://portal.test/docs/7/preview#doc-7" ' +
  'data-pat-inject="target: #doc-7::element"></a>';

/**
 * Returns the first interpreter that can import redis-py: PATPUSH_PYTHON when
 * set, else `python3` from PATH, else Debian's /usr/bin/python3.
 */
function findPython(): string {
  // NOTE: a PATH python3 from pyenv or a virtualenv does not see Debian's python3-redis,
  // so /usr/bin/python3 is tried after it.
  const configured = process.env.PATPUSH_PYTHON;
  const candidates = configured ? [configured] : ["python3", "/usr/bin/python3"];
  for (const python of candidates) {
    const probe = spawnSync(python, ["-c", "import redis"], { stdio: "ignore" });
    if (probe.status === 0) return python;
  }
  throw new Error(
    `none of ${candidates.join(", ")} can import redis-py; install Debian's package ` +
      "(apt-get install python3-redis) or set PATPUSH_PYTHON to an interpreter that has it",
  );
}

let python: string;
let redis: RedisTestServer;
let admin: Redis;
let portal: PortalStub;
let worker: RecordingServer;
let runner: InProcessRunner;
let bus: RedisBus;
let server: PushServer;
let logs: LogCapture;
const prefix = `test-${randomBytes(4).toString("hex")}:`;

before(async () => {
  python = findPython();
  redis = await startRedisServer();
  admin = new Redis(redis.url);
  portal = await startPortalStub();
  worker = await startRecordingServer();
  logs = captureLogs("debug");

  const taskConfig = { allowedOrigins: [worker.origin], maxAttempts: 1 };
  runner = new InProcessRunner({ config: taskConfig, logger: logs.logger });
  bus = new RedisBus({ redisUrl: redis.url, keyPrefix: prefix, logger: logs.logger });
  await waitUntil(() => bus.ready(), "the Redis bus is ready");
  server = await startPushServer({
    config: { port: 0, authUrl: portal.authUrl, allowedOrigins: [PAGE_ORIGIN], apiKey: API_KEY },
    bus,
    queue: runner,
    taskConfig,
    logger: logs.logger,
  });
});

after(async () => {
  await server?.close();
  await bus?.close();
  await runner?.close();
  await worker?.close();
  await portal?.close();
  admin?.disconnect();
  await redis?.stop();
});

/** Polls `check` until it returns true, failing with `what` after 15 s. */
async function waitUntil(check: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 15_000;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/**
 * Runs `code` in Python after `import patpush_producer as pp`, with API_URL,
 * API_KEY, REDIS_URL and PREFIX defined, and returns the JSON it prints last.
 */
async function runPython(code: string): Promise<unknown> {
  const script = [
    "import json, sys",
    "import patpush_producer as pp",
    `API_URL = ${JSON.stringify(server.httpUrl)}`,
    `API_KEY = ${JSON.stringify(API_KEY)}`,
    `REDIS_URL = ${JSON.stringify(redis.url)}`,
    `PREFIX = ${JSON.stringify(prefix)}`,
    code,
  ].join("\n");
  const { stdout } = await run(python, ["-c", script], {
    env: { ...process.env, PYTHONPATH: MODULE_DIR, PYTHONDONTWRITEBYTECODE: "1" },
    timeout: 20_000,
  });
  const lines = stdout.trim().split("\n");
  return JSON.parse(lines.at(-1)!);
}

async function openAliceSocket() {
  const socket = await openSocket(server.url, {
    origin: PAGE_ORIGIN,
    cookie: "__ac=alice-session",
  });
  await socket.waitFor((frame) => frame.type === "welcome");
  return socket;
}

describe("python producer", { timeout: 60_000 }, () => {
  it("publishes through the API", async () => {
    const socket = await openAliceSocket();
    try {
      const result = await runPython(
        `message = {"user": "alice", "html": ${JSON.stringify(SNIPPET)}}\n` +
          "pp.publish_done_api(API_URL, API_KEY, message)\n" +
          'print(json.dumps("ok"))',
      );
      assert.equal(result, "ok");
      const frame = await socket.waitFor((f) => f.type === "message");
      assert.equal(frame.type === "message" && frame.html, SNIPPET);
    } finally {
      socket.ws.terminate();
    }
  });

  it("publishes through the Redis stream", async () => {
    const socket = await openAliceSocket();
    try {
      const entryId = await runPython(
        "import redis\n" +
          "client = redis.Redis.from_url(REDIS_URL)\n" +
          'message = {"user": "alice", "pushId": "doc-7"}\n' +
          "entry_id = pp.publish_done(client, message, prefix=PREFIX)\n" +
          "print(json.dumps(entry_id))",
      );
      const frame = await socket.waitFor((f) => f.type === "message" && f.pushId === "doc-7");
      assert.equal(frame.type, "message");

      const entries = await admin.xrange(`${prefix}done`, "-", "+");
      const entry = entries.find(([id]) => id === entryId);
      assert.ok(entry, `stream entry ${String(entryId)} not found`);
      assert.deepEqual(entry[1], ["message", '{"user":"alice","pushId":"doc-7"}']);
    } finally {
      socket.ws.terminate();
    }
  });

  it("rejects an invalid message locally", async () => {
    const result = await runPython(
      "try:\n" +
        '    pp.publish_done(None, {"user": "alice", "channel": "news", "html": "x"})\n' +
        "except ValueError as error:\n" +
        "    print(json.dumps(str(error)))",
    );
    assert.equal(result, "a done message must name exactly one recipient: user or channel");
  });

  it("enqueues a task that is dispatched", async () => {
    const count = worker.requests.length;
    const taskId = await runPython(
      "task_id = pp.enqueue_task(API_URL, API_KEY,\n" +
        `    url=${JSON.stringify(`${worker.origin}/docs/7/@@make-preview`)},\n` +
        '    name="make-preview", data={"size": "large"},\n' +
        '    cookies={"__ac": "alice-cookie-value"},\n' +
        '    authenticator="csrf-token-value", debounce_key="doc-7")\n' +
        "print(json.dumps(task_id))",
    );

    assert.equal(typeof taskId, "string");
    await worker.waitForRequests(count + 1);
    const received = worker.requests[count]!;
    assert.equal(received.path, "/docs/7/@@make-preview");
    assert.equal(received.headers["x-task-id"], taskId);
    assert.equal(received.headers["x-task-name"], "make-preview");
    assert.equal(received.headers.cookie, "__ac=alice-cookie-value");
    assert.equal(received.form.get("size"), "large");
    assert.equal(received.form.get("_authenticator"), "csrf-token-value");
  });

  it("raises PatpushApiError on rejection", async () => {
    const result = await runPython(
      "out = []\n" +
        "for key in [API_KEY, 'wrong-key']:\n" +
        "    try:\n" +
        "        pp.enqueue_task(API_URL, key, url='http://evil.test/@@x', name='x')\n" +
        "    except pp.PatpushApiError as error:\n" +
        "        out.append([error.status, error.error, error.problems])\n" +
        "print(json.dumps(out))",
    );
    assert.deepEqual(result, [
      [400, "invalid request", ["url: origin http://evil.test is not an allowed task origin"]],
      [401, "unauthorized", []],
    ]);
  });
});
