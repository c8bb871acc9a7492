/**
 * Push servers that share one Redis through RedisBus: delivery from the
 * done stream and channel, recovery on a server started later, readiness,
 * and a Redis outage.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { Redis } from "ioredis";
import { request } from "undici";
import { startRedisServer, type RedisTestServer } from "../common/redis-test-server.ts";
import type { ServerFrame } from "../protocol/frames.ts";
import { publishDoneMessage } from "./publish.ts";
import { startPushServer, type PushServer } from "./push-server.ts";
import { RedisBus } from "./redis-bus.ts";
import {
  captureLogs,
  openSocket,
  startPortalStub,
  type LogCapture,
  type PortalStub,
  type TestSocket,
} from "./test-support.ts";

const ORIGIN = "http://portal.test";

let redis: RedisTestServer;
let admin: Redis;
let portal: PortalStub;
const cleanups: (() => Promise<void>)[] = [];

before(async () => {
  redis = await startRedisServer();
  admin = new Redis(redis.url);
  portal = await startPortalStub();
});

after(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
  admin.disconnect();
  await portal.close();
  await redis.stop();
});

/** Polls `check` until it returns true, failing with `what` after 20 s. */
async function waitUntil(check: () => boolean | Promise<boolean>, what: string): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

interface RedisPushServer {
  server: PushServer;
  bus: RedisBus;
  logs: LogCapture;
}

/** Starts a push server whose RedisBus uses `keyPrefix`, and waits until /ready returns 200. */
async function startServer(keyPrefix: string): Promise<RedisPushServer> {
  const logs = captureLogs("debug");
  const bus = new RedisBus({ redisUrl: redis.url, keyPrefix, blockMs: 1000, logger: logs.logger });
  const server = await startPushServer({
    config: { port: 0, authUrl: portal.authUrl, allowedOrigins: [ORIGIN] },
    bus,
    logger: logs.logger,
  });
  cleanups.push(async () => {
    await server.close();
    await bus.close();
  });
  await waitUntil(async () => (await getJson(server, "/ready")).status === 200, "ready");
  return { server, bus, logs };
}

async function getJson(
  server: PushServer,
  path: string,
): Promise<{ status: number; body: unknown }> {
  const response = await request(`${server.httpUrl}${path}`);
  return { status: response.statusCode, body: await response.body.json() };
}

async function connectAs(server: PushServer, session: string, last?: string): Promise<TestSocket> {
  const url = last === undefined ? server.url : `${server.url}?last=${encodeURIComponent(last)}`;
  const socket = await openSocket(url, { origin: ORIGIN, cookie: `__ac=${session}` });
  cleanups.push(async () => {
    socket.ws.terminate();
  });
  await socket.waitFor((frame) => frame.type === "welcome");
  return socket;
}

function pushIdsOf(socket: TestSocket): string[] {
  return socket.frames.flatMap((frame: ServerFrame) =>
    frame.type === "message" && frame.pushId !== undefined ? [frame.pushId] : [],
  );
}

function waitForPushId(socket: TestSocket, pushId: string): Promise<ServerFrame> {
  return socket.waitFor((frame) => frame.type === "message" && frame.pushId === pushId);
}

