import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { MessageFrame, ServerFrame } from "../protocol/frames.ts";
import { compareMessageIds, maxMessageId, ZERO_MESSAGE_ID } from "../protocol/message-id.ts";
import { toMessageFrame } from "./delivery.ts";
import {
  openSocket,
  sessionResponder,
  SESSIONS,
  startPortalStub,
  startTestServer,
  type PortalStub,
  type TestServer,
  type TestSocket,
} from "./test-support.ts";

const ORIGIN = "http://portal.test";

let portal: PortalStub;
let test: TestServer;
const sockets: Record<string, TestSocket> = {};

const isMessage = (frame: ServerFrame): frame is MessageFrame => frame.type === "message";

function messagesOf(name: string, pushId?: string): MessageFrame[] {
  const socket = sockets[name];
  assert.ok(socket, `socket ${name} exists`);
  return socket.frames.filter(isMessage).filter((f) => pushId === undefined || f.pushId === pushId);
}

/**
 * Publishes one fence message per recipient and waits until every socket got
 * its fence. A socket delivers frames in order, so anything published before
 * the fences and still missing then will never arrive.
 */
async function fence(label: string): Promise<void> {
  const pushId = `fence-${label}`;
  for (const user of ["alice", "bob", "#"]) await test.bus.publish({ user, pushId });
  await test.bus.publish({ channel: "news", pushId });
  await Promise.all(
    Object.values(sockets).map((s) => s.waitFor((f) => isMessage(f) && f.pushId === pushId)),
  );
}

/** Returns the highest message id any socket received; after a fence, the server's newest id. */
function lastIdSeen(): string {
  const ids = Object.values(sockets).flatMap((s) => s.frames.filter(isMessage).map((f) => f.id));
  return ids.reduce(maxMessageId, ZERO_MESSAGE_ID);
}

before(async () => {
  // "#" would be a wildcard in MQTT-style topic matching; here it must stay an ordinary user id.
  const sessions = { ...SESSIONS, "hash-session": { user: "#", channels: [] } };
  portal = await startPortalStub(sessionResponder(sessions));
  test = await startTestServer({ authUrl: portal.authUrl, allowedOrigins: [ORIGIN] });

  const connections: Record<string, string> = {
    alice1: "alice-session",
    alice2: "alice-session-2",
    bob1: "bob-session",
    bob2: "bob-session-2",
    carol: "carol-session",
    hash: "hash-session",
  };
  for (const [name, session] of Object.entries(connections)) {
    const socket = await openSocket(test.server.url, { origin: ORIGIN, cookie: `__ac=${session}` });
    sockets[name] = socket;
    await socket.waitFor((f) => f.type === "welcome");
  }
});

after(async () => {
  for (const socket of Object.values(sockets)) socket.ws.terminate();
  await test.close();
  await portal.close();
});

