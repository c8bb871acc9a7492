/**
 * Hostile task options and requests at TaskProducer.enqueue, with a real
 * portal request and a BullMQ queue on a real Redis. Each case asserts the
 * documented TaskError code and problem, that no job was added, that the
 * caller's options (and their cookies object) are unchanged, and that
 * neither the error message nor any log line shows a secret.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import { after, before, describe, it } from "node:test";
import { Queue } from "bullmq";
import { request } from "undici";
import { startRedisServer, type RedisTestServer } from "../common/redis-test-server.ts";
import { BullmqQueue, bullmqPrefix } from "../tasks/bullmq-queue.ts";
import { TaskError } from "../tasks/errors.ts";
import { TaskProducer } from "../tasks/producer.ts";
import {
  captureLogger,
  startRecordingServer,
  startServer,
  type RecordingServer,
} from "../tasks/test-server.ts";
import type { TaskOptions } from "../tasks/types.ts";
import { assertNoSecrets, type HostileCase } from "./support.ts";

const COOKIE_SECRET = `cookie-secret-${randomBytes(8).toString("hex")}`;
const HEADER_SECRET = `header-secret-${randomBytes(8).toString("hex")}`;
const AUTHENTICATOR_SECRET = `csrf-secret-${randomBytes(8).toString("hex")}`;
const AUTHORIZATION_SECRET = `Bearer auth-secret-${randomBytes(8).toString("hex")}`;
const ENCRYPTION_KEY = randomBytes(32).toString("hex");
const KEY_PREFIX = `sp${randomBytes(4).toString("hex")}:`;
const SECRETS = [COOKIE_SECRET, HEADER_SECRET, AUTHENTICATOR_SECRET, AUTHORIZATION_SECRET];

type Handle = (req: IncomingMessage, res: ServerResponse) => void;

let redis: RedisTestServer;
let jobs: Queue;
let queue: BullmqQueue;
let worker: RecordingServer;
let portal: { origin: string; close(): Promise<void> };
let handle: Handle = (_req, res) => res.end();
let logs: ReturnType<typeof captureLogger>;
let producer: TaskProducer;

before(async () => {
  redis = await startRedisServer();
  worker = await startRecordingServer();
  portal = await startServer((req, res) => handle(req, res));
  logs = captureLogger();
  const config = {
    allowedOrigins: [worker.origin],
    cookieNames: ["__ac"],
    encryptionKey: ENCRYPTION_KEY,
    keyPrefix: KEY_PREFIX,
  };
  queue = new BullmqQueue({ redisUrl: redis.url, config, logger: logs.logger });
  jobs = new Queue("tasks", { connection: { url: redis.url }, prefix: bullmqPrefix(KEY_PREFIX) });
  producer = new TaskProducer({
    config,
    queue,
    authenticator: () => AUTHENTICATOR_SECRET,
    logger: logs.logger,
  });
});

after(async () => {
  await queue.close();
  await jobs.close();
  await portal.close();
  await worker.close();
  await redis.stop();
});

async function jobCount(): Promise<number> {
  const counts = await jobs.getJobCounts("waiting", "delayed", "prioritized", "active");
  return Object.values(counts).reduce((sum, count) => sum + count, 0);
}

/** Sends a request with `headers` to the portal and runs `use` with the real IncomingMessage. */
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

/** A portal view's task: the options it passes and the headers of the browser's request. */
interface ProducerAttack {
  options: () => Record<string, unknown>;
  requestHeaders?: Record<string, string>;
}

/** The TaskError code and a line of its message. */
interface Expected {
  code: string;
  message: RegExp;
}

type ProducerCase = HostileCase<ProducerAttack, Expected>;

/** Valid options with `overrides`; the cookies object is the caller's own. */
function taskOptions(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    url: "/@@make-preview",
    contextUrl: `${worker.origin}/docs/7`,
    name: "preview",
    cookies: { __ac: COOKIE_SECRET },
    headers: { "X-Trace": HEADER_SECRET },
    ...overrides,
  };
}

const URL_INVALID = "PATPUSH_TASK_URL_INVALID";
const URL_NOT_ALLOWED = "PATPUSH_TASK_URL_NOT_ALLOWED";
const INVALID = "PATPUSH_TASK_INVALID";

