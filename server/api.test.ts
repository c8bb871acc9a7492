import assert from "node:assert/strict";
import { Readable } from "node:stream";
import { after, before, describe, it } from "node:test";
import { request } from "undici";
import { isMessageId } from "../protocol/message-id.ts";
import type { DoneMessage } from "../protocol/message.ts";
import { InProcessRunner } from "../tasks/runner.ts";
import { startRecordingServer, type RecordingServer } from "../tasks/test-server.ts";
import { EmbeddedBus } from "./bus.ts";
import { parseServerConfig } from "./config.ts";
import { startPushServer, type PushServer } from "./push-server.ts";
import {
  captureLogs,
  metricValue,
  openSocket,
  startPortalStub,
  type LogCapture,
  type PortalStub,
} from "./test-support.ts";

const PAGE_ORIGIN = "http://portal.test";
const API_KEY = "test-api-key-0123456789abcdef0123456789";
const MAX_BODY_BYTES = 4096;
const SNIPPET =
  '<a href="http://portal.test/docs/7/preview#doc-7" ' +
  'data-pat-inject="target: #doc-7::element"></a>';

let portal: PortalStub;
let worker: RecordingServer;
let runner: InProcessRunner;
let logs: LogCapture;
let bus: EmbeddedBus;
let server: PushServer;
const published: DoneMessage[] = [];

before(async () => {
  portal = await startPortalStub();
  worker = await startRecordingServer();
  logs = captureLogs("debug");
  const taskConfig = { allowedOrigins: [worker.origin], maxAttempts: 1 };
  runner = new InProcessRunner({ config: taskConfig, logger: logs.logger });
  bus = new EmbeddedBus({ logger: logs.logger });
  bus.subscribe((event) => {
    if (event.type === "message") published.push(event.message);
  });
  server = await startPushServer({
    config: {
      port: 0,
      authUrl: portal.authUrl,
      allowedOrigins: [PAGE_ORIGIN],
      apiKey: API_KEY,
      maxApiBodyBytes: MAX_BODY_BYTES,
    },
    bus,
    queue: runner,
    taskConfig,
    logger: logs.logger,
  });
});

after(async () => {
  await server.close();
  await bus.close();
  await runner.close();
  await worker.close();
  await portal.close();
});

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Record<string, unknown>;
}

interface PostOptions {
  headers?: Record<string, string>;
  body?: string | Buffer | Readable;
  baseUrl?: string;
}

/** POSTs JSON with the API key, unless `options.headers` replaces the headers. */
async function post(path: string, json: unknown, options: PostOptions = {}): Promise<Reply> {
  const headers = options.headers ?? {
    authorization: `Bearer ${API_KEY}`,
    "content-type": "application/json",
  };
  const response = await request(`${options.baseUrl ?? server.httpUrl}${path}`, {
    method: "POST",
    headers,
    body: options.body ?? JSON.stringify(json),
  });
  const text = await response.body.text();
  return {
    status: response.statusCode,
    headers: response.headers,
    body: JSON.parse(text) as Record<string, unknown>,
  };
}

function taskBody(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    url: `${worker.origin}/docs/7/@@make-preview`,
    name: "preview",
    data: { size: "large" },
    cookies: { __ac: "alice-session-value" },
    authenticator: "csrf-token-value",
    ...overrides,
  };
}

/** Enqueues a valid task and waits for its POST, so earlier requests must have arrived by then. */
async function enqueueMarkerTask(): Promise<void> {
  const before = worker.requests.length;
  const reply = await post("/api/tasks", taskBody({ name: "marker" }));
  assert.equal(reply.status, 202);
  await worker.waitForRequests(before + 1);
}