describe("delivery", { timeout: 30_000 }, () => {
  it("reaches every socket of the user", async () => {
    await test.bus.publish({ user: "alice", html: "<a href='/x#y'></a>", pushId: "for-alice" });
    await fence("user");

    for (const name of ["alice1", "alice2"]) {
      const received = messagesOf(name, "for-alice");
      assert.equal(received.length, 1, `${name} got it exactly once`);
      assert.deepEqual(received[0], {
        type: "message",
        id: received[0]?.id,
        html: "<a href='/x#y'></a>",
        pushId: "for-alice",
      });
    }
  });

  it("skips other users", async () => {
    await test.bus.publish({ user: "alice", pushId: "alice-only" });
    await fence("others");

    for (const name of ["bob1", "bob2", "carol", "hash"]) {
      assert.deepEqual(messagesOf(name, "alice-only"), [], `${name} did not get it`);
    }
    assert.equal(messagesOf("alice1", "alice-only").length, 1);
  });

  it("reaches only granted channel sockets", async () => {
    await test.bus.publish({ channel: "news", event: "headline", data: { n: 1 } });
    await test.bus.publish({ channel: "sports", event: "score" });
    await fence("channel");

    const carol = sockets.carol?.frames.filter(isMessage).filter((f) => f.event === "headline");
    assert.equal(carol?.length, 1);
    assert.equal(carol?.[0]?.channel, "news");
    assert.deepEqual(carol?.[0]?.data, { n: 1 });
    for (const [name, socket] of Object.entries(sockets)) {
      const events = socket.frames.filter(isMessage).map((f) => f.event);
      if (name !== "carol") assert.ok(!events.includes("headline"), `${name} did not get news`);
      assert.ok(!events.includes("score"), `${name} did not get sports`);
    }
  });

  it("sends the bus's increasing ids", async () => {
    const published: string[] = [];
    for (let i = 0; i < 5; i++) {
      const user = i % 2 === 0 ? "alice" : "bob";
      published.push(await test.bus.publish({ user, pushId: `seq-${i}` }));
    }
    await fence("ids");

    for (const socket of Object.values(sockets)) {
      const ids = socket.frames.filter(isMessage).map((f) => f.id);
      const sorted = [...ids].sort(compareMessageIds);
      assert.deepEqual(ids, sorted);
      assert.equal(new Set(ids).size, ids.length, "no id repeats");
    }
    const sequenceIds = (name: string) =>
      messagesOf(name)
        .filter((f) => f.pushId?.startsWith("seq-"))
        .map((f) => f.id);
    assert.deepEqual(sequenceIds("alice1"), [published[0], published[2], published[4]]);
    assert.deepEqual(sequenceIds("bob1"), [published[1], published[3]]);
  });

  it("welcomes with the last id", async () => {
    await test.bus.publish({ user: "bob", pushId: "before-open" });
    await fence("welcome");
    const lastId = lastIdSeen();

    const late = await openSocket(test.server.url, {
      origin: ORIGIN,
      cookie: "__ac=alice-session",
    });
    try {
      const welcome = await late.waitFor((f) => f.type === "welcome");
      assert.equal(welcome.id, lastId);
      assert.equal(welcome.type === "welcome" && welcome.recovery, "none");
    } finally {
      late.ws.terminate();
    }
  });

  it("rejects invalid messages for nobody", async () => {
    const invalid = { user: "alice", channel: "news", html: "<p>invalid</p>" };
    const lastId = lastIdSeen();

    await assert.rejects(test.bus.publish(invalid), {
      code: "PATPUSH_MESSAGE_INVALID",
      message: /must name exactly one recipient: user or channel/,
    });
    await fence("invalid");

    for (const socket of Object.values(sockets)) {
      assert.ok(!socket.frames.some((f) => isMessage(f) && f.html === invalid.html));
    }
    const fenceIds = ["alice1", "bob1", "hash", "carol"].map(
      (name) => messagesOf(name, "fence-invalid")[0]?.id ?? ZERO_MESSAGE_ID,
    );
    assert.ok(compareMessageIds(fenceIds[0] ?? ZERO_MESSAGE_ID, lastId) > 0);
    assert.deepEqual(fenceIds, [...fenceIds].sort(compareMessageIds));
  });
});

describe("message frame", () => {
  it("strips the user recipient", () => {
    assert.deepEqual(toMessageFrame("7-1", { user: "alice", html: "<a></a>", pushId: "p" }), {
      type: "message",
      id: "7-1",
      html: "<a></a>",
      pushId: "p",
    });
  });

  it("keeps the channel recipient", () => {
    assert.deepEqual(toMessageFrame("8-0", { channel: "news", event: "e", data: [1] }), {
      type: "message",
      id: "8-0",
      channel: "news",
      event: "e",
      data: [1],
    });
  });

  it("marks a live message", () => {
    const text = JSON.stringify(toMessageFrame("9-2", { user: "bob", pushId: "p" }, true));

    assert.equal(text, '{"type":"message","id":"9-2","live":true,"pushId":"p"}');
  });
});
