import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { request } from "undici";
import type { AuthIdentity } from "./auth.ts";
import type { ServerConfigInput } from "./config.ts";
import {
  metricValue,
  openSocket,
  startPortalStub,
  startTestServer,
  type PortalStub,
  type TestServer,
  type TestSocket,
} from "./test-support.ts";

const cleanups: (() => Promise<void>)[] = [];
const sockets: TestSocket[] = [];

after(async () => {
  for (const socket of sockets) socket.ws.terminate();
  for (const cleanup of cleanups.reverse()) await cleanup();
});

/** What the switchable portal returns: an identity, or a status without a body. */
type PortalAnswer = AuthIdentity | number;

interface Setup {
  portal: PortalStub;
  test: TestServer;
  /** Sets the portal's response for every session from now on. */
  answer(value: PortalAnswer): void;
  /** Times of the requests the portal received, in milliseconds since the epoch. */
  requestTimes: number[];
}

/**
 * Starts a portal that returns the same response for every session, alice
 * at first, and a push server that revalidates every second and caches
 * sessions for a minute, so only a check past the cache can see a change.
 */
async function setup(config: Partial<ServerConfigInput> = {}): Promise<Setup> {
  let current: PortalAnswer = { user: "alice", channels: ["news"] };
  const requestTimes: number[] = [];
  const portal = await startPortalStub((_req, res) => {
    requestTimes.push(Date.now());
    if (typeof current === "number") {
      res.writeHead(current).end("portal detail /srv/portal/app.py");
    } else {
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(current));
    }
  });
  cleanups.push(() => portal.close());
  const test = await startTestServer({
    authUrl: portal.authUrl,
    revalidateIntervalMs: 1000,
    authCacheTtlMs: 60_000,
    ...config,
  });
  cleanups.push(() => test.close());
  return {
    portal,
    test,
    requestTimes,
    answer: (value) => {
      current = value;
    },
  };
}

async function connect({ portal, test }: Setup, session = "alice-session"): Promise<TestSocket> {
  const socket = await openSocket(test.server.url, {
    origin: portal.origin,
    cookie: `__ac=${session}; tracking=1`,
  });
  sockets.push(socket);
  await socket.waitFor((frame) => frame.type === "welcome");
  return socket;
}

async function revalidationCloses(test: TestServer, reason: string): Promise<number | undefined> {
  const response = await request(`${test.server.httpUrl}/metrics`);
  const text = await response.body.text();
  return metricValue(text, `patpush_revalidation_closes_total{reason="${reason}"}`);
}

/** Resolves once `condition` holds, polling every 20 ms for up to `timeoutMs`. */
async function waitUntil(condition: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe("revalidation", { timeout: 30_000 }, () => {
  it("closes a revoked session with 4001", async () => {
    const env = await setup();
    const socket = await connect(env);

    env.answer(401);

    assert.deepEqual(await socket.closed, { code: 4001, reason: "session revoked" });
    assert.equal(env.portal.requests.length, 2, "the check went past the cached session");
    assert.equal(env.portal.requests[1]?.cookie, "__ac=alice-session");
    assert.equal(await revalidationCloses(env.test, "revoked"), 1);
  });

  it("closes a forbidden session with 4001", async () => {
    const env = await setup();
    const socket = await connect(env);

    env.answer(403);

    assert.equal((await socket.closed).code, 4001);
  });

  it("closes with 4000 on portal error", async () => {
    const env = await setup();
    const socket = await connect(env);

    env.answer(500);

    assert.deepEqual(await socket.closed, { code: 4000, reason: "revalidation failed" });
    assert.equal(await revalidationCloses(env.test, "unavailable"), 1);
    const logged = env.test.logs.text();
    assert.ok(!logged.includes("alice-session"), "no cookie value in the log");
  });

  it("closes with 4001 on another user", async () => {
    const env = await setup();
    const socket = await connect(env);

    env.answer({ user: "mallory", channels: ["news"] });

    assert.deepEqual(await socket.closed, { code: 4001, reason: "session changed user" });
    assert.equal(await revalidationCloses(env.test, "changed"), 1);
  });

  it("closes with 4000 on other channels", async () => {
    const env = await setup();
    const socket = await connect(env);

    env.answer({ user: "alice", channels: [] });

    assert.deepEqual(await socket.closed, { code: 4000, reason: "session channels changed" });
  });

  it("keeps a valid session open", async () => {
    const env = await setup();
    const socket = await connect(env);

    // Each check falls 0.75-1.25 s after the previous one, then waits for the next 1 s
    // sweep, so two take up to about 4.5 s, and longer on a busy machine.
    await waitUntil(() => env.portal.requests.length >= 3, "two revalidations", 10_000);
    await env.test.bus.publish({ user: "alice", pushId: "still-open" });

    await socket.waitFor((frame) => frame.type === "message" && frame.pushId === "still-open");
    assert.equal(socket.ws.readyState, socket.ws.OPEN);
  });

  it("never checks at interval 0", async () => {
    const env = await setup({ revalidateIntervalMs: 0 });
    const socket = await connect(env);

    env.answer(401);
    await new Promise((resolve) => setTimeout(resolve, 2500));

    assert.equal(socket.ws.readyState, socket.ws.OPEN);
    assert.equal(env.portal.requests.length, 1);
  });

  it("spreads the checks over time", async () => {
    const env = await setup({ revalidateIntervalMs: 4000 });
    // Each socket has its own session, so no two checks share one request.
    for (let i = 0; i < 12; i += 1) await connect(env, `session-${i}`);
    const opened = env.requestTimes.length;

    await waitUntil(() => env.requestTimes.length >= opened + 12, "12 revalidations", 10_000);

    const checks = env.requestTimes.slice(opened, opened + 12);
    const spreadMs = Math.max(...checks) - Math.min(...checks);
    assert.ok(spreadMs >= 900, `checks within ${spreadMs} ms`);
    assert.equal(env.test.server.connectionCount(), 12);
  });
});