describe("producer api publish", { timeout: 30_000 }, () => {
  it("delivers to the named user", async () => {
    const socket = await openSocket(server.url, {
      origin: PAGE_ORIGIN,
      cookie: "__ac=alice-session",
    });
    try {
      await socket.waitFor((frame) => frame.type === "welcome");
      const reply = await post("/api/publish", { user: "alice", html: SNIPPET });

      assert.equal(reply.status, 202);
      assert.deepEqual(Object.keys(reply.body), ["ok", "id"]);
      assert.equal(reply.body.ok, true);
      assert.ok(isMessageId(reply.body.id), `id ${String(reply.body.id)}`);
      const frame = await socket.waitFor((f) => f.type === "message");
      assert.equal(frame.type === "message" && frame.html, SNIPPET);
      assert.equal(frame.id, reply.body.id, "the frame carries the id the API returned");
    } finally {
      socket.ws.terminate();
    }
  });

  it("lists schema problems with 400", async () => {
    const count = published.length;
    const reply = await post("/api/publish", { user: "alice", channel: "news", html: 5 });

    assert.equal(reply.status, 400);
    assert.equal(reply.body.error, "invalid request");
    const problems = reply.body.problems as string[];
    assert.ok(problems.some((line) => line.startsWith("html: ")), problems.join("\n"));
    assert.equal(published.length, count);
  });

  it("rejects invalid JSON with 400", async () => {
    for (const body of ["{not json", ""]) {
      const reply = await post("/api/publish", undefined, {
        body,
        headers: { authorization: `Bearer ${API_KEY}`, "content-type": "application/json" },
      });
      assert.equal(reply.status, 400, body);
      assert.equal(reply.body.error, "invalid request");
      assert.match((reply.body.problems as string[])[0]!, /^\(body\): /);
    }
  });

  it("rejects other content types with 415", async () => {
    const count = published.length;
    const reply = await post("/api/publish", undefined, {
      body: JSON.stringify({ user: "alice", html: SNIPPET }),
      headers: { authorization: `Bearer ${API_KEY}`, "content-type": "text/plain" },
    });

    assert.equal(reply.status, 415);
    assert.match(String(reply.body.error), /application\/json/);
    assert.equal(published.length, count);
  });

  it("rejects a large announced body", async () => {
    const count = published.length;
    const html = "x".repeat(MAX_BODY_BYTES);
    const reply = await post("/api/publish", { user: "alice", html });

    assert.equal(reply.status, 413);
    assert.match(String(reply.body.error), /4096 bytes/);
    assert.equal(published.length, count);
  });

  it("rejects a large chunked body", async () => {
    const count = published.length;
    const json = JSON.stringify({ user: "alice", html: "x".repeat(MAX_BODY_BYTES) });
    const chunks = [json.slice(0, 1000), json.slice(1000, 3000), json.slice(3000)];
    const reply = await post("/api/publish", undefined, {
      body: Readable.from(chunks.map((chunk) => Buffer.from(chunk))),
    });

    assert.equal(reply.status, 413);
    assert.equal(published.length, count);
  });

  it("accepts a chunked body within limits", async () => {
    const count = published.length;
    const json = JSON.stringify({ user: "bob", event: "doc-ready" });
    const reply = await post("/api/publish", undefined, {
      body: Readable.from([Buffer.from(json.slice(0, 10)), Buffer.from(json.slice(10))]),
    });

    assert.equal(reply.status, 202);
    assert.equal(published.length, count + 1);
    assert.deepEqual(published.at(-1), { user: "bob", event: "doc-ready" });
  });
});

describe("producer api keys", { timeout: 30_000 }, () => {
  const wrongHeaders: Record<string, Record<string, string>> = {
    "no key": { "content-type": "application/json" },
    "wrong key": { authorization: "Bearer wrong-key", "content-type": "application/json" },
    "key with suffix": {
      authorization: `Bearer ${API_KEY}x`,
      "content-type": "application/json",
    },
    "other scheme": { authorization: `Basic ${API_KEY}`, "content-type": "application/json" },
  };

  it("rejects publish without the key", async () => {
    const count = published.length;
    for (const [label, headers] of Object.entries(wrongHeaders)) {
      const reply = await post("/api/publish", { user: "alice", html: SNIPPET }, { headers });
      assert.equal(reply.status, 401, label);
      const expected = { error: "unauthorized", code: "PATPUSH_API_UNAUTHORIZED" };
      assert.deepEqual(reply.body, expected, label);
      assert.equal(reply.headers["www-authenticate"], "Bearer", label);
    }
    assert.equal(published.length, count);
  });

  it("rejects tasks without the key", async () => {
    const count = worker.requests.length;
    for (const [label, headers] of Object.entries(wrongHeaders)) {
      const reply = await post("/api/tasks", taskBody({ name: "unauthorised" }), { headers });
      assert.equal(reply.status, 401, label);
      assert.equal(reply.headers["www-authenticate"], "Bearer", label);
    }

    await enqueueMarkerTask();
    assert.equal(worker.requests.length, count + 1);
    assert.equal(worker.requests.at(-1)!.headers["x-task-name"], "marker");
  });

  it("accepts a lower-case scheme", async () => {
    const reply = await post("/api/publish", { user: "alice", html: SNIPPET }, {
      headers: { authorization: `bearer ${API_KEY}`, "content-type": "application/json" },
    });
    assert.equal(reply.status, 202);
  });
});

