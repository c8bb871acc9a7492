/**
 * Hostile portal responses and tampered queue data at the task dispatcher:
 * a TaskWorker on a real BullMQ queue in a real redis-server, a real portal
 * HTTP server and a second server on another origin that stands for an
 * attacker. Each case asserts the documented failure reason, that the job
 * failed for good with only the expected attempts, that the attacker's
 * server got no request, and that no log line shows a credential.
 */
import assert from "node:assert/strict";
import { randomBytes, randomUUID } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { Queue } from "bullmq";
import { startRedisServer, type RedisTestServer } from "../common/redis-test-server.ts";
import { metricValue } from "../server/test-support.ts";
import { BACKOFF_TYPE, BullmqQueue, bullmqPrefix } from "../tasks/bullmq-queue.ts";
import { ConfigError } from "../common/config.ts";
import { sealCredentials } from "../tasks/crypto.ts";
import { toJobData, type TaskJobData } from "../tasks/job-data.ts";
import {
  buildTask,
  captureLogger,
  startRecordingServer,
  type RecordingHandler,
  type RecordingServer,
} from "../tasks/test-server.ts";
import type { Task } from "../tasks/types.ts";
import { TaskWorker } from "../tasks/worker.ts";
import { assertNoSecrets, waitUntil, type HostileCase } from "./support.ts";

const ENCRYPTION_KEY = randomBytes(32).toString("hex");
const KEY = Buffer.from(ENCRYPTION_KEY, "hex");
const SIGNING_SECRET = `signing-secret-${randomBytes(8).toString("hex")}`;
const COOKIE_SECRET = `cookie-secret-${randomBytes(8).toString("hex")}`;
const AUTHENTICATOR_SECRET = `csrf-secret-${randomBytes(8).toString("hex")}`;
const AUTHORIZATION_SECRET = `Bearer auth-secret-${randomBytes(8).toString("hex")}`;
const SECRETS = [
  ENCRYPTION_KEY,
  SIGNING_SECRET,
  COOKIE_SECRET,
  AUTHENTICATOR_SECRET,
  AUTHORIZATION_SECRET,
];
const KEY_PREFIX = `sd${randomBytes(4).toString("hex")}:`;
const MARKER = "You are not authorised to view this page";
const REQUEST_TIMEOUT_MS = 400;

let redis: RedisTestServer;
let portal: RecordingServer;
let attacker: RecordingServer;
let logs: ReturnType<typeof captureLogger>;
let queue: BullmqQueue;
let jobs: Queue;
let worker: TaskWorker;
const finalFailures = new Map<string, Error>();
const completed = new Set<string>();

/** Responses of the portal by path; `/slow` never responds. */
const respond: RecordingHandler = (request, res) => {
  const path = request.path.split("?")[0];
  switch (path) {
    case "/login-redirect":
      res.writeHead(302, { location: "/login_form?came_from=/docs/7" }).end();
      return;
    case "/away-redirect":
      res.writeHead(302, { location: `${attacker.origin}/collect` }).end();
      return;
    case "/javascript-redirect":
      res.writeHead(303, { location: "javascript:alert(document.cookie)" }).end();
      return;
    case "/same-origin-redirect":
      res.writeHead(307, { location: "/ok" }).end();
      return;
    case "/marker":
      res.writeHead(200, { "content-type": "text/html" }).end(`<p>${MARKER}</p>`);
      return;
    case "/unauthorized":
      res.writeHead(401).end();
      return;
    case "/forbidden":
      res.writeHead(403).end();
      return;
    case "/slow":
      return;
    default:
      res.end("ok");
  }
};

before(async () => {
  redis = await startRedisServer();
  portal = await startRecordingServer(respond);
  attacker = await startRecordingServer();
  logs = captureLogger();
  const config = {
    allowedOrigins: [portal.origin],
    encryptionKey: ENCRYPTION_KEY,
    signingSecret: SIGNING_SECRET,
    keyPrefix: KEY_PREFIX,
    notAuthorisedMarker: MARKER,
    requestTimeoutMs: REQUEST_TIMEOUT_MS,
    backoffBaseMs: 10,
    backoffMaxMs: 20,
  };
  queue = new BullmqQueue({ redisUrl: redis.url, config, logger: logs.logger });
  jobs = new Queue("tasks", { connection: { url: redis.url }, prefix: bullmqPrefix(KEY_PREFIX) });
  worker = new TaskWorker({ redisUrl: redis.url, config, logger: logs.logger });
  worker.on("failed", (taskId, error) => finalFailures.set(taskId, error));
  worker.on("completed", (task) => completed.add(task.id));
  await worker.start();
});

