import assert from "node:assert/strict";
import type { IncomingMessage, ServerResponse } from "node:http";
import { after, before, describe, it } from "node:test";
import { request } from "undici";
import { TaskError } from "./errors.ts";
import { TaskProducer } from "./producer.ts";
import { InProcessRunner } from "./runner.ts";
import {
  captureLogger,
  startRecordingServer,
  startServer,
  type RecordingServer,
} from "./test-server.ts";
import type { Task, TaskOptions, TaskQueue } from "./types.ts";

type Handle = (req: IncomingMessage, res: ServerResponse) => void;

describe("task producer", { timeout: 30_000 }, () => {
  let worker: RecordingServer;
  let portal: { origin: string; close(): Promise<void> };
  let handle: Handle = (_req, res) => res.end();
  let runner: InProcessRunner;
  let producer: TaskProducer;
  let config: { allowedOrigins: string[]; cookieNames: string[]; backoffBaseMs: number };

  before(async () => {
    worker = await startRecordingServer();
    portal = await startServer((req, res) => handle(req, res));
    config = { allowedOrigins: [worker.origin], cookieNames: ["__ac", "lang"], backoffBaseMs: 10 };
    runner = new InProcessRunner({ config, logger: captureLogger().logger });
    producer = new TaskProducer({
      config,
      queue: runner,
      authenticator: () => "auth-token-1",
      logger: captureLogger().logger,
    });
  });

  after(async () => {
    await runner.close();
    await portal.close();
    await worker.close();
  });

  /** Sends a request to the portal and runs `use` with the real IncomingMessage. */
  async function withRequest<T>(
    headers: Record<string, string>,
    use: (req: IncomingMessage) => Promise<T>,
  ): Promise<T> {
    let result: Promise<T> | undefined;
    handle = (req, res) => {
      result = use(req);
      result.then(
        () => res.end(),
        () => res.end(),
      );
    };
    const response = await request(`${portal.origin}/a/doc`, { headers });
    await response.body.dump();
    assert.ok(result);
    return result;
  }

  function options(extra: Partial<TaskOptions> = {}): TaskOptions {
    return { url: "/@@preview", contextUrl: `${worker.origin}/a/doc`, name: "preview", ...extra };
  }

  async function captureError(taskOptions: unknown, headers = {}): Promise<TaskError> {
    const error = await withRequest(headers, (req) =>
      producer.capture(req, taskOptions as TaskOptions).then(
        () => assert.fail("expected capture to throw"),
        (caught: unknown) => caught,
      ),
    );
    assert.ok(error instanceof TaskError, `expected a TaskError, got ${String(error)}`);
    return error;
  }

  it("captures only allowed cookies", async () => {
    const cookie = "__ac=session-1; other=zzz; __ac_extra=1; lang=de";
    const task = await withRequest({ cookie }, (req) => producer.capture(req, options()));
    assert.deepEqual(task.cookies, { __ac: "session-1", lang: "de" });
  });

  it("lets extra cookies override request ones", async () => {
    const task = await withRequest({ cookie: "__ac=session-1" }, (req) =>
      producer.capture(req, options({ cookies: { __ac: "session-2" } })),
    );
    assert.deepEqual(task.cookies, { __ac: "session-2" });
  });

  it("copies the Authorization header", async () => {
    const task = await withRequest({ authorization: "Bearer abc" }, (req) =>
      producer.capture(req, options()),
    );
    assert.equal(task.authorization, "Bearer abc");

    const without = await withRequest({}, (req) => producer.capture(req, options()));
    assert.equal("authorization" in without, false);
  });

  it("appends _authenticator after data fields", async () => {
    const data = { size: "large", tag: ["a", "b"] };
    const task = await withRequest({}, (req) => producer.capture(req, options({ data })));
    assert.deepEqual(task.form, [
      ["size", "large"],
      ["tag", "a"],
      ["tag", "b"],
      ["_authenticator", "auth-token-1"],
    ]);
  });

  it("fills in ids, URL and times", async () => {
    const started = Date.now();
    const task = await withRequest({}, (req) =>
      producer.capture(req, options({ countdown: 5, expires: 60, attempts: 2, debounceKey: "k" })),
    );
    const finished = Date.now();

    assert.match(task.id, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    assert.equal(task.url, `${worker.origin}/a/doc/@@preview`);
    assert.equal(task.name, "preview");
    assert.equal(task.maxAttempts, 2);
    assert.equal(task.debounceKey, "k");
    assert.ok(task.notBefore >= started + 5000);
    assert.ok(task.notBefore <= finished + 5000);
    assert.ok(task.expiresAt !== undefined);
    assert.ok(task.expiresAt >= started + 60_000);
    assert.ok(task.expiresAt <= finished + 60_000);
    assert.ok(task.createdAt >= started);
    assert.ok(task.createdAt <= finished);
  });

  it("takes eta and expires as dates", async () => {
    const eta = new Date(Date.now() + 30_000);
    const expires = new Date(Date.now() + 90_000).toISOString();
    const task = await withRequest({}, (req) => producer.capture(req, options({ eta, expires })));
    assert.equal(task.notBefore, eta.getTime());
    assert.equal(task.expiresAt, Date.parse(expires));
    assert.equal(task.maxAttempts, 5);
  });

  it("leaves the request headers unchanged", async () => {
    const headers = { cookie: "__ac=session-1; other=zzz", authorization: "Bearer abc" };
    let headersBefore: unknown;
    let beforeRaw: unknown;
    const task = await withRequest(headers, async (req) => {
      headersBefore = structuredClone(req.headers);
      beforeRaw = [...req.rawHeaders];
      const captured = await producer.capture(req, options());
      assert.deepEqual(req.headers, headersBefore);
      assert.deepEqual(req.rawHeaders, beforeRaw);
      return captured;
    });
    assert.equal(task.cookies.__ac, "session-1");
  });

  it("leaves the caller's objects unchanged", async () => {
    const data = Object.freeze({ size: "large", tag: Object.freeze(["a", "b"]) });
    const cookies = Object.freeze({ lang: "fr" });
    const headers = Object.freeze({ "X-Extra": "1" });
    const taskOptions = Object.freeze(
      options({ data: data as unknown as TaskOptions["data"], cookies, headers }),
    );

    const task = await withRequest({ cookie: "__ac=s" }, (req) =>
      producer.capture(req, taskOptions),
    );
    task.cookies.injected = "1";
    task.headers.injected = "1";

    assert.deepEqual(data, { size: "large", tag: ["a", "b"] });
    assert.deepEqual(cookies, { lang: "fr" });
    assert.deepEqual(headers, { "X-Extra": "1" });
    assert.deepEqual(Object.keys(taskOptions).sort(), [
      "contextUrl",
      "cookies",
      "data",
      "headers",
      "name",
      "url",
    ]);
  });

  const invalid: [label: string, options: Record<string, unknown>, message: RegExp][] = [
    ["empty name", { name: "" }, /name: must not be empty \(got ""\)/],
    ["blank name", { name: "   " }, /name: must not be empty/],
    ["negative countdown", { countdown: -1 }, /countdown: must be >= 0 seconds \(got -1\)/],
    ["unparsable eta", { eta: "tomorrow-ish" }, /eta: must be a valid Date or ISO 8601 string/],
    [
      "invalid Date eta",
      { eta: new Date(Number.NaN) },
      /eta: must be a valid Date or ISO 8601 string/,
    ],
    ["unparsable expires", { expires: "later" }, /expires: .*\(got "later"\)/],
    ["zero attempts", { attempts: 0 }, /attempts: .*\(got 0\)/],
    ["too many attempts", { attempts: 101 }, /attempts: .*\(got 101\)/],
    ["fractional attempts", { attempts: 1.5 }, /attempts: .*\(got 1\.5\)/],
    [
      "countdown with eta",
      { countdown: 1, eta: new Date() },
      /eta: countdown and eta exclude each other/,
    ],
    [
      "expiry before start",
      { countdown: 60, expires: 30 },
      /expires: is not after the task's start time/,
    ],
    ["unknown option", { countDown: 5 }, /\(options\): Unrecognized key: "countDown"/],
    ["numeric form value", { data: { size: 3 } }, /data\.size: .* \(got \[not shown\]\)/],
    [
      "authenticator in data",
      { data: { _authenticator: "x" } },
      /data\._authenticator: is added by the producer/,
    ],
    [
      "reserved header",
      { headers: { Cookie: "a=1" } },
      /headers\.Cookie: is set by the dispatcher/,
    ],
    [
      "task-name header",
      { headers: { "x-task-name": "a" } },
      /headers\.x-task-name: is set by the dispatcher/,
    ],
  ];
  for (const [label, extra, message] of invalid) {
    it(`rejects ${label}`, async () => {
      const error = await captureError(options(extra as Partial<TaskOptions>));
      assert.equal(error.code, "PATPUSH_TASK_INVALID");
      assert.match(error.message, /^invalid task options:\n {2}/);
      assert.match(error.message, message);
    });
  }

  it("rejects a cookie not allow-listed", async () => {
    const error = await captureError(options({ cookies: { session: "cookie-value-123" } }));
    assert.equal(error.code, "PATPUSH_TASK_COOKIE_NOT_ALLOWED");
    assert.equal(
      error.message,
      'task cookie "session" is not in the allowed cookie names (__ac, lang); ' +
        "add it to the tasks cookieNames option or leave it out",
    );
  });

  it("copies the queue name", async () => {
    const task = await withRequest({}, (req) => producer.capture(req, options({ queue: "high" })));
    assert.equal(task.queue, "high");
  });

  it("rejects an invalid queue name", async () => {
    const error = await captureError(options({ queue: "tasks:high" }));
    assert.equal(error.code, "PATPUSH_TASK_INVALID");
    assert.match(
      error.message,
      /queue: must be 1-64 letters, digits, '_' or '-' \(got "tasks:high"\)/,
    );
  });

  it("rejects a signature header", async () => {
    const error = await captureError(options({ headers: { "X-Task-Signature": "t=1,v1=00" } }));
    assert.equal(error.code, "PATPUSH_TASK_INVALID");
    assert.match(error.message, /headers\.X-Task-Signature: is set by the dispatcher/);
  });

  it("rejects headers with CRLF", async () => {
    const error = await captureError(options({ headers: { "X-Note": "a\r\nSet-Cookie: x=1" } }));
    assert.equal(error.code, "PATPUSH_TASK_INVALID");
    assert.match(
      error.message,
      /headers\.X-Note: must not contain CR, LF or other control characters/,
    );
    assert.doesNotMatch(error.message, /Set-Cookie/);
  });

  it("rejects invalid header and cookie names", async () => {
    const headerError = await captureError(options({ headers: { "X Bad": "1" } }));
    assert.equal(headerError.code, "PATPUSH_TASK_INVALID");
    assert.match(
      headerError.message,
      /headers\.X Bad: name must be an HTTP token \(got \[not shown\]\)/,
    );

    const cookieError = await captureError(options({ cookies: { __ac: "a;b" } }));
    assert.equal(cookieError.code, "PATPUSH_TASK_INVALID");
    assert.match(cookieError.message, /cookies\.__ac: must not contain ';'/);
    assert.doesNotMatch(cookieError.message, /a;b/);
  });

  it("rejects a URL outside allowedOrigins", async () => {
    const error = await captureError(options({ url: "http://evil.example/x" }));
    assert.equal(error.code, "PATPUSH_TASK_URL_NOT_ALLOWED");
    assert.match(error.message, /origin http:\/\/evil\.example is not allowed/);
  });

  it("rejects a failing authenticator", async () => {
    for (const [authenticator, message] of [
      [() => Promise.reject(new Error("no key")), /the authenticator function threw/],
      [() => "", /returned an empty string/],
    ] as const) {
      const failing = new TaskProducer({ config, queue: runner, authenticator });
      const error = await withRequest({}, (req) =>
        failing.capture(req, options()).then(
          () => assert.fail("expected capture to throw"),
          (caught: unknown) => caught as TaskError,
        ),
      );
      assert.equal(error.code, "PATPUSH_TASK_AUTHENTICATOR_FAILED");
      assert.match(error.message, message);
    }
  });

  it("enqueues and dispatches at once", async () => {
    const countBefore = worker.requests.length;
    const id = await withRequest({ cookie: "__ac=s1" }, (req) =>
      producer.enqueue(req, options({ data: { size: "small" } })),
    );
    await worker.waitForRequests(countBefore + 1);
    const received = worker.requests[countBefore];
    assert.ok(received);
    assert.equal(received.headers["x-task-id"], id);
    assert.equal(received.form.get("size"), "small");
  });
});

/** A queue that records the response state at each add, then hands the task to the runner. */
class ObservedQueue implements TaskQueue {
  readonly added: { task: Task; responseFinished: boolean | undefined }[] = [];
  response: ServerResponse | undefined;

  constructor(private readonly inner: TaskQueue) {}

  add(task: Task): Promise<string> {
    this.added.push({ task, responseFinished: this.response?.writableFinished });
    return this.inner.add(task);
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}

describe("enqueue after response", { timeout: 30_000 }, () => {
  it("adds the task after the response finished", async (t) => {
    const order: string[] = [];
    const worker = await startRecordingServer((_request, res) => {
      order.push("task POST received");
      res.end("ok");
    });
    t.after(() => worker.close());

    const config = { allowedOrigins: [worker.origin] };
    const queue = new ObservedQueue(
      new InProcessRunner({ config, logger: captureLogger().logger }),
    );
    t.after(() => queue.close());
    const producer = new TaskProducer({ config, queue, authenticator: () => "a" });

    let finishResponse = (): void => {};
    const portal = await startServer(async (req, res) => {
      queue.response = res;
      await producer.enqueueAfterResponse(req, res, {
        url: `${worker.origin}/@@work`,
        name: "work",
      });
      res.write("started\n");
      finishResponse = () => res.end("done\n");
    });
    t.after(() => portal.close());

    const response = await request(`${portal.origin}/a/doc`);
    const chunks = response.body[Symbol.asyncIterator]();
    const first = await chunks.next();
    assert.equal(String(first.value), "started\n");

    // A producer that queued at capture time would have dispatched by now.
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.equal(queue.added.length, 0);
    assert.equal(worker.requests.length, 0);

    finishResponse();
    let rest = "";
    for (let next = await chunks.next(); !next.done; next = await chunks.next())
      rest += String(next.value);
    order.push("portal response received");
    assert.equal(rest, "done\n");

    await worker.waitForRequests(1);
    assert.deepEqual(order, ["portal response received", "task POST received"]);
    assert.equal(queue.added.length, 1);
    assert.equal(queue.added[0]?.responseFinished, true);
  });

  it("drops the task when the response fails", async (t) => {
    const worker = await startRecordingServer();
    t.after(() => worker.close());

    const capture = captureLogger();
    const config = { allowedOrigins: [worker.origin] };
    const queue = new ObservedQueue(new InProcessRunner({ config, logger: capture.logger }));
    t.after(() => queue.close());
    const producer = new TaskProducer({
      config,
      queue,
      authenticator: () => "a",
      logger: capture.logger,
    });

    let captured: Task | undefined;
    const portal = await startServer(async (req, res) => {
      captured = await producer.enqueueAfterResponse(req, res, {
        url: `${worker.origin}/@@work`,
        name: "work",
      });
      res.write("started\n");
    });
    t.after(() => portal.close());

    const response = await request(`${portal.origin}/a/doc`);
    const first = await response.body[Symbol.asyncIterator]().next();
    assert.equal(String(first.value), "started\n");
    response.body.destroy();

    const dropped = await capture.waitFor("task dropped");
    assert.equal(dropped.taskId, captured?.id);
    assert.equal(dropped.level, 40);
    assert.equal(queue.added.length, 0);
    assert.equal(worker.requests.length, 0);
  });

  it("rejects bad options before responding", async (t) => {
    const config = { allowedOrigins: ["http://127.0.0.1:1"] };
    const runner = new InProcessRunner({ config, logger: captureLogger().logger });
    t.after(() => runner.close());
    const producer = new TaskProducer({ config, queue: runner, authenticator: () => "a" });

    const portal = await startServer(async (req, res) => {
      try {
        await producer.enqueueAfterResponse(req, res, {
          url: "http://evil.example/x",
          name: "work",
        });
        res.end("queued");
      } catch (error) {
        res.statusCode = 400;
        res.end((error as TaskError).code);
      }
    });
    t.after(() => portal.close());

    const response = await request(`${portal.origin}/a/doc`);
    assert.equal(response.statusCode, 400);
    assert.equal(await response.body.text(), "PATPUSH_TASK_URL_NOT_ALLOWED");
  });
});