describe("producer api tasks", { timeout: 30_000 }, () => {
  it("dispatches the enqueued task", async () => {
    const count = worker.requests.length;
    const reply = await post(
      "/api/tasks",
      taskBody({ headers: { "X-Trace": "trace-1" }, authorization: "Basic dXNlcjpwdw==" }),
    );

    assert.equal(reply.status, 202);
    assert.equal(typeof reply.body.id, "string");
    await worker.waitForRequests(count + 1);
    const received = worker.requests[count]!;
    assert.equal(received.method, "POST");
    assert.equal(received.path, "/docs/7/@@make-preview");
    assert.equal(received.form.get("size"), "large");
    assert.equal(received.form.get("_authenticator"), "csrf-token-value");
    assert.equal(received.headers.cookie, "__ac=alice-session-value");
    assert.equal(received.headers.authorization, "Basic dXNlcjpwdw==");
    assert.equal(received.headers["x-task-name"], "preview");
    assert.equal(received.headers["x-task-id"], reply.body.id);
    assert.equal(received.headers["x-trace"], "trace-1");
  });

  it("names a disallowed URL origin", async () => {
    const reply = await post("/api/tasks", taskBody({ url: "http://evil.test/@@x" }));

    assert.equal(reply.status, 400);
    assert.deepEqual(reply.body.problems, [
      "url: origin http://evil.test is not an allowed task origin",
    ]);
  });

  it("lists schema problems with 400", async () => {
    const count = worker.requests.length;
    const cases: [Record<string, unknown>, string][] = [
      [{ url: "/docs/7/@@x" }, "url: must be an absolute http or https URL"],
      [{ contextUrl: worker.origin }, '(body): Unrecognized key: "contextUrl"'],
      [{ cookies: { tracking: "1" } }, "cookies.tracking: is not an allowed cookie name"],
      [{ headers: { "X-A": "a\r\nB: c" } }, "headers.X-A: must not contain CR, LF"],
      [{ cookies: { __ac: "a\r\nb" } }, "cookies.__ac: must not contain"],
      [{ authorization: "Basic a\r\nX: y" }, "authorization: must not contain CR, LF"],
      [{ name: "" }, "name: must not be empty"],
      [{ countdown: -1 }, "countdown: must be >= 0 seconds"],
      [{ headers: { Cookie: "__ac=x" } }, "headers.Cookie: is set by the dispatcher"],
    ];
    for (const [overrides, expected] of cases) {
      const reply = await post("/api/tasks", taskBody(overrides));
      const problems = (reply.body.problems ?? []) as string[];
      assert.equal(reply.status, 400, expected);
      assert.equal(reply.body.error, "invalid request", expected);
      assert.ok(
        problems.some((line) => line.startsWith(expected)),
        `expected "${expected}" in:\n${problems.join("\n")}`,
      );
    }

    await enqueueMarkerTask();
    assert.equal(worker.requests.length, count + 1);
  });

  it("never logs keys or cookie values", async () => {
    await post("/api/tasks", taskBody({ name: "logged", countdown: 0 }));
    await post("/api/publish", { user: "alice", html: SNIPPET }, {
      headers: { authorization: "Bearer leaked-wrong-key", "content-type": "application/json" },
    });
    await enqueueMarkerTask();

    const text = logs.text();
    assert.match(text, /api request rejected/);
    for (const secret of [API_KEY, "leaked-wrong-key", "alice-session-value", "csrf-token-value"]) {
      assert.equal(text.includes(secret), false, `log contains ${secret}`);
    }
  });
});

