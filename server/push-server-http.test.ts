import assert from "node:assert/strict";
import { connect } from "node:net";
import { after, before, describe, it } from "node:test";
import { request } from "undici";
import {
  closedPortUrl,
  startPortalStub,
  startTestServer,
  type PortalStub,
  type TestServer,
} from "./test-support.ts";

const ORIGIN = "http://portal.test";

let portal: PortalStub;
let test: TestServer;

before(async () => {
  portal = await startPortalStub();
  test = await startTestServer({ authUrl: portal.authUrl, allowedOrigins: [ORIGIN] });
});

after(async () => {
  await test.close();
  await portal.close();
});

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: unknown;
}

async function get(
  path: string,
  headers: Record<string, string> = {},
  method: "GET" | "OPTIONS" = "GET",
  baseUrl = test.server.httpUrl,
): Promise<Reply> {
  const response = await request(`${baseUrl}${path}`, { method, headers });
  const text = await response.body.text();
  return {
    status: response.statusCode,
    headers: response.headers,
    body: text === "" ? undefined : JSON.parse(text),
  };
}

function assertCors(reply: Reply, origin: string): void {
  assert.equal(reply.headers["access-control-allow-origin"], origin);
  assert.equal(reply.headers["access-control-allow-credentials"], "true");
  assert.equal(reply.headers.vary, "Origin");
}

function assertNoCors(reply: Reply): void {
  assert.equal(reply.headers["access-control-allow-origin"], undefined);
  assert.equal(reply.headers["access-control-allow-credentials"], undefined);
}

describe("auth endpoint", { timeout: 30_000 }, () => {
  it("returns the identity with CORS", async () => {
    const reply = await get("/push/auth", { origin: ORIGIN, cookie: "__ac=carol-session" });

    assert.equal(reply.status, 200);
    assert.deepEqual(reply.body, { user: "carol", channels: ["news"] });
    assertCors(reply, ORIGIN);
    assert.equal(reply.headers["cache-control"], "no-store");
  });

  it("returns 401 with CORS", async () => {
    for (const cookie of ["__ac=unknown-session", "tracking=1"]) {
      const reply = await get("/push/auth", { origin: ORIGIN, cookie });
      assert.equal(reply.status, 401, cookie);
      assertCors(reply, ORIGIN);
    }
  });

  it("returns 403 with CORS", async () => {
    const reply = await get("/push/auth", { origin: ORIGIN, cookie: "__ac=forbidden-session" });

    assert.equal(reply.status, 403);
    assert.deepEqual(reply.body, { error: "portal returned 403", code: "PATPUSH_AUTH_REJECTED" });
    assertCors(reply, ORIGIN);
  });

  it("rejects a foreign origin without CORS", async () => {
    const before = portal.requests.length;

    const reply = await get("/push/auth", {
      origin: "http://evil.test",
      cookie: "__ac=alice-session",
    });

    assert.equal(reply.status, 403);
    assert.deepEqual(reply.body, { error: "origin not allowed", code: "PATPUSH_ORIGIN_REJECTED" });
    assertNoCors(reply);
    assert.equal(portal.requests.length, before, "the portal was never called");
  });

  it("rejects a missing origin", async () => {
    const reply = await get("/push/auth", { cookie: "__ac=alice-session" });

    assert.equal(reply.status, 403);
    assert.deepEqual(reply.body, { error: "origin missing", code: "PATPUSH_ORIGIN_REJECTED" });
    assertNoCors(reply);
  });

  it("returns 503 when portal down", async () => {
    const authUrl = await closedPortUrl();
    const down = await startTestServer({ authUrl, allowedOrigins: [ORIGIN] });
    try {
      const reply = await get(
        "/push/auth",
        { origin: ORIGIN, cookie: "__ac=alice-session" },
        "GET",
        down.server.httpUrl,
      );
      assert.equal(reply.status, 503);
      assert.deepEqual(reply.body, {
        error: "portal unreachable",
        code: "PATPUSH_AUTH_UNAVAILABLE",
      });
      assertCors(reply, ORIGIN);
    } finally {
      await down.close();
    }
  });

  it("answers an allowed preflight", async () => {
    const reply = await get(
      "/push/auth",
      { origin: ORIGIN, "access-control-request-method": "GET" },
      "OPTIONS",
    );

    assert.equal(reply.status, 204);
    assertCors(reply, ORIGIN);
    assert.equal(reply.headers["access-control-allow-methods"], "GET, OPTIONS");
  });

  it("refuses a foreign preflight", async () => {
    const reply = await get(
      "/push/auth",
      { origin: "http://evil.test", "access-control-request-method": "GET" },
      "OPTIONS",
    );

    assert.equal(reply.status, 403);
    assertNoCors(reply);
  });
});

describe("health endpoint", { timeout: 30_000 }, () => {
  it("reports ok", async () => {
    const reply = await get("/health");

    assert.equal(reply.status, 200);
    assert.deepEqual(reply.body, { status: "ok" });
  });

  it("returns 426 for a GET without upgrade", async () => {
    const plain = await get("/push");
    assert.equal(plain.status, 426);
    assert.deepEqual(plain.body, { error: "websocket upgrade required", path: "/push" });

    // A handshake with a key of the wrong length is not a WebSocket upgrade either.
    // undici refuses to send Upgrade headers, so this request goes over a plain socket.
    const { port } = new URL(test.server.httpUrl);
    const statusLine = await new Promise<string>((resolve, reject) => {
      const socket = connect(Number(port), "127.0.0.1", () => {
        socket.write(
          "GET /push HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\n" +
            "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: short\r\n" +
            `Origin: ${ORIGIN}\r\n\r\n`,
        );
      });
      socket.once("data", (data) => {
        resolve(String(data).split("\r\n")[0] ?? "");
        socket.destroy();
      });
      socket.once("error", reject);
    });
    assert.equal(statusLine, "HTTP/1.1 426 Upgrade Required");
  });

  it("returns 404 elsewhere", async () => {
    for (const path of ["/", "/push/other", "/healthz"]) {
      const reply = await get(path);
      assert.equal(reply.status, 404, path);
      assert.deepEqual(reply.body, { error: "not found" });
    }
  });
});
