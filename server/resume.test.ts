import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { MessageFrame, ServerFrame, WelcomeFrame } from "../protocol/frames.ts";
import {
  expectRejected,
  openSocket,
  ScriptedBus,
  startPortalStub,
  startTestServer,
  startTestServerWith,
  withLast,
  type PortalStub,
  type TestServer,
  type TestSocket,
} from "./test-support.ts";

const ORIGIN = "http://portal.test";

let portal: PortalStub;
const sockets: TestSocket[] = [];

before(async () => {
  portal = await startPortalStub();
});

after(async () => {
  for (const socket of sockets) socket.ws.terminate();
  await portal.close();
});

async function connect(url: string, session: string, last?: string): Promise<TestSocket> {
  const target = last === undefined ? url : withLast(url, last);
  const socket = await openSocket(target, { origin: ORIGIN, cookie: `__ac=${session}` });
  sockets.push(socket);
  return socket;
}

async function welcomeOf(socket: TestSocket): Promise<WelcomeFrame> {
  const frame = await socket.waitFor((f) => f.type === "welcome");
  assert.equal(frame.type, "welcome");
  return frame;
}

function messages(socket: TestSocket): MessageFrame[] {
  return socket.frames.filter((f): f is MessageFrame => f.type === "message");
}

function isPush(pushId: string): (frame: ServerFrame) => boolean {
  return (frame) => frame.type === "message" && frame.pushId === pushId;
}

async function withServer(
  config: Record<string, unknown>,
  run: (test: TestServer) => Promise<void>,
): Promise<void> {
  const test = await startTestServer({
    authUrl: portal.authUrl,
    allowedOrigins: [ORIGIN],
    ...config,
  });
  try {
    await run(test);
  } finally {
    await test.close();
  }
}