describe("redis push servers", { timeout: 60_000 }, () => {
  const prefix = `test-${randomBytes(4).toString("hex")}:`;
  const key = `${prefix}done`;
  let first: RedisPushServer;
  let second: RedisPushServer;
  let alice: TestSocket[];
  let bob: TestSocket[];
  let carol: TestSocket;

  before(async () => {
    first = await startServer(prefix);
    second = await startServer(prefix);
    alice = [
      await connectAs(first.server, "alice-session"),
      await connectAs(first.server, "alice-session-2"),
      await connectAs(second.server, "alice-session"),
    ];
    bob = [
      await connectAs(first.server, "bob-session"),
      await connectAs(second.server, "bob-session"),
    ];
    carol = await connectAs(second.server, "carol-session");
  });

  /** Sends a marker to bob and alice after the message under test and waits for it everywhere. */
  async function flush(marker: string): Promise<void> {
    await admin.xadd(key, "*", "message", JSON.stringify({ user: "alice", pushId: marker }));
    await admin.xadd(key, "*", "message", JSON.stringify({ user: "bob", pushId: marker }));
    await Promise.all([...alice, ...bob].map((socket) => waitForPushId(socket, marker)));
  }

  it("delivers a stream entry once per socket", async () => {
    const html = '<a href="http://127.0.0.1:8480/doc#preview" data-pat-inject="target: #x"></a>';
    const entry = JSON.stringify({ user: "alice", html, pushId: "s1" });
    const entryId = await admin.xadd(key, "*", "message", entry);
    await flush("s1-flushed");

    for (const socket of alice) {
      assert.deepEqual(
        pushIdsOf(socket).filter((id) => id === "s1"),
        ["s1"],
      );
      const frame = await waitForPushId(socket, "s1");
      assert.equal(frame.type === "message" && frame.html, html);
      assert.equal(frame.id, entryId, "the frame carries the stream entry id");
      assert.equal(frame.type === "message" && frame.live, undefined);
    }
    for (const socket of bob) assert.ok(!pushIdsOf(socket).includes("s1"), "bob gets nothing");
  });

  it("delivers a published message once per socket", async () => {
    await admin.publish(key, JSON.stringify({ user: "alice", pushId: "c1" }));
    // Channel messages reach a subscriber in publish order, so a channel marker flushes them.
    await admin.publish(key, JSON.stringify({ user: "alice", pushId: "c1-flushed" }));
    await admin.publish(key, JSON.stringify({ user: "bob", pushId: "c1-flushed" }));
    await Promise.all([...alice, ...bob].map((socket) => waitForPushId(socket, "c1-flushed")));

    for (const socket of alice) {
      assert.deepEqual(
        pushIdsOf(socket).filter((id) => id === "c1"),
        ["c1"],
      );
      const frame = await waitForPushId(socket, "c1");
      assert.equal(frame.type === "message" && frame.live, true, "a published frame is live");
    }
    for (const socket of bob) assert.ok(!pushIdsOf(socket).includes("c1"), "bob gets nothing");
  });

  it("delivers channel recipients from both sources", async () => {
    await publishDoneMessage(admin, { channel: "news", pushId: "n1" }, { keyPrefix: prefix });
    await admin.publish(key, JSON.stringify({ channel: "news", pushId: "n2" }));

    await waitForPushId(carol, "n1");
    await waitForPushId(carol, "n2");
    await flush("n-flushed");
    // The stream and the channel are separate sources, so their relative order is not fixed.
    assert.deepEqual(
      pushIdsOf(carol).filter((id) => id === "n1"),
      ["n1"],
    );
    assert.deepEqual(
      pushIdsOf(carol).filter((id) => id === "n2"),
      ["n2"],
    );
    for (const socket of [...alice, ...bob]) {
      assert.ok(!pushIdsOf(socket).includes("n1"), "a channel message skips other sockets");
      assert.ok(!pushIdsOf(socket).includes("n2"), "a channel message skips other sockets");
    }
  });

  it("replays stored messages on a new server", async () => {
    const addForAlice = (pushId: string) =>
      admin.xadd(key, "*", "message", JSON.stringify({ user: "alice", pushId }));
    const lastSeen = await addForAlice("r1");
    const missedId = await addForAlice("r2");
    await flush("r-flushed");

    // The new server reads the stream's recent entries at start, so a socket
    // that comes over from another server gets what it missed.
    const third = await startServer(prefix);
    const socket = await openSocket(`${third.server.url}?last=${lastSeen}`, {
      origin: ORIGIN,
      cookie: "__ac=alice-session",
    });
    cleanups.push(async () => {
      socket.ws.terminate();
    });
    const welcome = await socket.waitFor((frame) => frame.type === "welcome");
    assert.equal(welcome.type === "welcome" && welcome.recovery, "complete");
    assert.equal(welcome.id, lastSeen);
    await waitForPushId(socket, "r-flushed");

    assert.deepEqual(pushIdsOf(socket), ["r2", "r-flushed"]);
    assert.equal((await waitForPushId(socket, "r2")).id, missedId);
  });

  it("skips an invalid entry", async () => {
    const invalid = await admin.xadd(key, "*", "message", '{"user":"alice","pushId":"bad","x":1}');
    await admin.xadd(key, "*", "message", JSON.stringify({ user: "alice", pushId: "after-bad" }));

    await Promise.all(alice.map((socket) => waitForPushId(socket, "after-bad")));
    for (const socket of alice) assert.ok(!pushIdsOf(socket).includes("bad"));
    for (const { logs } of [first, second]) {
      const warning = logs
        .records()
        .find((r) => r.msg === "invalid done message skipped" && r.streamId === invalid);
      assert.ok(warning, "each server logs the stream id");
      assert.equal(warning.level, 40);
    }
  });
});