after(async () => {
  await worker.close();
  await queue.close();
  await jobs.close();
  await attacker.close();
  await portal.close();
  await redis.stop();
});

/** Builds a task for `path` on the portal that carries every kind of credential. */
function task(path: string, overrides: Partial<Task> = {}): Task {
  return buildTask(`${portal.origin}${path}`, {
    cookies: { __ac: COOKIE_SECRET },
    authorization: AUTHORIZATION_SECRET,
    form: [
      ["size", "large"],
      ["_authenticator", AUTHENTICATOR_SECRET],
    ],
    maxAttempts: 3,
    ...overrides,
  });
}

/** Adds job data the way BullmqQueue does, but without its checks, as a tampering writer would. */
async function addRawJob(id: string, data: unknown, attempts = 3): Promise<void> {
  await jobs.add("tampered", data, { jobId: id, attempts, backoff: { type: BACKOFF_TYPE } });
}

function flipFirstByte(base64: string): string {
  const bytes = Buffer.from(base64, "base64");
  bytes[0] = (bytes[0] ?? 0) ^ 0xff;
  return bytes.toString("base64");
}

/** What a case does: queue a task through the producer's queue, or write job data directly. */
type DispatchAttack =
  | { kind: "queued"; task: () => Task }
  | { kind: "raw"; id: string; data: () => unknown; attempts?: number };

/**
 * The failure reason of the job, how many requests the portal got for it, and
 * the metric series that counted it (once per request, or once when none was sent).
 */
interface Expected {
  reason: RegExp;
  portalRequests: number;
  metric: string;
}

type DispatchCase = HostileCase<DispatchAttack, Expected>;

function tamperedJob(id: string, change: (data: TaskJobData) => void): DispatchAttack {
  return {
    kind: "raw",
    id,
    data: () => {
      const data = toJobData(task("/ok", { id }), KEY);
      change(data);
      return data;
    },
  };
}

function sealedJob(id: string, url: () => string, overrides: Partial<Task> = {}): DispatchAttack {
  return {
    kind: "raw",
    id,
    data: () => toJobData(task("/ok", { id, ...overrides, url: url() }), KEY),
  };
}

const DECRYPT_FAILED = /task credentials could not be decrypted/;
const rejected = (reason: string) => `patpush_tasks_rejected_total{reason="${reason}"}`;
const dispatched = (outcome: string) => `patpush_task_dispatches_total{outcome="${outcome}"}`;

