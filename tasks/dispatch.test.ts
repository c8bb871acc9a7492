import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Agent } from "undici";
import { parseTaskConfig, type TaskConfig } from "./config.ts";
import { dispatchTask, parseRetryAfter } from "./dispatch.ts";
import {
  buildTask,
  startRecordingServer,
  startServer,
  type RecordingServer,
} from "./test-server.ts";

const MARKER = "Insufficient Privileges";

describe("task dispatch", { timeout: 30_000 }, () => {
  let portal: RecordingServer;
  let config: TaskConfig;
  const agent = new Agent();

  before(async () => {
    portal = await startRecordingServer((request, res) => {
      const respond = (status: number, headers: Record<string, string> = {}, body = "") => {
        res.writeHead(status, headers);
        res.end(body);
      };
      const path = request.path.split("?")[0];
      if (path === "/ok") respond(200, {}, "ok");
      else if (path === "/to-login")
        respond(302, { location: `${portal.origin}/login?came_from=x` });
      else if (path === "/to-require-login") respond(302, { location: "/acl_users/require_login" });
      else if (path === "/elsewhere") respond(302, { location: "/other" });
      else if (path === "/marker") respond(200, {}, `<html><h1>${MARKER}</h1></html>`);
      else if (path === "/large") respond(200, {}, "x".repeat(3 * 1024 * 1024));
      else if (path === "/busy") respond(429, { "retry-after": "7" });
      else if (path === "/hang") return;
      else respond(Number(path?.slice(1)) || 500);
    });
    config = parseTaskConfig({
      allowedOrigins: [portal.origin],
      taskNameHeader: "X-Celery-Task-Name",
      notAuthorisedMarker: MARKER,
      requestTimeoutMs: 200,
    });
  });

  after(async () => {
    await agent.close();
    await portal.close();
  });

  async function dispatchPath(path: string) {
    const countBefore = portal.requests.length;
    const outcome = await dispatchTask(buildTask(`${portal.origin}${path}`), 1, {
      config,
      dispatcher: agent,
    });
    return { outcome, requests: portal.requests.slice(countBefore) };
  }

  it("sends form, cookies and task headers", async () => {
    const task = buildTask(`${portal.origin}/ok?mode=full`, {
      name: "make-preview",
      headers: { "X-Extra": "yes" },
      cookies: { __ac: "session-1", lang: "de" },
      authorization: "Bearer abc",
    });
    const outcome = await dispatchTask(task, 2, { config, dispatcher: agent });
    assert.equal(outcome.kind, "success");

    const received = portal.requests.at(-1);
    assert.ok(received);
    assert.equal(received.method, "POST");
    assert.equal(received.path, "/ok?mode=full");
    assert.equal(received.headers["content-type"], "application/x-www-form-urlencoded");
    assert.equal(received.body, "size=large&_authenticator=auth-token-1");
    assert.equal(received.headers.cookie, "__ac=session-1; lang=de");
    assert.equal(received.headers.authorization, "Bearer abc");
    assert.equal(received.headers["x-celery-task-name"], "make-preview");
    assert.equal(received.headers["x-task-name"], undefined);
    assert.equal(received.headers["x-task-id"], task.id);
    assert.equal(received.headers["x-task-attempt"], "2");
    assert.equal(received.headers["x-extra"], "yes");
  });

  it("omits empty cookies and authorization", async () => {
    const task = buildTask(`${portal.origin}/ok`, { cookies: {} });
    await dispatchTask(task, 1, { config, dispatcher: agent });
    const received = portal.requests.at(-1);
    assert.equal(received?.headers.cookie, undefined);
    assert.equal(received?.headers.authorization, undefined);
  });

  it("reports 200 as success", async () => {
    const { outcome, requests } = await dispatchPath("/ok");
    assert.equal(outcome.kind, "success");
    assert.equal(outcome.status, 200);
    assert.equal(outcome.error, undefined);
    assert.ok(outcome.durationMs >= 0);
    assert.equal(requests.length, 1);
  });

  const unauthorised: [path: string, status: number, message: RegExp][] = [
    ["/to-login", 302, /returned 302, a redirect to the login page http:.*\/login\?came_from=x/],
    ["/to-require-login", 302, /a redirect to the login page \/acl_users\/require_login/],
    ["/marker", 200, /returned 200 with the not-authorised marker/],
    ["/401", 401, /returned 401; the task credentials were not accepted/],
    ["/403", 403, /returned 403; the task credentials were not accepted/],
  ];
  for (const [path, status, message] of unauthorised) {
    it(`reports ${path} as unauthorised`, async () => {
      const { outcome, requests } = await dispatchPath(path);
      assert.equal(outcome.kind, "unauthorised");
      assert.equal(outcome.status, status);
      assert.equal(outcome.error?.code, "PATPUSH_DISPATCH_UNAUTHORISED");
      assert.equal(outcome.error?.status, status);
      assert.match(outcome.error?.message ?? "", message);
      assert.equal(requests.length, 1);
    });
  }

  const failed: [path: string, status: number, code: string, message: RegExp][] = [
    [
      "/elsewhere",
      302,
      "PATPUSH_DISPATCH_REDIRECTED",
      /a redirect to \/other; redirects are not followed/,
    ],
    [
      "/404",
      404,
      "PATPUSH_DISPATCH_REJECTED",
      /POST http:.*\/404 returned 404; check the task url/,
    ],
    ["/400", 400, "PATPUSH_DISPATCH_REJECTED", /returned 400; check the task url and form data/],
    ["/408", 408, "PATPUSH_DISPATCH_REJECTED", /returned 408/],
  ];
  for (const [path, status, code, message] of failed) {
    it(`reports ${path} as failed`, async () => {
      const { outcome, requests } = await dispatchPath(path);
      assert.equal(outcome.kind, "failed");
      assert.equal(outcome.status, status);
      assert.equal(outcome.error?.code, code);
      assert.match(outcome.error?.message ?? "", message);
      assert.equal(requests.length, 1);
      assert.ok(requests.every((request) => request.path !== "/other"));
    });
  }

  for (const path of ["/500", "/502", "/503"]) {
    it(`reports ${path} as retry`, async () => {
      const { outcome } = await dispatchPath(path);
      assert.equal(outcome.kind, "retry");
      assert.equal(outcome.status, Number(path.slice(1)));
      assert.equal(outcome.error?.code, "PATPUSH_DISPATCH_SERVER_ERROR");
      assert.equal(outcome.retryAfterMs, undefined);
    });
  }

  it("reads Retry-After on 429", async () => {
    const { outcome } = await dispatchPath("/busy");
    assert.equal(outcome.kind, "retry");
    assert.equal(outcome.status, 429);
    assert.equal(outcome.retryAfterMs, 7000);
  });

  it("skips the marker check past its limit", async () => {
    const { outcome } = await dispatchPath("/large");
    assert.equal(outcome.kind, "success");
    const again = await dispatchPath("/ok");
    assert.equal(again.outcome.kind, "success");
  });

  it("reports a timeout as retry", async () => {
    const { outcome, requests } = await dispatchPath("/hang");
    assert.equal(outcome.kind, "retry");
    assert.equal(outcome.status, undefined);
    assert.equal(outcome.error?.code, "PATPUSH_DISPATCH_TIMEOUT");
    assert.match(outcome.error?.message ?? "", /POST http:.*\/hang timed out .*requestTimeoutMs/);
    assert.equal(requests.length, 1);
  });

  it("reports a refused connection as retry", async () => {
    const closed = await startServer((_req, res) => res.end());
    await closed.close();
    const task = buildTask(`${closed.origin}/x`);
    const outcome = await dispatchTask(task, 1, { config, dispatcher: agent });
    assert.equal(outcome.kind, "retry");
    assert.equal(outcome.error?.code, "PATPUSH_DISPATCH_NETWORK");
    assert.match(outcome.error?.message ?? "", /ECONNREFUSED .*; check that the portal is running/);
  });

  it("fails an unparsable task URL", async () => {
    const task = buildTask("not a url");
    const outcome = await dispatchTask(task, 1, { config, dispatcher: agent });
    assert.equal(outcome.kind, "failed");
    assert.equal(outcome.error?.code, "PATPUSH_DISPATCH_REQUEST_INVALID");
    assert.match(
      outcome.error?.message ?? "",
      /^POST \(invalid task URL\) was rejected before sending/,
    );
  });

  it("fails an invalid header without sending", async () => {
    const countBefore = portal.requests.length;
    const task = buildTask(`${portal.origin}/ok`, { headers: { "X-Bad": "a\r\nb" } });
    const outcome = await dispatchTask(task, 1, { config, dispatcher: agent });
    assert.equal(outcome.kind, "failed");
    assert.equal(outcome.error?.code, "PATPUSH_DISPATCH_REQUEST_INVALID");
    assert.equal(portal.requests.length, countBefore);
  });
});

describe("Retry-After parsing", () => {
  const now = Date.parse("2025-01-01T00:00:00Z");

  it("reads seconds", () => {
    assert.equal(parseRetryAfter("1", now), 1000);
    assert.equal(parseRetryAfter(" 120 ", now), 120_000);
    assert.equal(parseRetryAfter(["3", "9"], now), 3000);
  });

  it("reads an HTTP-date", () => {
    assert.equal(parseRetryAfter("Wed, 01 Jan 2025 00:00:30 GMT", now), 30_000);
    assert.equal(parseRetryAfter("Tue, 31 Dec 2024 23:59:00 GMT", now), 0);
  });

  it("ignores missing or invalid values", () => {
    assert.equal(parseRetryAfter(undefined, now), undefined);
    assert.equal(parseRetryAfter("soon", now), undefined);
    assert.equal(parseRetryAfter("-5", now), undefined);
    assert.equal(parseRetryAfter("Someday", now), undefined);
  });
});
