import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { request } from "undici";
import { TaskProducer } from "./producer.ts";
import { InProcessRunner } from "./runner.ts";
import { captureLogger, startRecordingServer, startServer } from "./test-server.ts";
import type { TaskOptions } from "./types.ts";

const SECRETS = ["cookie-secret-xyz", "auth-secret-abc", "tok-secret"];

describe("task logs", { timeout: 30_000 }, () => {
  it("never contain credentials", async (t) => {
    const statuses: Record<string, number[]> = {
      "/flaky": [500, 200],
      "/denied": [401],
      "/gone": [404],
    };
    const worker = await startRecordingServer((request, res, index) => {
      const path = request.path.split("/@@")[0] ?? "";
      const sequence = statuses[path.replace(/^\/doc/, "")] ?? [200];
      const seen = worker.requests.slice(0, index).filter((r) => r.path === request.path).length;
      res.statusCode = sequence[Math.min(seen, sequence.length - 1)] ?? 200;
      res.end(`status ${res.statusCode}`);
    });
    t.after(() => worker.close());

    const capture = captureLogger("debug");
    const config = { allowedOrigins: [worker.origin], backoffBaseMs: 10 };
    const runner = new InProcessRunner({ config, logger: capture.logger });
    t.after(() => runner.close());
    const producer = new TaskProducer({
      config,
      queue: runner,
      authenticator: () => "auth-secret-abc",
      logger: capture.logger,
    });

    const portal = await startServer((req, res) => {
      const path = new URL(req.url ?? "/", "http://portal").pathname;
      const options: TaskOptions = {
        url: `${worker.origin}/doc${path}/@@work`,
        name: `work${path}`,
      };
      producer.enqueue(req, options).then(
        () => res.end("queued"),
        () => res.end("error"),
      );
    });
    t.after(() => portal.close());

    let settled = 0;
    const allSettled = new Promise<void>((resolve) => {
      const count = () => {
        settled += 1;
        if (settled === 3) resolve();
      };
      runner.on("completed", count);
      runner.on("failed", count);
    });
    const headers = { cookie: "__ac=cookie-secret-xyz", authorization: "Bearer tok-secret" };
    for (const path of ["/flaky", "/denied", "/gone"]) {
      const response = await request(`${portal.origin}${path}`, { headers });
      assert.equal(await response.body.text(), "queued");
    }
    await allSettled;
    await runner.close();

    const received = worker.requests[0];
    assert.ok(received);
    assert.equal(received.headers.cookie, "__ac=cookie-secret-xyz");
    assert.equal(received.headers.authorization, "Bearer tok-secret");
    assert.equal(received.form.get("_authenticator"), "auth-secret-abc");

    const messages = capture.messages();
    for (const message of [
      "task enqueued",
      "task dispatched",
      "task retried",
      "task unauthorised",
      "task failed",
    ]) {
      assert.ok(messages.includes(message), `no "${message}" line in ${JSON.stringify(messages)}`);
    }
    for (const line of capture.lines) {
      for (const secret of SECRETS)
        assert.ok(!line.includes(secret), `a log line contains ${secret}: ${line}`);
    }
  });
});
