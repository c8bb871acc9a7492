import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { Agent } from "undici";
import { parseTaskConfig } from "./config.ts";
import { dispatchTask } from "./dispatch.ts";
import { InProcessRunner } from "./runner.ts";
import { signTask, verifyTaskSignature } from "./signature.ts";
import { buildTask, captureLogger, startRecordingServer, startServer } from "./test-server.ts";

const SECRET = "signing-secret-0123456789";
const URL_A = "http://127.0.0.1:8480/workspace/docs/7/@@make-preview";
const BODY = "size=large&_authenticator=abc";
const NOW = Date.UTC(2026, 0, 1, 12, 0, 0);

function sign(overrides: { now?: number; secret?: string } = {}): string {
  return signTask({
    secret: overrides.secret ?? SECRET,
    method: "POST",
    url: URL_A,
    body: BODY,
    now: overrides.now ?? NOW,
  });
}

function verify(header: string | undefined, overrides: Record<string, unknown> = {}) {
  return verifyTaskSignature({
    secret: SECRET,
    header,
    method: "POST",
    url: URL_A,
    body: BODY,
    now: NOW,
    ...overrides,
  });
}

describe("task signature", () => {
  it("has the documented header format", () => {
    assert.match(sign(), /^t=1767268800,v1=[0-9a-f]{64}$/);
  });

  it("verifies an unchanged request", () => {
    assert.deepEqual(verify(sign()), { ok: true });
  });

  it("verifies a raw Buffer body", () => {
    assert.deepEqual(verify(sign(), { body: Buffer.from(BODY) }), { ok: true });
  });

  it("rejects a changed body", () => {
    assert.deepEqual(verify(sign(), { body: `${BODY}&x=1` }), { ok: false, reason: "mismatch" });
  });

  it("rejects a changed URL", () => {
    assert.deepEqual(verify(sign(), { url: `${URL_A}?x=1` }), { ok: false, reason: "mismatch" });
  });

  it("rejects a changed method", () => {
    assert.deepEqual(verify(sign(), { method: "PUT" }), { ok: false, reason: "mismatch" });
  });

  it("rejects another secret", () => {
    const header = sign({ secret: "another-secret-0123456789" });
    assert.deepEqual(verify(header), { ok: false, reason: "mismatch" });
  });

  it("rejects a stale timestamp", () => {
    const header = sign({ now: NOW - 301_000 });
    assert.deepEqual(verify(header), { ok: false, reason: "stale" });
  });

  it("accepts a timestamp within tolerance", () => {
    assert.deepEqual(verify(sign({ now: NOW - 299_000 })), { ok: true });
    assert.deepEqual(verify(sign({ now: NOW - 20_000 }), { toleranceS: 30 }), { ok: true });
  });

  it("rejects a future timestamp", () => {
    const header = sign({ now: NOW + 301_000 });
    assert.deepEqual(verify(header), { ok: false, reason: "stale" });
    assert.deepEqual(verify(sign({ now: NOW + 31_000 }), { toleranceS: 30 }), {
      ok: false,
      reason: "stale",
    });
  });

  it("rejects a missing header", () => {
    assert.deepEqual(verify(undefined), { ok: false, reason: "missing" });
    assert.deepEqual(verify(""), { ok: false, reason: "missing" });
  });

  it("rejects malformed headers", () => {
    const valid = sign();
    const cases = [
      "t=abc,v1=00",
      valid.replace("v1=", "v2="),
      valid.slice(0, -2),
      `${valid}00`,
      valid.replace(",", ";"),
      "v1=" + "0".repeat(64),
    ];
    for (const header of cases) {
      assert.deepEqual(verify(header), { ok: false, reason: "malformed" }, header);
    }
  });
});

describe("task signature dispatch", { timeout: 20_000 }, () => {
  const agent = new Agent();
  after(() => agent.close());

  it("signs a dispatched POST", async () => {
    const results: unknown[] = [];
    const server = await startServer(async (req, res) => {
      const chunks: Buffer[] = [];
      for await (const chunk of req) chunks.push(chunk as Buffer);
      const header = req.headers["x-task-signature"];
      results.push(
        verifyTaskSignature({
          secret: SECRET,
          header: Array.isArray(header) ? header[0] : header,
          method: req.method ?? "",
          url: `${server.origin}${req.url ?? ""}`,
          body: Buffer.concat(chunks),
        }),
      );
      res.end("ok");
    });
    after(() => server.close());

    const config = parseTaskConfig({ allowedOrigins: [server.origin], signingSecret: SECRET });
    const task = buildTask(`${server.origin}/docs/7/@@make-preview?size=large`);
    const outcome = await dispatchTask(task, 1, { config, dispatcher: agent });

    assert.equal(outcome.kind, "success");
    assert.deepEqual(results, [{ ok: true }]);
  });

  it("omits the header without secret", async () => {
    const headers: (string | string[] | undefined)[] = [];
    const server = await startServer((req, res) => {
      headers.push(req.headers["x-task-signature"]);
      req.resume();
      req.on("end", () => res.end("ok"));
    });
    after(() => server.close());

    const config = parseTaskConfig({ allowedOrigins: [server.origin] });
    const outcome = await dispatchTask(buildTask(`${server.origin}/x`), 1, {
      config,
      dispatcher: agent,
    });

    assert.equal(outcome.kind, "success");
    assert.deepEqual(headers, [undefined]);
  });

  it("signs in-process runner requests", async () => {
    const portal = await startRecordingServer();
    after(() => portal.close());
    const runner = new InProcessRunner({
      config: { allowedOrigins: [portal.origin], signingSecret: SECRET },
      logger: captureLogger().logger,
    });
    after(() => runner.close());

    await runner.add(buildTask(`${portal.origin}/docs/7/@@make-preview`));
    await portal.waitForRequests(1);

    const request = portal.requests[0];
    const header = request?.headers["x-task-signature"];
    const result = verifyTaskSignature({
      secret: SECRET,
      header: Array.isArray(header) ? header[0] : header,
      method: request?.method ?? "",
      url: `${portal.origin}${request?.path ?? ""}`,
      body: request?.body ?? "",
    });
    assert.deepEqual(result, { ok: true });
  });
});