describe("resume", { timeout: 30_000 }, () => {
  it("replays missed messages in order", () =>
    withServer({}, async (test) => {
      const first = await connect(test.server.url, "alice-session");
      const start = await welcomeOf(first);
      assert.equal(start.recovery, "none");
      first.ws.terminate();

      const a1 = await test.bus.publish({ user: "alice", pushId: "a1" });
      await test.bus.publish({ user: "bob", pushId: "b1" });
      await test.bus.publish({ channel: "news", pushId: "n1" });
      const a2 = await test.bus.publish({ user: "alice", pushId: "a2" });

      const resumed = await connect(test.server.url, "alice-session", start.id);
      const welcome = await welcomeOf(resumed);
      const a3 = await test.bus.publish({ user: "alice", pushId: "a3" });
      await resumed.waitFor(isPush("a3"));

      assert.equal(welcome.recovery, "complete");
      assert.equal(welcome.id, start.id);
      assert.equal(resumed.frames[0], welcome, "the welcome comes first");
      assert.deepEqual(
        messages(resumed).map((f) => [f.id, f.pushId]),
        [
          [a1, "a1"],
          [a2, "a2"],
          [a3, "a3"],
        ],
      );
    }));

  it("replays only the user's and channels' messages", () =>
    withServer({}, async (test) => {
      const start = await welcomeOf(await connect(test.server.url, "carol-session"));

      await test.bus.publish({ user: "alice", pushId: "alice-private" });
      const c1 = await test.bus.publish({ user: "carol", pushId: "c1" });
      await test.bus.publish({ channel: "sports", pushId: "sports" });
      const n1 = await test.bus.publish({ channel: "news", pushId: "n1" });
      await test.bus.publish({ user: "carol-2", pushId: "prefix-user" });

      const carol = await connect(test.server.url, "carol-session", start.id);
      const alice = await connect(test.server.url, "alice-session", start.id);
      await welcomeOf(carol);
      await welcomeOf(alice);
      await test.bus.publish({ user: "carol", pushId: "fence" });
      await test.bus.publish({ user: "alice", pushId: "fence" });
      await carol.waitFor(isPush("fence"));
      await alice.waitFor(isPush("fence"));

      assert.deepEqual(
        messages(carol).map((f) => [f.id, f.pushId]),
        [
          [c1, "c1"],
          [n1, "n1"],
          [messages(carol)[2]?.id, "fence"],
        ],
      );
      assert.deepEqual(
        messages(alice).map((f) => f.pushId),
        ["alice-private", "fence"],
      );
    }));

  it("reports a gap past recoveryMaxMessages", () =>
    withServer({ recoveryMaxMessages: 3 }, async (test) => {
      const start = await welcomeOf(await connect(test.server.url, "alice-session"));
      const ids: string[] = [];
      for (let i = 0; i < 5; i++) {
        ids.push(await test.bus.publish({ user: "alice", pushId: `m${i}` }));
      }
      const newest = await test.bus.publish({ user: "bob", pushId: "bob" });

      const gap = await connect(test.server.url, "alice-session", start.id);
      const gapWelcome = await welcomeOf(gap);
      const complete = await connect(test.server.url, "alice-session", ids[1]);
      const completeWelcome = await welcomeOf(complete);
      const bob = await connect(test.server.url, "bob-session", start.id);
      const bobWelcome = await welcomeOf(bob);
      await test.bus.publish({ user: "alice", pushId: "fence" });
      await gap.waitFor(isPush("fence"));
      await complete.waitFor(isPush("fence"));

      assert.equal(gapWelcome.recovery, "gap");
      assert.equal(gapWelcome.id, newest, "a gap welcomes with the newest id");
      assert.deepEqual(
        messages(gap).map((f) => f.pushId),
        ["fence"],
        "a gap replays nothing",
      );
      assert.equal(completeWelcome.recovery, "complete");
      assert.deepEqual(
        messages(complete).map((f) => f.pushId),
        ["m2", "m3", "m4", "fence"],
      );
      assert.equal(bobWelcome.recovery, "complete", "bob's messages were not evicted");
    }));

  it("reports a gap past the window", () =>
    withServer({ recoveryWindowMs: 200 }, async (test) => {
      const start = await welcomeOf(await connect(test.server.url, "alice-session"));
      await test.bus.publish({ user: "alice", pushId: "old" });
      await new Promise((resolve) => setTimeout(resolve, 400));
      const newest = await test.bus.publish({ user: "alice", pushId: "new" });

      const resumed = await connect(test.server.url, "alice-session", start.id);
      const welcome = await welcomeOf(resumed);

      assert.equal(welcome.recovery, "gap");
      assert.equal(welcome.id, newest, "a gap welcomes with the newest id");
      assert.deepEqual(messages(resumed), []);
    }));

  it("rejects an invalid last id", () =>
    withServer({}, async (test) => {
      const before = portal.requests.length;
      for (const last of ["", "abc", "1-", "01-1", "1-1-1", "-1-0", "1.5-0", "1-0 "]) {
        const rejection = await expectRejected(withLast(test.server.url, last), {
          origin: ORIGIN,
          cookie: "__ac=alice-session",
        });
        assert.equal(rejection.status, 400, JSON.stringify(last));
        assert.deepEqual(JSON.parse(rejection.body), {
          error: "invalid last id",
          code: "PATPUSH_LAST_ID_INVALID",
        });
      }
      assert.equal(portal.requests.length, before, "the portal was never called");
    }));

  it("rejects a bare or repeated last", () =>
    withServer({}, async (test) => {
      const valid = await test.bus.publish({ user: "alice", pushId: "p1" });
      for (const query of ["?last", `?last=${valid}&last=${valid}`, `?last=${valid}&last=zzz`]) {
        const rejection = await expectRejected(`${test.server.url}${query}`, {
          origin: ORIGIN,
          cookie: "__ac=alice-session",
        });
        assert.equal(rejection.status, 400, query);
        assert.equal(JSON.parse(rejection.body).code, "PATPUSH_LAST_ID_INVALID", query);
      }
    }));

  it("checks the origin before last", () =>
    withServer({}, async (test) => {
      const rejection = await expectRejected(withLast(test.server.url, "bad"), {
        origin: "http://evil.test",
        cookie: "__ac=alice-session",
      });

      assert.equal(rejection.status, 403);
      assert.equal(JSON.parse(rejection.body).code, "PATPUSH_ORIGIN_REJECTED");
    }));

  it("waits for a last id from the future", () =>
    withServer({ resumeWaitMs: 300 }, async (test) => {
      const newest = await test.bus.publish({ user: "alice", pushId: "p1" });
      const future = `${Date.now() + 60_000}-0`;

      const started = Date.now();
      const socket = await connect(test.server.url, "alice-session", future);
      const welcome = await welcomeOf(socket);
      const waitedMs = Date.now() - started;

      assert.ok(waitedMs >= 290, `the upgrade waited ${waitedMs} ms`);
      assert.equal(welcome.recovery, "gap");
      assert.equal(welcome.id, newest);
    }));

  it("completes once the bus reaches last", () =>
    withServer({ resumeWaitMs: 5000 }, async (test) => {
      const last = `${Date.now() + 100}-1`;
      const opening = connect(test.server.url, "alice-session", last);
      await new Promise((resolve) => setTimeout(resolve, 300));
      const reached = await test.bus.publish({ user: "alice", pushId: "reached" });

      const socket = await opening;
      const welcome = await welcomeOf(socket);
      await socket.waitFor(isPush("reached"));

      assert.equal(welcome.recovery, "complete");
      assert.equal(welcome.id, last);
      assert.deepEqual(
        messages(socket).map((f) => f.id),
        [reached],
      );
    }));
});