describe("producer api rejections", { timeout: 30_000 }, () => {
  async function methodRejections(): Promise<number> {
    const response = await request(`${server.httpUrl}/metrics`);
    const series = 'patpush_api_requests_rejected_total{route="tasks",reason="method not allowed"}';
    return metricValue(await response.body.text(), series) ?? 0;
  }

  const methodLines = () =>
    logs
      .records()
      .filter((entry) => entry.msg === "api request rejected" && entry.status === 405);

  it("answers other methods with 405", async () => {
    const response = await request(`${server.httpUrl}/api/tasks`, { method: "DELETE" });
    const body = (await response.body.json()) as Record<string, unknown>;
    assert.equal(response.statusCode, 405);
    assert.equal(response.headers.allow, "POST");
    assert.equal(body.code, "PATPUSH_API_METHOD_NOT_ALLOWED");
  });

  it("logs one line per reason and client", async () => {
    const countBefore = await methodRejections();
    const linesBefore = methodLines().length;
    for (let i = 0; i < 5; i += 1) {
      const response = await request(`${server.httpUrl}/api/tasks`, { method: "PATCH" });
      await response.body.dump();
      assert.equal(response.statusCode, 405);
    }

    assert.equal(await methodRejections(), countBefore + 5);
    // The DELETE before these requests was logged, so all five fall in its interval.
    assert.equal(methodLines().length, linesBefore);
  });
});

describe("producer api disabled", { timeout: 30_000 }, () => {
  it("returns 404 without an apiKey", async () => {
    const plainBus = new EmbeddedBus();
    const plain = await startPushServer({
      config: { port: 0, authUrl: portal.authUrl },
      bus: plainBus,
      logger: captureLogs("info").logger,
    });
    try {
      for (const path of ["/api/publish", "/api/tasks"]) {
        const message = { user: "alice", html: SNIPPET };
        const reply = await post(path, message, { baseUrl: plain.httpUrl });
        assert.equal(reply.status, 404, path);
        assert.deepEqual(reply.body, { error: "not found" }, path);
      }
    } finally {
      await plain.close();
      await plainBus.close();
    }
  });

  it("returns 503 for tasks without a queue", async () => {
    const plainBus = new EmbeddedBus();
    const plain = await startPushServer({
      config: { port: 0, authUrl: portal.authUrl, apiKey: API_KEY },
      bus: plainBus,
      logger: captureLogs("info").logger,
    });
    try {
      const reply = await post("/api/tasks", taskBody(), { baseUrl: plain.httpUrl });
      assert.equal(reply.status, 503);
      const expected = { error: "no task queue configured", code: "PATPUSH_API_NO_QUEUE" };
      assert.deepEqual(reply.body, expected);
    } finally {
      await plain.close();
      await plainBus.close();
    }
  });

  it("requires taskConfig with a queue", async () => {
    const plainBus = new EmbeddedBus();
    await assert.rejects(
      startPushServer({
        config: { port: 0, authUrl: portal.authUrl, apiKey: API_KEY },
        bus: plainBus,
        queue: runner,
        logger: captureLogs("info").logger,
      }),
      (error: Error & { code?: string }) => {
        assert.equal(error.code, "PATPUSH_CONFIG_INVALID");
        assert.match(error.message, /taskConfig: is required with a queue/);
        return true;
      },
    );
    await plainBus.close();
  });
});

describe("producer api config", () => {
  it("redacts a rejected apiKey", () => {
    assert.throws(
      () => parseServerConfig({ authUrl: "http://127.0.0.1:8480/auth", apiKey: "short-secret" }),
      (error: Error & { code?: string }) => {
        assert.equal(error.code, "PATPUSH_CONFIG_INVALID");
        assert.match(
          error.message,
          /apiKey: must have at least 32 characters \(got \[redacted\]\)/,
        );
        assert.equal(error.message.includes("short-secret"), false);
        return true;
      },
    );
  });

  it("bounds maxApiBodyBytes", () => {
    const authUrl = "http://127.0.0.1:8480/auth";
    assert.equal(parseServerConfig({ authUrl }).maxApiBodyBytes, 256 * 1024);
    assert.throws(
      () => parseServerConfig({ authUrl, maxApiBodyBytes: 10 }),
      /maxApiBodyBytes: Too small: expected number to be >=1024 \(got 10\)/,
    );
  });
});
