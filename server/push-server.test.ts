import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { createInterface } from "node:readline";
import { after, before, describe, it } from "node:test";
import { request } from "undici";
import { freePort } from "../common/free-port.ts";
import type { WelcomeFrame } from "../protocol/frames.ts";
import { isMessageId } from "../protocol/message-id.ts";
import { EmbeddedBus } from "./bus.ts";
import { startPushServer } from "./push-server.ts";
import {
  closedPortUrl,
  expectRejected,
  openSocket,
  startPortalStub,
  startTestServer,
  type PortalStub,
  type TestServer,
  type TestSocket,
} from "./test-support.ts";

const ORIGIN = "http://portal.test";

// A push server in a child process that prints its port, used to hold a port.
// It binds a fixed port because Linux never shares a port bound as port 0.
const HOLDER = `
import { EmbeddedBus, startPushServer } from "./server/index.ts";
const port = Number(process.env.PORT);
const server = await startPushServer({ config: { authUrl: process.env.AUTH_URL, port }, bus: new EmbeddedBus() });
console.log(server.port);
`;

let portal: PortalStub;
let test: TestServer;
const sockets: TestSocket[] = [];

before(async () => {
  portal = await startPortalStub();
  test = await startTestServer({ authUrl: portal.authUrl, allowedOrigins: [ORIGIN] });
});

after(async () => {
  for (const socket of sockets) socket.ws.terminate();
  await test.close();
  await portal.close();
});

async function connectAs(session: string, url = test.server.url): Promise<TestSocket> {
  const socket = await openSocket(url, { origin: ORIGIN, cookie: `__ac=${session}` });
  sockets.push(socket);
  return socket;
}

async function welcomeOf(socket: TestSocket): Promise<WelcomeFrame> {
  const frame = await socket.waitFor((f) => f.type === "welcome");
  assert.equal(frame.type, "welcome");
  return frame;
}

describe("push server start", { timeout: 30_000 }, () => {
  it("reports its resolved address", () => {
    const { port, url, httpUrl } = test.server;

    assert.ok(port > 0);
    assert.equal(url, `ws://127.0.0.1:${port}/push`);
    assert.equal(httpUrl, `http://127.0.0.1:${port}`);
  });

  it("fails on a taken port", async () => {
    const bus = new EmbeddedBus();
    const config = { authUrl: portal.authUrl, port: test.server.port };

    await assert.rejects(startPushServer({ config, bus, logger: test.logs.logger }), {
      code: "PATPUSH_LISTEN_FAILED",
      message: new RegExp(`^failed to listen on 127\\.0\\.0\\.1:${test.server.port}, `),
    });
  });

  it("fails on a port another process holds", async () => {
    const heldPort = await freePort();

    const holder = spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", HOLDER], {
      cwd: process.cwd(),
      env: { ...process.env, AUTH_URL: portal.authUrl, PORT: String(heldPort), PATPUSH_LOG_LEVEL: "silent" },
      stdio: ["ignore", "pipe", "inherit"],
    });
    after(() => holder.kill("SIGKILL"));
    const [line] = (await once(createInterface({ input: holder.stdout! }), "line")) as [string];
    const port = Number(line);
    assert.equal(port, heldPort, `holder printed ${line}`);

    const bus = new EmbeddedBus();
    const config = { authUrl: portal.authUrl, port };
    const started = startPushServer({ config, bus, logger: test.logs.logger });

    await assert.rejects(
      started.then(async (server) => {
        await server.close();
        return "listening";
      }),
      { code: "PATPUSH_LISTEN_FAILED" },
    );
  });

  it("rejects an invalid config", async () => {
    const bus = new EmbeddedBus();
    const config = { authUrl: "not a url", port: -1 };

    await assert.rejects(startPushServer({ config, bus, logger: test.logs.logger }), (error) => {
      assert.equal((error as { code?: unknown }).code, "PATPUSH_CONFIG_INVALID");
      assert.match((error as Error).message, /\n {2}authUrl: must be an absolute http or https URL/);
      assert.match((error as Error).message, /\n {2}port: .* \(got -1\)/);
      return true;
    });
  });
});