const CASES: DispatchCase[] = [
  {
    name: "redirect to the login page",
    attack: { kind: "queued", task: () => task("/login-redirect") },
    expected: {
      reason: /returned 302, a redirect to the login page/,
      portalRequests: 1,
      metric: dispatched("unauthorised"),
    },
  },
  {
    name: "redirect to another origin",
    attack: { kind: "queued", task: () => task("/away-redirect") },
    expected: {
      reason: /returned 302, a redirect to .*; redirects are not followed/,
      portalRequests: 1,
      metric: dispatched("failed"),
    },
  },
  {
    name: "redirect to a javascript: URL",
    attack: { kind: "queued", task: () => task("/javascript-redirect") },
    expected: {
      reason: /returned 303, a redirect to javascript:/,
      portalRequests: 1,
      metric: dispatched("failed"),
    },
  },
  {
    name: "redirect within the origin",
    attack: { kind: "queued", task: () => task("/same-origin-redirect") },
    expected: {
      reason: /returned 307, a redirect to \/ok; redirects are not followed/,
      portalRequests: 1,
      metric: dispatched("failed"),
    },
  },
  {
    name: "200 with the not-authorised marker",
    attack: { kind: "queued", task: () => task("/marker") },
    expected: {
      reason: /returned 200 with the not-authorised marker/,
      portalRequests: 1,
      metric: dispatched("unauthorised"),
    },
  },
  {
    name: "401 from the portal",
    attack: { kind: "queued", task: () => task("/unauthorized") },
    expected: {
      reason: /returned 401; the task credentials were not accepted/,
      portalRequests: 1,
      metric: dispatched("unauthorised"),
    },
  },
  {
    name: "403 from the portal",
    attack: { kind: "queued", task: () => task("/forbidden") },
    expected: {
      reason: /returned 403; the task credentials were not accepted/,
      portalRequests: 1,
      metric: dispatched("unauthorised"),
    },
  },
  {
    name: "slow portal",
    attack: { kind: "queued", task: () => task("/slow", { maxAttempts: 2 }) },
    expected: {
      reason: /task failed after 2 attempts; .* timed out/,
      portalRequests: 2,
      metric: dispatched("retry"),
    },
  },
  {
    name: "sealed task for another origin",
    attack: sealedJob(randomUUID(), () => `${attacker.origin}/collect`),
    expected: {
      reason: /task URL origin http:\/\/127\.0\.0\.1:\d+ is not allowed/,
      portalRequests: 0,
      metric: rejected("url_not_allowed"),
    },
  },
  {
    name: "URL changed to another origin",
    attack: tamperedJob(randomUUID(), (data) => {
      data.task.url = `${attacker.origin}/collect`;
    }),
    expected: { reason: DECRYPT_FAILED, portalRequests: 0, metric: rejected("decrypt_failed") },
  },
  {
    name: "URL changed within the origin",
    attack: tamperedJob(randomUUID(), (data) => {
      data.task.url = `${portal.origin}/@@delete-everything`;
    }),
    expected: { reason: DECRYPT_FAILED, portalRequests: 0, metric: rejected("decrypt_failed") },
  },
  {
    name: "form changed",
    attack: tamperedJob(randomUUID(), (data) => {
      data.task.form = [["delete", "all"]];
    }),
    expected: { reason: DECRYPT_FAILED, portalRequests: 0, metric: rejected("decrypt_failed") },
  },
  {
    name: "credentials copied from another job",
    attack: tamperedJob(randomUUID(), (data) => {
      data.credentials = toJobData(task("/ok"), KEY).credentials;
    }),
    expected: { reason: DECRYPT_FAILED, portalRequests: 0, metric: rejected("decrypt_failed") },
  },
  {
    name: "modified ciphertext",
    attack: tamperedJob(randomUUID(), (data) => {
      data.credentials.data = flipFirstByte(data.credentials.data);
    }),
    expected: { reason: DECRYPT_FAILED, portalRequests: 0, metric: rejected("decrypt_failed") },
  },
  {
    name: "modified authentication tag",
    attack: tamperedJob(randomUUID(), (data) => {
      data.credentials.tag = flipFirstByte(data.credentials.tag);
    }),
    expected: { reason: DECRYPT_FAILED, portalRequests: 0, metric: rejected("decrypt_failed") },
  },
  {
    name: "job copied under another id",
    attack: {
      kind: "raw",
      id: "copied-job",
      data: () => toJobData(task("/ok"), KEY),
    },
    expected: {
      reason: /job copied-job carries task .*; job data must not be copied/,
      portalRequests: 0,
      metric: rejected("invalid"),
    },
  },
  {
    name: "credentials sealed with another key",
    attack: {
      kind: "raw",
      id: "another-key",
      data: () => toJobData(task("/ok", { id: "another-key" }), randomBytes(32)),
    },
    expected: { reason: DECRYPT_FAILED, portalRequests: 0, metric: rejected("decrypt_failed") },
  },
  {
    name: "credentials missing",
    attack: tamperedJob(randomUUID(), (data) => {
      delete (data as Partial<TaskJobData>).credentials;
    }),
    expected: {
      reason: /could not be decrypted: unknown format/,
      portalRequests: 0,
      metric: rejected("decrypt_failed"),
    },
  },
  {
    name: "version 1 job with a bad form",
    attack: {
      kind: "raw",
      id: "version-1-job",
      data: () => {
        const { cookies, authorization, ...stored } = task("/ok", { id: "version-1-job" });
        return {
          v: 1,
          task: { ...stored, form: [["a", "b", "c"]] },
          credentials: sealCredentials({ cookies, authorization }, KEY),
        };
      },
    },
    expected: {
      reason: /form: must be a list of \[name, value\] string pairs/,
      portalRequests: 0,
      metric: rejected("invalid"),
    },
  },
  {
    name: "job data of another format",
    attack: { kind: "raw", id: randomUUID(), data: () => ({ url: `${attacker.origin}/x` }) },
    expected: {
      reason: /job data is not a patpush task/,
      portalRequests: 0,
      metric: rejected("invalid"),
    },
  },
  {
    name: "sealed task with user info",
    attack: sealedJob(randomUUID(), () => portal.origin.replace("http://", "http://admin:pw@")),
    expected: {
      reason: /contains a user name or password/,
      portalRequests: 0,
      metric: rejected("url_invalid"),
    },
  },
  {
    name: "sealed task with a file: URL",
    attack: sealedJob(randomUUID(), () => "file:///etc/passwd"),
    expected: {
      reason: /unsupported scheme "file:"/,
      portalRequests: 0,
      metric: rejected("url_invalid"),
    },
  },
  {
    name: "sealed task with a Host header",
    attack: sealedJob(randomUUID(), () => `${portal.origin}/ok`, {
      headers: { Host: "attacker.test" },
    }),
    expected: {
      reason: /is invalid: headers\.Host: is not allowed/,
      portalRequests: 0,
      metric: rejected("invalid"),
    },
  },
  {
    name: "sealed task with CR LF in a header",
    attack: sealedJob(randomUUID(), () => `${portal.origin}/ok`, {
      headers: { "X-Trace": "a\r\nX-Admin: 1" },
    }),
    expected: {
      reason: /headers\.X-Trace: contains invalid characters/,
      portalRequests: 0,
      metric: rejected("invalid"),
    },
  },
  {
    name: "sealed task with ';' in a cookie",
    attack: sealedJob(randomUUID(), () => `${portal.origin}/ok`, {
      cookies: { __ac: `${COOKIE_SECRET}; admin=1` },
    }),
    expected: {
      reason: /cookies\.__ac: contains invalid characters/,
      portalRequests: 0,
      metric: rejected("invalid"),
    },
  },
];

