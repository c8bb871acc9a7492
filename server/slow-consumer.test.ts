import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { request } from "undici";
import {
  metricValue,
  openSocket,
  startPortalStub,
  startTestServer,
  type PortalStub,
  type TestServer,
  type TestSocket,
} from "./test-support.ts";

const ORIGIN = "http://portal.test";
const MAX_BACKPRESSURE_BYTES = 64 * 1024;
const HTML = "x".repeat(60_000);

let portal: PortalStub;
let test: TestServer;

before(async () => {
  portal = await startPortalStub();
  test = await startTestServer({
    authUrl: portal.authUrl,
    allowedOrigins: [ORIGIN],
    maxBackpressureBytes: MAX_BACKPRESSURE_BYTES,
  });
});

after(async () => {
  await test.close();
  await portal.close();
});

async function connect(session: string): Promise<TestSocket> {
  const socket = await openSocket(test.server.url, { origin: ORIGIN, cookie: `__ac=${session}` });
  await socket.waitFor((f) => f.type === "welcome");
  return socket;
}

function slowClosures(): number {
  return test.logs.records().filter((r) => r.msg === "slow socket closed").length;
}

async function readMetrics(): Promise<string> {
  const response = await request(`${test.server.httpUrl}/metrics`);
  return response.body.text();
}

/**
 * Publishes large messages while the reading side of `socket` is paused,
 * until the server closes a slow socket, with at most `maxMessages` messages.
 */
async function publishUntilClosed(
  socket: TestSocket,
  message: Record<string, unknown>,
  maxMessages: number,
  pauseMs: number,
): Promise<number> {
  const before = slowClosures();
  socket.ws.pause();
  let sent = 0;
  while (sent < maxMessages && slowClosures() === before) {
    await test.bus.publish({ ...message, html: HTML });
    sent += 1;
    await new Promise((resolve) => setTimeout(resolve, pauseMs));
  }
  socket.ws.resume();
  return sent;
}

describe("slow consumer", { timeout: 60_000 }, () => {
  it("closes a stalled user socket with 4003", async () => {
    const stalled = await connect("alice-session");
    const reading = await connect("alice-session-2");
    const metricsBefore = await readMetrics();

    const sent = await publishUntilClosed(stalled, { user: "alice" }, 1000, 0);

    assert.deepEqual(await stalled.closed, { code: 4003, reason: "slow consumer" });
    await test.bus.publish({ user: "alice", pushId: "after-close" });
    await reading.waitFor((f) => f.type === "message" && f.pushId === "after-close");
    assert.equal(reading.ws.readyState, reading.ws.OPEN, "the reading socket stays open");
    const received = reading.frames.filter((f) => f.type === "message" && f.html === HTML);
    assert.equal(received.length, sent, "the reading socket got every message");

    const record = test.logs.records().find((r) => r.msg === "slow socket closed");
    assert.equal(record?.level, 40);
    assert.ok((record?.bufferedBytes as number) > MAX_BACKPRESSURE_BYTES);
    const metrics = await readMetrics();
    const closes = "patpush_slow_consumer_closes_total";
    assert.equal(metricValue(metricsBefore, closes), 0);
    assert.equal(metricValue(metrics, closes), 1);
    assert.equal(metricValue(metrics, 'patpush_socket_closes_total{code="4003"}'), 1);
    reading.ws.terminate();
  });

  it("closes a stalled channel socket", async () => {
    // Channel traffic is checked by the sweep once a second. A larger cap and a slower
    // publisher let the buffer stay between the cap and the backstop for over a second.
    const channelTest = await startTestServer({
      authUrl: portal.authUrl,
      allowedOrigins: [ORIGIN],
      maxBackpressureBytes: 4 * 1024 * 1024,
    });
    try {
      const socket = await openSocket(channelTest.server.url, {
        origin: ORIGIN,
        cookie: "__ac=carol-session",
      });
      await socket.waitFor((f) => f.type === "welcome");
      const closed = () => channelTest.logs.records().some((r) => r.msg === "slow socket closed");

      socket.ws.pause();
      for (let i = 0; i < 1500 && !closed(); i++) {
        await channelTest.bus.publish({ channel: "news", html: HTML });
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      socket.ws.resume();

      assert.deepEqual(await socket.closed, { code: 4003, reason: "slow consumer" });
      const response = await request(`${channelTest.server.httpUrl}/metrics`);
      const metrics = await response.body.text();
      assert.equal(metricValue(metrics, "patpush_slow_consumer_closes_total"), 1);
    } finally {
      await channelTest.close();
    }
  });
});

describe("slow consumer replay", { timeout: 60_000 }, () => {
  it("stops a replay past the cap", async () => {
    const replayTest = await startTestServer({
      authUrl: portal.authUrl,
      allowedOrigins: [ORIGIN],
      maxBackpressureBytes: MAX_BACKPRESSURE_BYTES,
    });
    try {
      const first = await openSocket(replayTest.server.url, {
        origin: ORIGIN,
        cookie: "__ac=alice-session",
      });
      const start = await first.waitFor((f) => f.type === "welcome");
      first.ws.terminate();
      const ids: string[] = [];
      for (let i = 0; i < 100; i++) {
        ids.push(await replayTest.bus.publish({ user: "alice", html: HTML, pushId: `r${i}` }));
      }

      // Each resume gets what fits under the cap, then 4003, and the next one goes on from there.
      const received: string[] = [];
      const closeCodes: number[] = [];
      let last = start.id;
      for (let attempt = 0; attempt < 100 && received.length < ids.length; attempt++) {
        const socket = await openSocket(`${replayTest.server.url}?last=${last}`, {
          origin: ORIGIN,
          cookie: "__ac=alice-session",
        });
        const welcome = await socket.waitFor((f) => f.type === "welcome");
        assert.equal(welcome.type === "welcome" && welcome.recovery, "complete");
        const outcome = await Promise.race([
          socket.closed,
          socket.waitFor((f) => f.type === "message" && f.id === ids.at(-1)),
        ]);
        if ("code" in outcome) closeCodes.push(outcome.code);
        const frames = socket.frames.filter((f) => f.type === "message");
        received.push(...frames.map((f) => f.id));
        last = frames.at(-1)?.id ?? last;
        socket.ws.terminate();
      }

      assert.deepEqual(received, ids, "every message arrived once, in order");
      assert.ok(closeCodes.length > 0, "the replay did not fit under the cap at once");
      assert.deepEqual(
        closeCodes,
        closeCodes.map(() => 4003),
      );
    } finally {
      await replayTest.close();
    }
  });
});