describe("socket upgrade", { timeout: 30_000 }, () => {
  it("welcomes an authenticated user", async () => {
    const socket = await connectAs("alice-session");
    const welcome = await welcomeOf(socket);

    assert.equal(socket.frames[0], welcome, "the welcome is the first frame");
    assert.equal(welcome.user, "alice");
    assert.deepEqual(welcome.channels, []);
    assert.ok(isMessageId(welcome.id), `welcome id ${welcome.id}`);
    assert.equal(welcome.recovery, "none");
    assert.match(welcome.conn, /^[0-9a-f]{6}-\d+$/);
    assert.ok(test.server.connectionCount() >= 1);
  });

  it("lists granted channels in welcome", async () => {
    const welcome = await welcomeOf(await connectAs("carol-session"));

    assert.equal(welcome.user, "carol");
    assert.deepEqual(welcome.channels, ["news"]);
  });

  it("gives each connection its own id", async () => {
    const first = await welcomeOf(await connectAs("alice-session"));
    const second = await welcomeOf(await connectAs("alice-session"));

    assert.notEqual(first.conn, second.conn);
  });

  it("rejects a foreign origin unauthenticated", async () => {
    const before = portal.requests.length;
    const origins = [
      "http://evil.test",
      "https://portal.test",
      "http://portal.test:8080",
      "http://portal.test.evil.test",
      "http://portal.test/",
      "null",
    ];

    for (const origin of origins) {
      const rejection = await expectRejected(test.server.url, {
        origin,
        cookie: "__ac=alice-session",
      });
      assert.equal(rejection.status, 403, origin);
      assert.deepEqual(JSON.parse(rejection.body), {
        error: "origin not allowed",
        code: "PATPUSH_ORIGIN_REJECTED",
      });
    }
    assert.equal(portal.requests.length, before, "the portal was never called");
  });

  it("rejects a missing origin", async () => {
    const before = portal.requests.length;

    const rejection = await expectRejected(test.server.url, { cookie: "__ac=alice-session" });

    assert.equal(rejection.status, 403);
    assert.deepEqual(JSON.parse(rejection.body), {
      error: "origin missing",
      code: "PATPUSH_ORIGIN_REJECTED",
    });
    assert.equal(portal.requests.length, before, "the portal was never called");
  });

  it("rejects a missing cookie", async () => {
    const before = portal.requests.length;

    for (const cookie of [undefined, "tracking=1"]) {
      const rejection = await expectRejected(test.server.url, { origin: ORIGIN, cookie });
      assert.equal(rejection.status, 401);
      assert.equal(JSON.parse(rejection.body).code, "PATPUSH_AUTH_MISSING");
    }
    assert.equal(portal.requests.length, before, "the portal was never called");
  });

  it("rejects an unknown session", async () => {
    const rejection = await expectRejected(test.server.url, {
      origin: ORIGIN,
      cookie: "__ac=secret-cookie-value-123",
    });

    assert.equal(rejection.status, 401);
    assert.deepEqual(JSON.parse(rejection.body), {
      error: "portal returned 401",
      code: "PATPUSH_AUTH_REJECTED",
    });
    assert.ok(!rejection.body.includes("secret-cookie-value-123"));
  });

  it("rejects a forbidden session", async () => {
    const rejection = await expectRejected(test.server.url, {
      origin: ORIGIN,
      cookie: "__ac=forbidden-session",
    });

    assert.equal(rejection.status, 403);
    assert.equal(JSON.parse(rejection.body).code, "PATPUSH_AUTH_REJECTED");
  });

  it("answers 503 when portal down", async () => {
    const authUrl = await closedPortUrl();
    const down = await startTestServer({ authUrl, allowedOrigins: [ORIGIN] });
    try {
      const rejection = await expectRejected(down.server.url, {
        origin: ORIGIN,
        cookie: "__ac=alice-session",
      });
      assert.equal(rejection.status, 503);
      assert.deepEqual(JSON.parse(rejection.body), {
        error: "portal unreachable",
        code: "PATPUSH_AUTH_UNAVAILABLE",
      });
    } finally {
      await down.close();
    }
  });

  it("answers 503 when portal hangs", async () => {
    const hanging = await startPortalStub(() => undefined);
    const slow = await startTestServer({
      authUrl: hanging.authUrl,
      allowedOrigins: [ORIGIN],
      authTimeoutMs: 200,
    });
    try {
      const rejection = await expectRejected(slow.server.url, {
        origin: ORIGIN,
        cookie: "__ac=alice-session",
      });
      assert.equal(rejection.status, 503);
      assert.equal(JSON.parse(rejection.body).error, "portal timed out");
    } finally {
      await slow.close();
      await hanging.close();
    }
  });
});