const CASES: ProducerCase[] = [
  {
    name: "javascript: URL",
    attack: { options: () => taskOptions({ url: "javascript:fetch('//attacker.test')" }) },
    expected: { code: URL_INVALID, message: /unsupported scheme "javascript:"/ },
  },
  {
    name: "file: URL",
    attack: { options: () => taskOptions({ url: "file:///etc/passwd" }) },
    expected: { code: URL_INVALID, message: /unsupported scheme "file:"/ },
  },
  {
    name: "data: URL",
    attack: { options: () => taskOptions({ url: "data:text/html,<script>x</script>" }) },
    expected: { code: URL_INVALID, message: /unsupported scheme "data:"/ },
  },
  {
    name: "ws: URL on the allowed host",
    attack: { options: () => taskOptions({ url: worker.origin.replace("http:", "ws:") }) },
    expected: { code: URL_INVALID, message: /unsupported scheme "ws:"/ },
  },
  {
    name: "URL on another host",
    attack: { options: () => taskOptions({ url: "http://attacker.test/collect" }) },
    expected: { code: URL_NOT_ALLOWED, message: /origin http:\/\/attacker\.test is not allowed/ },
  },
  {
    name: "URL on another port",
    attack: {
      options: () => taskOptions({ url: `${worker.origin.replace(/:\d+$/, ":1")}/x` }),
    },
    expected: { code: URL_NOT_ALLOWED, message: /origin http:\/\/127\.0\.0\.1:1 is not allowed/ },
  },
  {
    name: "https on the allowed host and port",
    attack: {
      options: () => taskOptions({ url: `${worker.origin.replace("http:", "https:")}/x` }),
    },
    expected: {
      code: URL_NOT_ALLOWED,
      message: /origin https:\/\/127\.0\.0\.1:\d+ is not allowed/,
    },
  },
  {
    name: "allowed origin as user info",
    attack: {
      options: () => taskOptions({ url: `http://${worker.origin.slice(7)}@attacker.test/x` }),
    },
    expected: { code: URL_INVALID, message: /contains a user name or password/ },
  },
  {
    name: "user info in contextUrl",
    attack: {
      options: () => taskOptions({ contextUrl: `http://admin:pw@${worker.origin.slice(7)}/doc` }),
    },
    expected: { code: URL_INVALID, message: /contextUrl .* contains a user name or password/ },
  },
  {
    name: "protocol-relative URL",
    attack: { options: () => taskOptions({ url: "//attacker.test/collect" }) },
    expected: { code: URL_INVALID, message: /is protocol-relative/ },
  },
  {
    name: "backslash host trick",
    attack: { options: () => taskOptions({ url: "http:\\\\attacker.test\\collect" }) },
    expected: { code: URL_NOT_ALLOWED, message: /origin http:\/\/attacker\.test is not allowed/ },
  },
  {
    name: "relative URL on another context",
    attack: { options: () => taskOptions({ contextUrl: "http://attacker.test/doc" }) },
    expected: { code: URL_NOT_ALLOWED, message: /origin http:\/\/attacker\.test is not allowed/ },
  },
  {
    name: "CR LF in header name",
    attack: { options: () => taskOptions({ headers: { "X-A\r\nHost": HEADER_SECRET } }) },
    expected: { code: INVALID, message: /name must be an HTTP token/ },
  },
  {
    name: "CR LF in header value",
    attack: {
      options: () => taskOptions({ headers: { "X-Trace": `${HEADER_SECRET}\r\nHost: evil` } }),
    },
    expected: { code: INVALID, message: /headers\.X-Trace: must not contain CR, LF/ },
  },
  {
    name: "NUL in header value",
    attack: { options: () => taskOptions({ headers: { "X-Trace": `${HEADER_SECRET}\0` } }) },
    expected: { code: INVALID, message: /headers\.X-Trace: must not contain CR, LF/ },
  },
  {
    name: "Host header",
    attack: { options: () => taskOptions({ headers: { Host: "attacker.test" } }) },
    expected: { code: INVALID, message: /headers\.Host: is set by the dispatcher or not allowed/ },
  },
  {
    name: "Proxy-Authorization header",
    attack: { options: () => taskOptions({ headers: { "Proxy-Authorization": HEADER_SECRET } }) },
    expected: { code: INVALID, message: /headers\.Proxy-Authorization: is set by the dispatcher/ },
  },
  {
    name: "Upgrade header",
    attack: { options: () => taskOptions({ headers: { Upgrade: "websocket" } }) },
    expected: { code: INVALID, message: /headers\.Upgrade: is set by the dispatcher/ },
  },
  {
    name: "CR LF in cookie value",
    attack: { options: () => taskOptions({ cookies: { __ac: `${COOKIE_SECRET}\r\nX-A: 1` } }) },
    expected: { code: INVALID, message: /cookies\.__ac: must not contain ';'/ },
  },
  {
    name: "';' in cookie value",
    attack: { options: () => taskOptions({ cookies: { __ac: `${COOKIE_SECRET}; admin=1` } }) },
    expected: { code: INVALID, message: /cookies\.__ac: must not contain ';'/ },
  },
  {
    name: "cookie name not allowed",
    attack: { options: () => taskOptions({ cookies: { __ac: COOKIE_SECRET, admin: "1" } }) },
    expected: { code: "PATPUSH_TASK_COOKIE_NOT_ALLOWED", message: /task cookie "admin"/ },
  },
  {
    name: "request cookie with a space",
    attack: {
      options: () => taskOptions({ cookies: undefined }),
      requestHeaders: { cookie: `__ac="${COOKIE_SECRET} x"` },
    },
    expected: { code: INVALID, message: /request cookie __ac: must not contain ';', spaces/ },
  },
  {
    name: "CR LF in task name",
    attack: { options: () => taskOptions({ name: "preview\r\nX-Admin: 1" }) },
    expected: { code: INVALID, message: /name: must not contain CR, LF/ },
  },
  {
    name: "oversized URL",
    attack: { options: () => taskOptions({ url: `/${"a".repeat(9000)}` }) },
    expected: { code: INVALID, message: /url: Too big/i },
  },
  {
    name: "oversized header value",
    attack: { options: () => taskOptions({ headers: { "X-Trace": "h".repeat(9000) } }) },
    expected: { code: INVALID, message: /headers\.X-Trace: Too big/i },
  },
  {
    name: "oversized cookie value",
    attack: { options: () => taskOptions({ cookies: { __ac: "c".repeat(5000) } }) },
    expected: { code: INVALID, message: /cookies\.__ac: Too big/i },
  },
  {
    name: "_authenticator in form data",
    attack: { options: () => taskOptions({ data: { _authenticator: AUTHENTICATOR_SECRET } }) },
    expected: { code: INVALID, message: /data\._authenticator: is added by the producer/ },
  },
  {
    name: "unknown option",
    attack: { options: () => taskOptions({ followRedirects: true }) },
    expected: { code: INVALID, message: /followRedirects/ },
  },
];

