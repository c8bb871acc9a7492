import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import {
  openSocket,
  startPortalStub,
  startTestServer,
  type PortalStub,
  type TestServer,
  type TestSocket,
} from "./test-support.ts";

const ORIGIN = "http://portal.test";
const HTML = "x".repeat(60_000);

let portal: PortalStub;

before(async () => {
  portal = await startPortalStub();
});

after(async () => {
  await portal.close();
});

async function startServer(shutdownDrainMs: number): Promise<TestServer> {
  return startTestServer({
    authUrl: portal.authUrl,
    allowedOrigins: [ORIGIN],
    shutdownDrainMs,
    // High enough that the stalled sockets below are never closed as slow consumers.
    maxBackpressureBytes: 256 * 1024 * 1024,
  });
}

async function connect(test: TestServer, session: string): Promise<TestSocket> {
  const socket = await openSocket(test.server.url, { origin: ORIGIN, cookie: `__ac=${session}` });
  await socket.waitFor((f) => f.type === "welcome");
  return socket;
}

/** Pauses reading on `socket` and publishes `count` large messages to alice. */
async function stall(test: TestServer, socket: TestSocket, count: number): Promise<void> {
  socket.ws.pause();
  for (let i = 0; i < count; i++) await test.bus.publish({ user: "alice", html: HTML });
}

function drainWaits(test: TestServer): Record<string, unknown>[] {
  return test.logs.records().filter((r) => r.msg === "waiting for sockets to drain");
}

describe("push server shutdown", { timeout: 30_000 }, () => {
  it("closes sockets and refuses new ones", async () => {
    const test = await startServer(2000);
    const alice = await connect(test, "alice-session");
    const carol = await connect(test, "carol-session");

    const started = Date.now();
    const closing = test.server.close();
    const refused = openSocket(test.server.url, { origin: ORIGIN, cookie: "__ac=bob-session" });
    await assert.rejects(refused, { code: "ECONNREFUSED" });
    await closing;
    const elapsedMs = Date.now() - started;

    assert.deepEqual(await alice.closed, { code: 4000, reason: "server restarting" });
    assert.deepEqual(await carol.closed, { code: 4000, reason: "server restarting" });
    assert.ok(elapsedMs < 2000, `close took ${elapsedMs} ms`);
    assert.deepEqual(drainWaits(test), [], "idle sockets need no drain");
    await test.bus.close();
  });

  it("lets a slow socket read its frames first", async () => {
    const test = await startServer(10_000);
    const socket = await connect(test, "alice-session");
    const count = 200;
    await stall(test, socket, count);

    const started = Date.now();
    const closing = test.server.close();
    await new Promise((resolve) => setTimeout(resolve, 200));
    socket.ws.resume();
    await closing;
    const elapsedMs = Date.now() - started;

    assert.deepEqual(await socket.closed, { code: 4000, reason: "server restarting" });
    const received = socket.frames.filter((f) => f.type === "message").length;
    assert.equal(received, count, "every frame arrived before the close");
    assert.equal(drainWaits(test).length, 1, "the socket had frames queued");
    assert.ok(elapsedMs < 5000, `close took ${elapsedMs} ms`);
    await test.bus.close();
  });

  it("force-closes after shutdownDrainMs", async () => {
    const test = await startServer(500);
    const stalled = await connect(test, "alice-session");
    const idle = await connect(test, "bob-session");
    await stall(test, stalled, 200);

    const started = Date.now();
    await test.server.close();
    const elapsedMs = Date.now() - started;
    stalled.ws.resume();

    assert.deepEqual(await idle.closed, { code: 4000, reason: "server restarting" });
    // A forced close sends no close frame.
    assert.equal((await stalled.closed).code, 1006);
    assert.ok(elapsedMs >= 450, `close took ${elapsedMs} ms`);
    assert.ok(elapsedMs < 2000, `close took ${elapsedMs} ms`);
    const closedRecord = test.logs.records().find((r) => r.msg === "push server closed");
    assert.equal(closedRecord?.forced, 1);
    assert.equal(closedRecord?.connections, 2);
    await test.bus.close();
  });

  it("rejects upgrades waiting for the bus", async () => {
    const test = await startTestServer({
      authUrl: portal.authUrl,
      allowedOrigins: [ORIGIN],
      resumeWaitMs: 10_000,
    });
    const future = `${Date.now() + 60_000}-0`;
    const opening = openSocket(`${test.server.url}?last=${future}`, {
      origin: ORIGIN,
      cookie: "__ac=alice-session",
    });
    const outcome = opening.then(
      () => "opened",
      (error: { status?: number; body?: string }) => error,
    );
    await new Promise((resolve) => setTimeout(resolve, 300));

    const started = Date.now();
    await test.close();

    const rejection = await outcome;
    assert.ok(Date.now() - started < 2000);
    assert.notEqual(rejection, "opened");
    assert.equal((rejection as { status?: number }).status, 503);
    assert.deepEqual(JSON.parse((rejection as { body: string }).body), {
      error: "server shutting down",
      code: "PATPUSH_SERVER_CLOSING",
    });
  });
});