describe("redis push server outage", { timeout: 60_000 }, () => {
  it("recovers after a redis restart", async () => {
    const prefix = `test-${randomBytes(4).toString("hex")}:`;
    const { server, logs } = await startServer(prefix);
    const socket = await connectAs(server, "alice-session");
    // The publisher fails at once while Redis is down instead of queueing.
    const publisher = new Redis(redis.url, {
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      retryStrategy: () => 50,
    });
    publisher.on("error", () => undefined);
    cleanups.push(async () => publisher.disconnect());

    let phase = "before" as "before" | "outage" | "after";
    const writtenAfterRestart: string[] = [];
    let failures = 0;
    const publishLoop = (async () => {
      for (let i = 0; i < 2000 && writtenAfterRestart.length < 20; i++) {
        const pushId = `m${i}`;
        // A write that started during the outage may land before or after the restart.
        const phaseAtStart = phase;
        try {
          await publishDoneMessage(publisher, { user: "alice", pushId }, { keyPrefix: prefix });
          if (phaseAtStart === "after") writtenAfterRestart.push(pushId);
        } catch {
          failures++;
        }
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
    })();

    await waitForPushId(socket, "m3");
    await redis.kill();
    phase = "outage";
    await waitUntil(async () => (await getJson(server, "/ready")).status === 503, "not ready");
    assert.deepEqual((await getJson(server, "/ready")).body, {
      status: "unavailable",
      reason: "redis",
    });
    await waitUntil(() => failures > 0, "the publisher fails");
    assert.equal((await getJson(server, "/health")).status, 200);

    await redis.start();
    phase = "after";
    await publishLoop;
    assert.equal(writtenAfterRestart.length, 20, "the publisher writes after the restart");

    await waitUntil(async () => (await getJson(server, "/ready")).status === 200, "ready again");
    assert.deepEqual((await getJson(server, "/ready")).body, { status: "ready" });
    // The restarted Redis kept nothing, so entries not read before the kill are gone: the
    // push server closes its sockets, and their resume reports a gap.
    assert.deepEqual(await socket.closed, { code: 4000, reason: "message stream reset" });
    const lastSeen = socket.frames.findLast((frame) => frame.type === "message")?.id;
    assert.ok(lastSeen, "the socket saw messages before the restart");
    const resumed = await connectAs(server, "alice-session", lastSeen);
    const welcome = resumed.frames[0];
    assert.equal(welcome?.type === "welcome" ? welcome.recovery : undefined, "gap");

    await publishDoneMessage(admin, { user: "alice", pushId: "final" }, { keyPrefix: prefix });
    await waitForPushId(resumed, "final");
    // The subscriber subscribed again on reconnect, so the channel delivers too.
    await admin.publish(`${prefix}done`, JSON.stringify({ user: "alice", pushId: "published" }));
    await waitForPushId(resumed, "published");

    const delivered = pushIdsOf(resumed);
    assert.equal(new Set(delivered).size, delivered.length, "no message arrives twice");
    const lost = logs.records().filter((r) => r.msg === "redis connection lost");
    assert.equal(lost.filter((r) => r.connection === "reader").length, 1, "one warning per outage");
  });
});