describe("task producer security", { timeout: 60_000 }, () => {
  it("enqueues valid options", async () => {
    // The control case: the same setup does add a job, so the checks below can fail.
    const before = await jobCount();
    const options = taskOptions({ countdown: 3600 });
    await withRequest({ authorization: AUTHORIZATION_SECRET }, (req) =>
      producer.enqueue(req, options as unknown as TaskOptions),
    );
    assert.equal(await jobCount(), before + 1);
  });

  it("has at least 8 hostile cases", () => {
    assert.ok(CASES.length >= 8, `only ${CASES.length} cases`);
  });

  for (const { name, attack, expected } of CASES) {
    it(`rejects ${name}`, async () => {
      const options = attack.options();
      if (options.cookies === undefined) delete options.cookies;
      const snapshot = structuredClone(options);
      const cookiesBefore = options.cookies;
      const jobsBefore = await jobCount();
      const headers = { authorization: AUTHORIZATION_SECRET, ...attack.requestHeaders };

      const error = await withRequest(headers, (req) =>
        producer.enqueue(req, options as unknown as TaskOptions).then(
          () => assert.fail("expected enqueue to throw"),
          (caught: unknown) => caught,
        ),
      );

      assert.ok(error instanceof TaskError, `expected a TaskError, got ${String(error)}`);
      assert.equal(error.code, expected.code, error.message);
      assert.match(error.message, expected.message);
      assert.equal(await jobCount(), jobsBefore, "a job was added");
      assert.deepEqual(options, snapshot, "the caller's options changed");
      assert.equal(options.cookies, cookiesBefore, "the caller's cookies object was replaced");
      assert.equal(worker.requests.length, 0, "the task URL got a request");
      assertNoSecrets(error.message, SECRETS, "the error message");
      assertNoSecrets(logs.lines.join("\n"), SECRETS, "the log lines");
    });
  }
});