describe("inbound frames", { timeout: 30_000 }, () => {
  it("ignores small text frames", async () => {
    const socket = await connectAs("bob-session");
    await welcomeOf(socket);

    socket.ws.send("hello");
    // The server sends the pong after it has read the text frame before the ping.
    await new Promise<void>((resolve) => {
      socket.ws.once("pong", () => resolve());
      socket.ws.ping();
    });
    await test.bus.publish({ user: "bob", pushId: "after-text" });

    await socket.waitFor((f) => f.type === "message" && f.pushId === "after-text");
    assert.equal(socket.ws.readyState, socket.ws.OPEN);
    assert.ok(test.logs.records().some((r) => r.msg === "inbound frame ignored"));
  });

  it("closes on binary frames", async () => {
    const socket = await connectAs("bob-session");
    await welcomeOf(socket);

    socket.ws.send(Buffer.from([1, 2, 3]));

    assert.deepEqual(await socket.closed, {
      code: 4002,
      reason: "binary frames are not accepted",
    });
  });

  it("drops frames over maxPayloadBytes", async () => {
    const socket = await connectAs("bob-session");
    await welcomeOf(socket);

    socket.ws.send("x".repeat(4097));

    // uWS drops the connection without a close frame, which the client reports as 1006.
    assert.equal((await socket.closed).code, 1006);
  });
});

describe("push server close", { timeout: 30_000 }, () => {
  it("closes sockets with 4000", async () => {
    const closing = await startTestServer({ authUrl: portal.authUrl, allowedOrigins: [ORIGIN] });
    const alice = await connectAs("alice-session", closing.server.url);
    const bob = await connectAs("bob-session", closing.server.url);
    await welcomeOf(alice);
    await welcomeOf(bob);
    assert.equal(closing.server.connectionCount(), 2);

    await closing.close();

    assert.deepEqual(await alice.closed, { code: 4000, reason: "server restarting" });
    assert.deepEqual(await bob.closed, { code: 4000, reason: "server restarting" });
    assert.equal(closing.server.connectionCount(), 0);
  });

  it("stops listening and leaves the bus", async () => {
    const closing = await startTestServer({ authUrl: portal.authUrl, allowedOrigins: [ORIGIN] });
    const healthUrl = `${closing.server.httpUrl}/health`;
    assert.equal((await request(healthUrl)).statusCode, 200);

    await closing.server.close();
    await closing.server.close();

    await assert.rejects(request(healthUrl), { code: "ECONNREFUSED" });
    const before = closing.logs.records().filter((r) => r.msg === "message delivered").length;
    await closing.bus.publish({ user: "alice", pushId: "after-close" });
    const delivered = closing.logs.records().filter((r) => r.msg === "message delivered").length;
    assert.equal(delivered, before, "nothing is delivered after close");
    await closing.bus.close();
  });
});

describe("push server logs", { timeout: 30_000 }, () => {
  it("never logs cookie values", async () => {
    const secret = "secret-cookie-value-123";
    const logged = await startPortalStub((req, res) => {
      const ok = req.headers.cookie === `__ac=${secret}`;
      res.writeHead(ok ? 200 : 401).end(ok ? JSON.stringify({ user: "alice", channels: [] }) : "");
    });
    const server = await startTestServer({ authUrl: logged.authUrl, allowedOrigins: [ORIGIN] });
    try {
      const socket = await connectAs(secret, server.server.url);
      const welcome = await welcomeOf(socket);
      await server.bus.publish({ user: "alice", pushId: "p1" });
      await socket.waitFor((f) => f.type === "message");
      await expectRejected(server.server.url, { origin: ORIGIN, cookie: `__ac=${secret}-wrong` });
      await expectRejected(server.server.url, {
        origin: "http://evil.test",
        cookie: `__ac=${secret}`,
      });
      await request(`${server.server.httpUrl}/push/auth`, {
        headers: { origin: ORIGIN, cookie: `__ac=${secret}; other=${secret}` },
      }).then((response) => response.body.dump());
      await server.close();

      assert.ok(!server.logs.text().includes(secret), "no log line contains the cookie value");
      const records = server.logs.records();
      const opened = records.find((r) => r.msg === "socket opened");
      assert.equal(opened?.user, "alice");
      assert.equal(opened?.conn, welcome.conn);
      const closed = records.find((r) => r.msg === "socket closed");
      assert.equal(closed?.conn, welcome.conn);
      assert.equal(closed?.code, 4000);
      const rejected = records.filter((r) => r.msg === "auth rejected");
      assert.deepEqual(
        rejected.map((r) => [r.level, r.status, r.reason, r.origin]),
        [
          [40, 401, "portal returned 401", ORIGIN],
          [40, 403, "origin not allowed", "http://evil.test"],
        ],
      );
      const listening = records.find((r) => r.msg === "push server listening");
      assert.deepEqual([listening?.host, listening?.port, listening?.path], [
        "127.0.0.1",
        server.server.port,
        "/push",
      ]);
    } finally {
      await server.close();
      await logged.close();
    }
  });
});