function requestsFor(server: RecordingServer, taskId: string): number {
  return server.requests.filter((request) => request.headers["x-task-id"] === taskId).length;
}

async function metricValueOf(series: string): Promise<number> {
  return metricValue(await worker.metrics.registry.metrics(), series) ?? 0;
}

async function waitForFinalFailure(taskId: string): Promise<Error> {
  await waitUntil(() => finalFailures.has(taskId), `task ${taskId} failed for good`);
  return finalFailures.get(taskId)!;
}

describe("task dispatcher security", { timeout: 60_000 }, () => {
  it("dispatches a valid task", async () => {
    // The control case: the same setup does reach the portal, so the checks below can fail.
    const sent = task("/ok");
    await queue.add(sent);
    await waitUntil(() => completed.has(sent.id), "the valid task completed");
    assert.equal(requestsFor(portal, sent.id), 1);
    assert.equal(portal.requests.at(-1)?.headers.cookie, `__ac=${COOKIE_SECRET}`);
  });

  it("has at least 8 hostile cases", () => {
    assert.ok(CASES.length >= 8, `only ${CASES.length} cases`);
  });

  for (const { name, attack, expected } of CASES) {
    it(`fails ${name}`, async () => {
      let taskId: string;
      if (attack.kind === "queued") {
        const queued = attack.task();
        taskId = queued.id;
        await queue.add(queued);
      } else {
        taskId = attack.id;
        await addRawJob(attack.id, attack.data(), attack.attempts);
      }

      const metricBefore = await metricValueOf(expected.metric);

      const error = await waitForFinalFailure(taskId);

      assert.match(error.message, expected.reason);
      const job = await jobs.getJob(taskId);
      assert.equal(await job?.getState(), "failed");
      const attempts = Math.max(1, expected.portalRequests);
      assert.equal(job?.attemptsMade, attempts, "the job was retried");
      assert.equal(requestsFor(portal, taskId), expected.portalRequests);
      assert.equal(attacker.requests.length, 0, "the other origin got a request");
      assert.equal(completed.has(taskId), false);
      const counted = Math.max(1, expected.portalRequests);
      assert.equal(await metricValueOf(expected.metric), metricBefore + counted, expected.metric);
      assertNoSecrets(error.message, SECRETS, "the failure reason");
      assertNoSecrets(job?.failedReason ?? "", SECRETS, "the stored failure reason");
      assertNoSecrets(logs.lines.join("\n"), SECRETS, "the log lines");
    });
  }

  it("refuses to start without an encryption key", () => {
    const config = { allowedOrigins: [portal.origin], signingSecret: SIGNING_SECRET };
    assert.throws(
      () => new TaskWorker({ redisUrl: redis.url, config, logger: logs.logger }),
      (error: unknown) => {
        assert.ok(error instanceof ConfigError);
        assert.match(error.message, /encryptionKey: is required/);
        assertNoSecrets(error.message, SECRETS, "the error message");
        return true;
      },
    );
  });
});
