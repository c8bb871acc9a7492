import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { Redis } from "ioredis";
import { request } from "undici";
import { startRedisServer, type RedisTestServer } from "../common/redis-test-server.ts";
import { doneMessageSchema } from "../protocol/message.ts";
import { validateMessage } from "./bus.ts";
import { publishDoneMessage } from "./publish.ts";
import { startPushServer, type PushServer } from "./push-server.ts";
import { RedisBus } from "./redis-bus.ts";
import {
  captureLogs,
  expectRejected,
  metricValue,
  openSocket,
  sessionResponder,
  startPortalStub,
  startTestServer,
  withLast,
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

async function connect(
  url: string,
  portal: PortalStub,
  session: string,
): Promise<TestSocket> {
  const socket = await openSocket(url, { origin: portal.origin, cookie: `__ac=${session}` });
  sockets.push(socket);
  await socket.waitFor((frame) => frame.type === "welcome");
  return socket;
}

/** Resolves once `condition` holds, polling every 20 ms for up to 10 seconds. */
async function waitUntil(condition: () => boolean | Promise<boolean>, what: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!(await condition())) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe("logout message schema", () => {
  it("accepts user and logout", () => {
    assert.deepEqual(validateMessage({ user: "alice", logout: true }), {
      user: "alice",
      logout: true,
    });
  });

  it("rejects other forms", () => {
    const invalid = [
      { channel: "news", logout: true },
      { user: "alice", logout: false },
      { user: "alice", logout: "yes" },
      { user: "alice", logout: true, html: "<a></a>" },
      { user: "alice", logout: true, event: "done" },
      { user: "alice", logout: true, pushId: "p1" },
      { user: "alice", logout: true, data: 1 },
      { logout: true },
    ];
    for (const message of invalid) {
      assert.equal(doneMessageSchema.safeParse(message).success, false, JSON.stringify(message));
    }
  });
});

describe("logout on one server", { timeout: 30_000 }, () => {
  let portal: PortalStub;
  let test: TestServer;

  before(async () => {
    portal = await startPortalStub();
    cleanups.push(() => portal.close());
    test = await startTestServer({ authUrl: portal.authUrl, authCacheTtlMs: 60_000 });
    cleanups.push(() => test.close());
  });

  it("closes the user's sockets with 4001", async () => {
    const alice = await connect(test.server.url, portal, "alice-session");
    const alice2 = await connect(test.server.url, portal, "alice-session-2");
    const bob = await connect(test.server.url, portal, "bob-session");

    await test.bus.publish({ user: "alice", logout: true });

    assert.deepEqual(await alice.closed, { code: 4001, reason: "logged out" });
    assert.deepEqual(await alice2.closed, { code: 4001, reason: "logged out" });
    await test.bus.publish({ user: "bob", pushId: "after-logout" });
    await bob.waitFor((frame) => frame.type === "message" && frame.pushId === "after-logout");
    assert.equal(bob.ws.readyState, bob.ws.OPEN);
    assert.deepEqual(
      [alice, alice2].map((socket) => socket.frames.map((frame) => frame.type)),
      [["welcome"], ["welcome"]],
      "no frame carried the logout",
    );
    const metrics = await (await request(`${test.server.httpUrl}/metrics`)).body.text();
    assert.equal(metricValue(metrics, "patpush_logout_closes_total"), 2);
  });

  it("drops the user's cached sessions", async () => {
    await connect(test.server.url, portal, "alice-session");
    await connect(test.server.url, portal, "bob-session");
    const before = portal.requests.length;

    await test.bus.publish({ user: "alice", logout: true });
    await connect(test.server.url, portal, "alice-session");
    await connect(test.server.url, portal, "bob-session");

    assert.equal(portal.requests.length, before + 1, "alice asked again, bob served from cache");
  });

  it("is never replayed", async () => {
    const bob = await connect(test.server.url, portal, "bob-session");
    const last = await test.bus.publish({ user: "alice", pushId: "before" });
    await test.bus.publish({ user: "alice", logout: true });
    const afterId = await test.bus.publish({ user: "alice", pushId: "after" });

    const resumed = await connect(withLast(test.server.url, last), portal, "alice-session");
    await resumed.waitFor((frame) => frame.type === "message" && frame.id === afterId);

    const welcome = resumed.frames[0];
    assert.equal(welcome?.type === "welcome" && welcome.recovery, "complete");
    assert.deepEqual(
      resumed.frames.slice(1).map((frame) => frame.type === "message" && frame.pushId),
      ["after"],
    );
    assert.equal(resumed.ws.readyState, resumed.ws.OPEN);
    assert.equal(bob.ws.readyState, bob.ws.OPEN);
  });

  it("rejects an upgrade in progress", async () => {
    let release: () => void = () => undefined;
    const answered = new Promise<void>((resolve) => (release = resolve));
    const respond = sessionResponder();
    const slowPortal = await startPortalStub((req, res) => {
      void answered.then(() => respond(req, res));
    });
    cleanups.push(() => slowPortal.close());
    const slow = await startTestServer({ authUrl: slowPortal.authUrl });
    cleanups.push(() => slow.close());

    const rejected = expectRejected(slow.server.url, {
      origin: slowPortal.origin,
      cookie: "__ac=alice-session",
    });
    await waitUntil(() => slowPortal.requests.length === 1, "the auth request");
    await slow.bus.publish({ user: "alice", logout: true });
    release();

    const rejection = await rejected;
    assert.equal(rejection.status, 401);
    assert.deepEqual(JSON.parse(rejection.body), {
      error: "session logged out",
      code: "PATPUSH_AUTH_REJECTED",
    });
  });
});

describe("logout through Redis", { timeout: 30_000 }, () => {
  let redis: RedisTestServer;
  let producer: Redis;
  let portal: PortalStub;

  before(async () => {
    redis = await startRedisServer();
    producer = new Redis(redis.url);
    portal = await startPortalStub();
    cleanups.push(async () => {
      producer.disconnect();
      await portal.close();
      await redis.stop();
    });
  });

  async function startServer(keyPrefix: string): Promise<PushServer> {
    const logs = captureLogs("debug");
    const { logger } = logs;
    const bus = new RedisBus({ redisUrl: redis.url, keyPrefix, blockMs: 1000, logger });
    const server = await startPushServer({
      config: { port: 0, authUrl: portal.authUrl },
      bus,
      logger: logs.logger,
    });
    cleanups.push(async () => {
      await server.close();
      await bus.close();
    });
    await waitUntil(async () => {
      const response = await request(`${server.httpUrl}/ready`);
      await response.body.dump();
      return response.statusCode === 200;
    }, "ready");
    return server;
  }

  it("closes sockets on every server", async () => {
    const keyPrefix = `test-${randomBytes(4).toString("hex")}:`;
    const first = await startServer(keyPrefix);
    const second = await startServer(keyPrefix);
    const onFirst = await connect(first.url, portal, "alice-session");
    const onSecond = await connect(second.url, portal, "alice-session-2");
    const bob = await connect(second.url, portal, "bob-session");

    await publishDoneMessage(producer, { user: "alice", logout: true }, { keyPrefix });

    assert.deepEqual(await onFirst.closed, { code: 4001, reason: "logged out" });
    assert.deepEqual(await onSecond.closed, { code: 4001, reason: "logged out" });
    assert.equal(bob.ws.readyState, bob.ws.OPEN);
    assert.equal(bob.frames.length, 1, "bob received the welcome only");
  });

  it("closes nothing from the backfill", async () => {
    const keyPrefix = `test-${randomBytes(4).toString("hex")}:`;
    await publishDoneMessage(producer, { user: "alice", pushId: "old" }, { keyPrefix });
    const last = await publishDoneMessage(producer, { user: "alice", pushId: "before" }, {
      keyPrefix,
    });
    await publishDoneMessage(producer, { user: "alice", logout: true }, { keyPrefix });
    const newest = await publishDoneMessage(producer, { user: "alice", pushId: "newest" }, {
      keyPrefix,
    });
    const server = await startServer(keyPrefix);

    const socket = await connect(withLast(server.url, last), portal, "alice-session");
    await socket.waitFor((frame) => frame.type === "message" && frame.id === newest);

    assert.deepEqual(
      socket.frames.slice(1).map((frame) => frame.type === "message" && frame.pushId),
      ["newest"],
    );
    assert.equal(socket.ws.readyState, socket.ws.OPEN);
  });
});