describe("resume with bus events", { timeout: 30_000 }, () => {
  async function withScripted(
    config: Record<string, unknown>,
    run: (test: TestServer<ScriptedBus>) => Promise<void>,
  ): Promise<void> {
    const bus = new ScriptedBus();
    bus.emit({ type: "coverage", from: "1000-0", reset: false });
    const test = await startTestServerWith(
      { port: 0, authUrl: portal.authUrl, allowedOrigins: [ORIGIN], ...config },
      bus,
    );
    try {
      await run(test);
    } finally {
      await test.close();
    }
  }

  // Ids near the current time, so the recovery window keeps them.
  const base = Date.now();
  const id = (offset: number, seq = 1) => `${base + offset}-${seq}`;

  it("sends live frames without storing them", () =>
    withScripted({}, async (test) => {
      test.bus.emit({ type: "coverage", from: id(0, 0), reset: false });
      const socket = await connect(test.server.url, "alice-session");
      await welcomeOf(socket);

      test.bus.emitMessage(id(1), { user: "alice", pushId: "stored" });
      test.bus.emitMessage(id(1), { user: "alice", pushId: "live" }, "live");
      // A live message can overtake the stored one whose id it carries.
      test.bus.emitMessage(id(2), { user: "alice", pushId: "early-live" }, "live");
      test.bus.emitMessage(id(2), { user: "alice", pushId: "after" });
      await socket.waitFor(isPush("after"));

      assert.deepEqual(
        messages(socket).map((f) => [f.id, f.pushId, f.live]),
        [
          [id(1), "stored", undefined],
          [id(1), "live", true],
          [id(2), "early-live", true],
          [id(2), "after", undefined],
        ],
      );
      const resumed = await connect(test.server.url, "alice-session", id(0, 0));
      assert.equal((await welcomeOf(resumed)).recovery, "complete");
      test.bus.emitMessage(id(3), { user: "alice", pushId: "fence" });
      await resumed.waitFor(isPush("fence"));
      assert.deepEqual(
        messages(resumed).map((f) => f.pushId),
        ["stored", "after", "fence"],
        "the live frame is never replayed",
      );
    }));

  it("stores backfill without sending it", () =>
    withScripted({}, async (test) => {
      test.bus.emit({ type: "coverage", from: id(10, 0), reset: false });
      const open = await connect(test.server.url, "alice-session");
      const openWelcome = await welcomeOf(open);

      test.bus.emitMessage(id(11), { user: "alice", pushId: "backfill" }, "backfill");
      test.bus.emitMessage(id(12), { user: "alice", pushId: "fence" });
      await open.waitFor(isPush("fence"));

      assert.equal(openWelcome.recovery, "none");
      assert.deepEqual(messages(open).map((f) => f.pushId), ["fence"]);
      const resumed = await connect(test.server.url, "alice-session", id(10, 0));
      assert.equal((await welcomeOf(resumed)).recovery, "complete");
      test.bus.emitMessage(id(13), { user: "alice", pushId: "fence-2" });
      await resumed.waitFor(isPush("fence-2"));
      assert.deepEqual(messages(resumed).map((f) => f.pushId), ["backfill", "fence", "fence-2"]);
    }));

  it("waits for the bus coverage", async () => {
    // Like a RedisBus at start: the backfill first, then the coverage event.
    const bus = new ScriptedBus();
    const test = await startTestServerWith(
      { port: 0, authUrl: portal.authUrl, allowedOrigins: [ORIGIN], resumeWaitMs: 5000 },
      bus,
    );
    try {
      bus.emitMessage(id(41), { user: "alice", pushId: "b1" }, "backfill");
      bus.emitMessage(id(42), { user: "alice", pushId: "b2" }, "backfill");
      const resuming = connect(test.server.url, "alice-session", id(41));
      const fresh = connect(test.server.url, "bob-session");
      await new Promise((resolve) => setTimeout(resolve, 200));
      assert.equal(test.server.connectionCount(), 0, "no socket opens before the coverage");

      bus.emit({ type: "coverage", from: id(40, 0), reset: false });
      const resumed = await resuming;
      const welcome = await welcomeOf(resumed);
      bus.emitMessage(id(43), { user: "alice", pushId: "m1" });
      await resumed.waitFor(isPush("m1"));

      assert.equal(welcome.recovery, "complete");
      assert.deepEqual(messages(resumed).map((f) => f.pushId), ["b2", "m1"]);
      const freshWelcome = await welcomeOf(await fresh);
      assert.equal(freshWelcome.recovery, "none");
      assert.equal(freshWelcome.id, id(42), "a new socket starts after the backfill");
    } finally {
      await test.close();
    }
  });

  it("rejects upgrades without coverage", async () => {
    const bus = new ScriptedBus();
    const test = await startTestServerWith(
      { port: 0, authUrl: portal.authUrl, allowedOrigins: [ORIGIN], resumeWaitMs: 300 },
      bus,
    );
    try {
      const started = Date.now();
      for (const last of [undefined, id(50)]) {
        const url = last === undefined ? test.server.url : withLast(test.server.url, last);
        const rejection = await expectRejected(url, { origin: ORIGIN, cookie: "__ac=alice-session" });
        assert.equal(rejection.status, 503);
        assert.deepEqual(JSON.parse(rejection.body), {
          error: "server not ready",
          code: "PATPUSH_NOT_READY",
        });
      }
      assert.ok(Date.now() - started >= 580, "each upgrade waited resumeWaitMs");
      assert.equal(test.server.connectionCount(), 0);

      bus.emit({ type: "coverage", from: id(50, 0), reset: false });
      const opened = await connect(test.server.url, "alice-session");
      assert.deepEqual((await welcomeOf(opened)).recovery, "none");
    } finally {
      await test.close();
    }
  });

  it("skips a repeated message", () =>
    withScripted({}, async (test) => {
      test.bus.emit({ type: "coverage", from: id(60, 0), reset: false });
      const socket = await connect(test.server.url, "alice-session");
      await welcomeOf(socket);

      test.bus.emitMessage(id(61), { user: "alice", pushId: "first" });
      test.bus.emitMessage(id(61), { user: "alice", pushId: "repeat" });
      test.bus.emitMessage(id(60, 5), { user: "alice", pushId: "older" });
      test.bus.emitMessage(id(62), { user: "alice", pushId: "fence" });
      await socket.waitFor(isPush("fence"));

      assert.deepEqual(messages(socket).map((f) => f.pushId), ["first", "fence"]);
      const skipped = test.logs.records().filter((r) => r.msg === "repeated message skipped");
      assert.deepEqual(
        skipped.map((r) => r.msgId),
        [id(61), id(60, 5)],
      );
    }));

  it("closes every socket on reset", () =>
    withScripted({ resumeWaitMs: 100 }, async (test) => {
      test.bus.emit({ type: "coverage", from: id(30, 0), reset: false });
      test.bus.emitMessage(id(31), { user: "alice", pushId: "old" });
      const alice = await connect(test.server.url, "alice-session");
      const carol = await connect(test.server.url, "carol-session");
      await welcomeOf(alice);
      await welcomeOf(carol);

      test.bus.emit({ type: "coverage", from: id(5, 0), reset: true });

      assert.deepEqual(await alice.closed, { code: 4000, reason: "message stream reset" });
      assert.deepEqual(await carol.closed, { code: 4000, reason: "message stream reset" });
      const resumed = await connect(test.server.url, "alice-session", id(31));
      const welcome = await welcomeOf(resumed);
      assert.equal(welcome.recovery, "gap");
      assert.equal(welcome.id, id(5, 0));
      // An id up to the old stream's newest may belong to either stream.
      const fromReset = await connect(test.server.url, "alice-session", id(5, 0));
      assert.equal((await welcomeOf(fromReset)).recovery, "gap");

      test.bus.emitMessage(id(40), { user: "alice", pushId: "new" });
      test.bus.emitMessage(id(41), { user: "alice", pushId: "newer" });
      const beyond = await connect(test.server.url, "alice-session", id(40));
      assert.equal((await welcomeOf(beyond)).recovery, "complete");
      await beyond.waitFor(isPush("newer"));
      assert.deepEqual(
        messages(beyond).map((f) => f.pushId),
        ["newer"],
        "the old stream's messages are gone",
      );
    }));
});
