import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { connect, createServer, type AddressInfo, type Socket } from "node:net";
import { after, before, describe, it } from "node:test";
import { Redis } from "ioredis";
import { startRedisServer, type RedisTestServer } from "../common/redis-test-server.ts";
import type { DoneMessage } from "../protocol/message.ts";
import {
  compareMessageIds,
  messageIdTime,
  ZERO_MESSAGE_ID,
  type MessageId,
} from "../protocol/message-id.ts";
import type { BusCoverage, BusEvent, BusMessage } from "./bus.ts";
import { publishDoneMessage } from "./publish.ts";
import { RedisBus, type RedisBusOptions } from "./redis-bus.ts";
import { previousMessageId } from "./stream-position.ts";
import { captureLogs, type LogCapture } from "./test-support.ts";

let redis: RedisTestServer;
let admin: Redis;
const buses: RedisBus[] = [];

before(async () => {
  redis = await startRedisServer();
  admin = new Redis(redis.url);
});

after(async () => {
  for (const bus of buses) await bus.close();
  admin.disconnect();
  await redis.stop();
});

/** Returns a key prefix that no other test uses. */
function freshPrefix(): string {
  return `test-${randomBytes(4).toString("hex")}:`;
}

/** Polls `check` until it returns true, failing with `what` after 15 s. */
async function waitUntil(check: () => boolean | Promise<boolean>, what: string): Promise<void> {
  const deadline = Date.now() + 15_000;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

interface TestBus {
  bus: RedisBus;
  /** Every event in the order of arrival. */
  events: BusEvent[];
  /** The message events. */
  messages: BusMessage[];
  /** The done messages of the message events. */
  received: DoneMessage[];
  logs: LogCapture;
  prefix: string;
}

/** Starts a bus on a fresh prefix that records every event, and waits until it is ready. */
async function startBus(options: Partial<RedisBusOptions> = {}): Promise<TestBus> {
  const logs = captureLogs("debug");
  const prefix = freshPrefix();
  const bus = new RedisBus({
    redisUrl: redis.url,
    keyPrefix: prefix,
    logger: logs.logger,
    ...options,
  });
  buses.push(bus);
  const events: BusEvent[] = [];
  const messages: BusMessage[] = [];
  const received: DoneMessage[] = [];
  bus.subscribe((event) => {
    events.push(event);
    if (event.type !== "message") return;
    messages.push(event);
    received.push(event.message);
  });
  await waitUntil(() => bus.ready(), "the bus is ready");
  return { bus, events, messages, received, logs, prefix };
}

function coverages(events: BusEvent[]): BusCoverage[] {
  return events.filter((event): event is BusCoverage => event.type === "coverage");
}

/** Asserts that the stored messages' ids strictly increase. */
function assertIncreasing(messages: BusMessage[]): void {
  const stored = messages.filter((message) => !message.live);
  for (let i = 1; i < stored.length; i++) {
    const [before, after] = [stored[i - 1]!.id, stored[i]!.id];
    assert.ok(compareMessageIds(before, after) < 0, `${before} < ${after}`);
  }
}

function pushIds(messages: DoneMessage[]): (string | undefined)[] {
  return messages.map((message) => message.pushId);
}

/** Returns the client ids of the connections named `name`, from CLIENT LIST. */
async function clientIds(name: string): Promise<string[]> {
  const list = (await admin.client("LIST")) as string;
  return list
    .split("\n")
    .filter((line) => line.includes(` name=${name} `))
    .map((line) => /^id=(\d+) /.exec(line)?.[1] ?? "");
}

describe("redis bus stream", { timeout: 30_000 }, () => {
  it("delivers entries from any producer", async () => {
    const { messages, prefix } = await startBus();

    const id = await admin.xadd(`${prefix}done`, "*", "message", '{"user":"alice","pushId":"p1"}');

    await waitUntil(() => messages.length === 1, "the entry arrives");
    assert.deepEqual(messages, [
      {
        type: "message",
        id,
        message: { user: "alice", pushId: "p1" },
        live: false,
        backfill: false,
      },
    ]);
  });

  it("starts at the end without a window", async () => {
    const prefix = freshPrefix();
    const oldEntry = '{"user":"alice","pushId":"old"}';
    const oldId = await admin.xadd(`${prefix}done`, "*", "message", oldEntry);

    const { events, received } = await startBus({ keyPrefix: prefix, recoveryWindowMs: 0 });
    await admin.xadd(`${prefix}done`, "*", "message", '{"user":"alice","pushId":"new"}');

    await waitUntil(() => received.length >= 1, "the new entry arrives");
    assert.deepEqual(pushIds(received), ["new"]);
    assert.deepEqual(coverages(events), [{ type: "coverage", from: oldId, reset: false }]);
  });

  it("publishes through the stream", async () => {
    const { bus, messages, prefix } = await startBus();

    const id = await bus.publish({ channel: "news", html: "<a></a>" });

    await waitUntil(() => messages.length === 1, "the message arrives");
    assert.deepEqual(
      messages.map((m) => [m.id, m.message]),
      [[id, { channel: "news", html: "<a></a>" }]],
    );
    const entries = await admin.xrange(`${prefix}done`, "-", "+");
    assert.deepEqual(
      entries.map(([entryId]) => entryId),
      [id],
    );
  });

  it("hands ids over in XADD order", async () => {
    const { bus, messages, prefix } = await startBus();
    const ids: string[] = [];

    for (let i = 0; i < 20; i++) {
      const message = { user: "alice", pushId: `o${i}` };
      if (i % 2 === 0) ids.push(await bus.publish(message));
      else ids.push((await admin.xadd(`${prefix}done`, "*", "message", JSON.stringify(message)))!);
    }

    await waitUntil(() => messages.length === 20, "every entry arrives");
    assert.deepEqual(
      messages.map((m) => m.id),
      ids,
    );
    assertIncreasing(messages);
  });

  it("rejects invalid messages on publish", async () => {
    const { bus, prefix } = await startBus();

    await assert.rejects(bus.publish({ html: "<a></a>" }), {
      code: "PATPUSH_MESSAGE_INVALID",
      message: /must name exactly one recipient: user or channel/,
    });
    assert.equal(await admin.xlen(`${prefix}done`), 0);
  });

  it("skips invalid entries with a warning", async () => {
    const { bus, received, logs, prefix } = await startBus();
    const key = `${prefix}done`;
    const badJson = await admin.xadd(key, "*", "message", '{"user":"alice"');
    const unknownField = await admin.xadd(
      key,
      "*",
      "message",
      '{"user":"alice","pushId":"p0","colour":"red"}',
    );
    const noRecipient = await admin.xadd(key, "*", "message", '{"pushId":"p0"}');
    const noMessageField = await admin.xadd(key, "*", "body", '{"user":"alice","pushId":"p0"}');
    await admin.xadd(key, "*", "message", '{"user":"alice","pushId":"valid"}');

    await waitUntil(() => received.length === 1, "the valid entry arrives");
    assert.deepEqual(pushIds(received), ["valid"]);

    const warnings = logs.records().filter((r) => r.msg === "invalid done message skipped");
    const problemsOf = (id: string | null) => {
      const record = warnings.find((r) => r.streamId === id);
      assert.ok(record, `a warning names stream id ${id}`);
      assert.equal(record.level, 40);
      assert.equal(record.stream, key);
      return (record.problems as string[]).join("\n");
    };
    assert.match(problemsOf(badJson), /^\(root\): invalid JSON: /);
    assert.match(problemsOf(unknownField), /colour/);
    assert.match(problemsOf(noRecipient), /must name exactly one recipient: user or channel/);
    assert.equal(problemsOf(noMessageField), "message: missing field");
    assert.equal(warnings.length, 4);

    await admin.xadd(key, "*", "message", '{"user":"alice","pushId":"later"}');
    await waitUntil(() => received.length === 2, "a later entry arrives");
    assert.deepEqual(pushIds(received), ["valid", "later"]);
    assert.equal(bus.ready(), true);
  });

  it("trims the stream periodically", async () => {
    const prefix = freshPrefix();
    const key = `${prefix}done`;
    const pipeline = admin.pipeline();
    for (let i = 0; i < 1000; i++)
      pipeline.xadd(key, "*", "message", `{"user":"u","pushId":"${i}"}`);
    await pipeline.exec();

    await startBus({ keyPrefix: prefix, streamMaxLen: 50, trimIntervalMs: 50 });

    // MAXLEN ~ removes only whole macro nodes (stream-node-max-entries, 100 by
    // default), so up to one node beyond the limit remains.
    await waitUntil(async () => (await admin.xlen(key)) < 50 + 100, "the stream is trimmed");
    assert.ok((await admin.xlen(key)) >= 50, "trimming keeps at least streamMaxLen entries");
  });
});

describe("redis bus channel", { timeout: 30_000 }, () => {
  it("delivers published channel messages", async () => {
    const { messages, prefix } = await startBus();

    await admin.publish(`${prefix}done`, '{"channel":"news","event":"refresh"}');

    await waitUntil(() => messages.length === 1, "the message arrives");
    assert.deepEqual(messages, [
      {
        type: "message",
        id: ZERO_MESSAGE_ID,
        message: { channel: "news", event: "refresh" },
        live: true,
        backfill: false,
      },
    ]);
  });

  it("gives live messages the newest stored id", async () => {
    const { bus, messages, prefix } = await startBus();
    const key = `${prefix}done`;

    const first = await bus.publish({ user: "alice", pushId: "stored-1" });
    await waitUntil(() => messages.length === 1, "the first stored message arrives");
    await admin.publish(key, '{"user":"alice","pushId":"live-1"}');
    await waitUntil(() => messages.length === 2, "the first live message arrives");
    const second = await bus.publish({ user: "alice", pushId: "stored-2" });
    await waitUntil(() => messages.length === 3, "the second stored message arrives");
    await admin.publish(key, '{"user":"alice","pushId":"live-2"}');
    await waitUntil(() => messages.length === 4, "the second live message arrives");

    assert.deepEqual(
      messages.map((m) => [m.message.pushId, m.id, m.live]),
      [
        ["stored-1", first, false],
        ["live-1", first, true],
        ["stored-2", second, false],
        ["live-2", second, true],
      ],
    );
  });

  it("skips invalid channel messages", async () => {
    const { received, logs, prefix } = await startBus();

    await admin.publish(`${prefix}done`, '{"user":"alice","channel":"news","pushId":"p0"}');
    await admin.publish(`${prefix}done`, '{"user":"alice","pushId":"valid"}');

    await waitUntil(() => received.length === 1, "the valid message arrives");
    assert.deepEqual(pushIds(received), ["valid"]);
    const warning = logs.records().find((r) => r.msg === "invalid done message skipped");
    assert.ok(warning, "the invalid message is logged");
    assert.equal(warning.level, 40);
    assert.equal(warning.redisChannel, `${prefix}done`);
    assert.match(String(warning.problems), /must name exactly one recipient/);
  });
});

describe("redis bus backfill", { timeout: 30_000 }, () => {
  /** Appends entries for alice with `pushIds`, at ids one millisecond apart from `startMs`. */
  async function addEntriesAt(key: string, startMs: number, pushIds: string[]): Promise<string[]> {
    const pipeline = admin.pipeline();
    pushIds.forEach((pushId, i) => {
      pipeline.xadd(key, `${startMs + i}-0`, "message", JSON.stringify({ user: "alice", pushId }));
    });
    const results = (await pipeline.exec()) ?? [];
    return results.map(([error, id]) => {
      assert.equal(error, null);
      return id as string;
    });
  }

  /** Asserts that `from` is the window start of a bus started between `before` and `after`. */
  function assertWindowStart(from: MessageId, windowMs: number, before: number, after: number) {
    assert.match(from, /-0$/);
    const startMs = messageIdTime(from);
    assert.ok(startMs >= before - windowMs, `${startMs} >= ${before - windowMs}`);
    assert.ok(startMs <= after - windowMs, `${startMs} <= ${after - windowMs}`);
  }

  it("hands over the window, then live entries", async () => {
    const prefix = freshPrefix();
    const key = `${prefix}done`;
    const windowMs = 60_000;
    const now = Date.now();
    await addEntriesAt(key, now - windowMs - 5000, ["too-old-1", "too-old-2"]);
    // More than one XRANGE batch of 100, and not JSON in the middle.
    const inWindow = Array.from({ length: 250 }, (_, i) => `w${i}`);
    const windowIds = await addEntriesAt(key, now - 30_000, inWindow);
    await admin.xadd(key, `${now - 29_000}-0`, "message", "not json");

    const before = Date.now();
    const { events, messages } = await startBus({ keyPrefix: prefix, recoveryWindowMs: windowMs });
    const after = Date.now();
    const liveId = await admin.xadd(key, "*", "message", '{"user":"alice","pushId":"new"}');
    await waitUntil(() => messages.length === 251, "the new entry arrives");

    const backfilled = messages.filter((m) => m.backfill);
    assert.deepEqual(
      backfilled.map((m) => m.message.pushId),
      inWindow,
    );
    assert.deepEqual(
      backfilled.map((m) => m.id),
      windowIds,
    );
    assert.ok(backfilled.every((m) => !m.live));
    assert.deepEqual(
      messages.slice(250).map((m) => [m.id, m.message.pushId, m.backfill]),
      [[liveId, "new", false]],
    );
    assertIncreasing(messages);

    // The coverage follows the backfill and precedes the live entries.
    const coverageIndex = events.findIndex((event) => event.type === "coverage");
    assert.equal(coverageIndex, 250);
    const [coverage] = coverages(events);
    assert.equal(coverage?.reset, false);
    assertWindowStart(coverage!.from, windowMs, before, after);
  });

  it("covers an empty stream from the window start", async () => {
    const prefix = freshPrefix();
    const key = `${prefix}done`;
    const windowMs = 10_000;
    await addEntriesAt(key, Date.now() - 60_000, ["old"]);

    for (const state of ["older than the window", "missing"]) {
      if (state === "missing") await admin.del(key);
      const before = Date.now();
      const { events, messages } = await startBus({
        keyPrefix: prefix,
        recoveryWindowMs: windowMs,
      });
      const after = Date.now();

      assert.deepEqual(messages, [], `no backfill when ${state}`);
      const [coverage, ...rest] = coverages(events);
      assert.deepEqual(rest, []);
      assert.equal(coverage?.reset, false);
      assertWindowStart(coverage!.from, windowMs, before, after);
    }
  });

  it("covers a trimmed stream from its first entry", async () => {
    const prefix = freshPrefix();
    const key = `${prefix}done`;
    const ids = await addEntriesAt(
      key,
      Date.now() - 5000,
      Array.from({ length: 10 }, (_, i) => `t${i}`),
    );
    // Exact trimming keeps the last 4 entries, so the first 6 are gone.
    assert.equal(await admin.xtrim(key, "MAXLEN", 4), 6);

    const { events, messages } = await startBus({ keyPrefix: prefix, recoveryWindowMs: 60_000 });

    assert.deepEqual(
      messages.map((m) => m.id),
      ids.slice(6),
    );
    assert.deepEqual(coverages(events), [
      { type: "coverage", from: previousMessageId(ids[6]!), reset: false },
    ]);
  });

  it("covers a cleared stream from its last id", async () => {
    const prefix = freshPrefix();
    const key = `${prefix}done`;
    const [id] = await addEntriesAt(key, Date.now() - 5000, ["deleted"]);
    assert.equal(await admin.xdel(key, id!), 1);

    const { events, messages } = await startBus({ keyPrefix: prefix, recoveryWindowMs: 60_000 });

    assert.deepEqual(messages, []);
    assert.deepEqual(coverages(events), [{ type: "coverage", from: id, reset: false }]);
  });

  it("gives late subscribers the coverage", async () => {
    const { bus, events } = await startBus();

    const late: BusEvent[] = [];
    bus.subscribe((event) => late.push(event));

    assert.equal(late.length, 1);
    assert.deepEqual(late, coverages(events));
  });

  it("waits for redis at start", async (t) => {
    const server = await startRedisServer({ persistent: true });
    t.after(() => server.stop());
    const prefix = freshPrefix();
    const seed = new Redis(server.url);
    const seedEntry = '{"user":"alice","pushId":"s"}';
    const seedId = await seed.xadd(`${prefix}done`, "*", "message", seedEntry);
    seed.disconnect();
    await server.kill();

    const bus = new RedisBus({ redisUrl: server.url, keyPrefix: prefix });
    buses.push(bus);
    const events: BusEvent[] = [];
    bus.subscribe((event) => events.push(event));
    await new Promise((resolve) => setTimeout(resolve, 500));
    assert.equal(events.length, 0, "no coverage while redis is down");
    assert.equal(bus.ready(), false);

    await server.start();
    await waitUntil(() => bus.ready(), "the bus is ready");
    assert.deepEqual(
      events.map((event) => (event.type === "message" ? [event.id, event.backfill] : event.type)),
      [[seedId, true], "coverage"],
    );
    await bus.close();
  });
});

describe("redis bus persistent restart", { timeout: 60_000 }, () => {
  it("loses nothing across a restart", async (t) => {
    const server = await startRedisServer({ persistent: true });
    t.after(() => server.stop());
    const prefix = freshPrefix();
    const logs = captureLogs("debug");
    const bus = new RedisBus({
      redisUrl: server.url,
      keyPrefix: prefix,
      blockMs: 200,
      logger: logs.logger,
    });
    buses.push(bus);
    const events: BusEvent[] = [];
    bus.subscribe((event) => events.push(event));
    await waitUntil(() => bus.ready(), "the bus is ready");
    const messages = () => events.filter((e): e is BusMessage => e.type === "message");

    // The publisher fails at once while Redis is down instead of queueing.
    const publisher = new Redis(server.url, {
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      retryStrategy: () => 20,
    });
    publisher.on("error", () => undefined);
    t.after(() => publisher.disconnect());

    const published: string[] = [];
    let failures = 0;
    let restarted = false;
    let publishedAfterRestart = 0;
    const publishLoop = (async () => {
      for (let i = 0; i < 3000 && publishedAfterRestart < 50; i++) {
        // A write that started during the outage may land before or after the restart.
        const afterRestart = restarted;
        try {
          const message = { user: "alice", pushId: `p${i}` };
          published.push(await publishDoneMessage(publisher, message, { keyPrefix: prefix }));
          if (afterRestart) publishedAfterRestart++;
        } catch {
          failures++;
        }
        await new Promise((resolve) => setTimeout(resolve, 2));
      }
    })();

    await waitUntil(() => published.length >= 30, "the publisher writes");
    await server.kill();
    await waitUntil(() => failures > 0, "the publisher fails");
    await server.start();
    restarted = true;
    await publishLoop;
    assert.equal(publishedAfterRestart, 50, "the publisher writes after the restart");

    await waitUntil(
      () => messages().length >= published.length,
      "every published message arrives",
    );
    // A write that Redis stored just before SIGKILL fails for the publisher but
    // is handed over, so the bus may hand over more ids than were published.
    const handed = new Set(messages().map((m) => m.id));
    assert.deepEqual(
      published.filter((id) => !handed.has(id)),
      [],
      "every published id is handed over",
    );
    assertIncreasing(messages());
    assert.deepEqual(
      coverages(events).map((c) => c.reset),
      [false],
      "no reset across the restart",
    );
    const lost = logs.records().filter((r) => r.msg === "redis connection lost");
    assert.ok(
      lost.some((r) => r.connection === "reader"),
      "the reader lost its connection",
    );
    await bus.close();
  });
});

/** A TCP proxy to Redis whose current connections can stop forwarding bytes without closing. */
interface StallingProxy {
  url: string;
  /**
   * Drops every byte of the connections open now, in both directions, like a
   * dead network path. With `clientName`, only of the connections that sent
   * that name (CLIENT SETNAME) so far.
   */
  stall(clientName?: string): void;
  close(): Promise<void>;
}

async function startStallingProxy(targetPort: number): Promise<StallingProxy> {
  const pairs: { client: Socket; upstream: Socket; stalled: boolean; sent: string }[] = [];
  const server = createServer((client) => {
    const upstream = connect(targetPort, "127.0.0.1");
    const pair = { client, upstream, stalled: false, sent: "" };
    pairs.push(pair);
    client.on("data", (chunk) => {
      // The start of a connection carries its CLIENT SETNAME command.
      if (pair.sent.length < 4096) pair.sent += chunk.toString("latin1");
      if (!pair.stalled) upstream.write(chunk);
    });
    upstream.on("data", (chunk) => {
      if (!pair.stalled) client.write(chunk);
    });
    client.on("close", () => upstream.destroy());
    upstream.on("close", () => client.destroy());
    client.on("error", () => undefined);
    upstream.on("error", () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;

  return {
    url: `redis://127.0.0.1:${port}`,
    stall: (clientName?: string) => {
      for (const pair of pairs) {
        if (clientName === undefined || pair.sent.includes(`\r\n${clientName}\r\n`)) {
          pair.stalled = true;
        }
      }
    },
    close: async () => {
      for (const pair of pairs) pair.client.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

describe("redis bus reader reconnect", { timeout: 30_000 }, () => {
  it("resumes from the last entry id", async () => {
    const { received, logs, prefix } = await startBus({ connectionName: "reconnect-test" });
    const key = `${prefix}done`;
    const expected: string[] = [];

    for (let round = 0; round < 3; round++) {
      const [readerId] = await clientIds("reconnect-test-reader");
      assert.ok(readerId, "the reader connection is listed");
      // The entries follow the kill in one pipeline, so Redis stores them before
      // the reader can reconnect (the default retryStrategy of ioredis 5 waits 50 ms first).
      const pipeline = admin.pipeline().client("KILL", "ID", readerId);
      for (let i = 0; i < 5; i++) {
        const pushId = `r${round}-${i}`;
        expected.push(pushId);
        pipeline.xadd(key, "*", "message", JSON.stringify({ user: "alice", pushId }));
      }
      const results = await pipeline.exec();
      assert.deepEqual(results?.[0], [null, 1], "CLIENT KILL closed one connection");

      await waitUntil(() => received.length >= expected.length, `round ${round} arrives`);
    }

    await admin.xadd(key, "*", "message", '{"user":"alice","pushId":"last"}');
    await waitUntil(() => received.at(-1)?.pushId === "last", "the last entry arrives");
    assert.deepEqual(pushIds(received), [...expected, "last"]);
    const lost = logs.records().filter((r) => r.msg === "redis connection lost");
    assert.ok(lost.length >= 1, "the lost connection is logged");
    assert.ok(lost.every((r) => r.connection === "reader" && r.level === 40));
  });
});

describe("redis bus trimmed during an outage", { timeout: 30_000 }, () => {
  it("resets when unread entries were trimmed", async () => {
    const { events, received, logs, prefix } = await startBus({ connectionName: "trim-test" });
    const key = `${prefix}done`;
    await admin.xadd(key, "*", "message", '{"user":"alice","pushId":"before"}');
    await waitUntil(() => received.length === 1, "the first entry arrives");

    const [readerId] = await clientIds("trim-test-reader");
    assert.ok(readerId, "the reader connection is listed");
    // The entries follow the kill in one pipeline, so Redis trims them before the reader is back.
    const pipeline = admin.pipeline().client("KILL", "ID", readerId);
    for (let i = 0; i < 20; i++) {
      const message = JSON.stringify({ user: "alice", pushId: `during-${i}` });
      pipeline.xadd(key, "MAXLEN", 5, "*", "message", message);
    }
    const results = await pipeline.exec();
    assert.deepEqual(results?.[0], [null, 1], "CLIENT KILL closed one connection");

    await waitUntil(() => received.at(-1)?.pushId === "during-19", "the kept entries arrive");
    const resets = coverages(events).filter((coverage) => coverage.reset);
    assert.equal(resets.length, 1, "one reset coverage");
    const firstKept = (await admin.xrange(key, "-", "+", "COUNT", 1))[0]?.[0];
    assert.ok(firstKept, "the stream keeps entries");
    assert.equal(compareMessageIds(resets[0]!.from, firstKept), -1, "coverage starts below them");
    const resetIndex = events.indexOf(resets[0]!);
    const afterReset = events.slice(resetIndex).filter((event) => event.type === "message");
    assert.equal(afterReset.length, 5, "the five kept entries follow the reset");
    const warned = logs.records().find((r) => r.msg === "done stream trimmed past unread entries");
    assert.ok(warned, "the loss is logged");
  });
});

describe("redis bus stalled path", { timeout: 30_000 }, () => {
  it("reconnects a silent reader", async (t) => {
    const proxy = await startStallingProxy(redis.port);
    t.after(() => proxy.close());
    const { bus, received, logs, prefix } = await startBus({ redisUrl: proxy.url, blockMs: 200 });

    proxy.stall();
    for (let i = 0; i < 5; i++) {
      await admin.xadd(
        `${prefix}done`,
        "*",
        "message",
        JSON.stringify({ user: "alice", pushId: `s${i}` }),
      );
    }

    await waitUntil(() => received.length >= 5, "the entries arrive over a new connection");
    assert.deepEqual(pushIds(received), ["s0", "s1", "s2", "s3", "s4"]);
    const stalled = logs.records().find((r) => r.msg === "stream read stalled, reconnecting");
    assert.ok(stalled, "the stall is logged");
    assert.equal(stalled.level, 40);
    await bus.close();
  });
});

describe("redis bus subscription probe", { timeout: 30_000 }, () => {
  it("rebuilds a silent subscription", async (t) => {
    const proxy = await startStallingProxy(redis.port);
    t.after(() => proxy.close());
    const { bus, messages, logs, prefix } = await startBus({
      redisUrl: proxy.url,
      connectionName: "probe-test",
    });
    const stalledLogs = () =>
      logs.records().filter((r) => r.msg === "redis subscription stalled, reconnecting");

    // Probes flow for several rounds without a false alarm and without reaching subscribers.
    await new Promise((resolve) => setTimeout(resolve, 4000));
    assert.deepEqual(stalledLogs(), []);
    assert.equal(messages.length, 0, "probes reach no subscriber");
    assert.equal(bus.ready(), true);

    const stalledAt = Date.now();
    proxy.stall("probe-test-subscriber");
    let wentUnready = false;
    await waitUntil(() => {
      wentUnready ||= !bus.ready();
      return stalledLogs().length > 0 && bus.ready();
    }, "the subscription is rebuilt");

    const [record] = stalledLogs();
    assert.equal(record?.level, 40);
    const detectionMs = (record?.time as number) - stalledAt;
    assert.ok(detectionMs < 5000, `detected after ${detectionMs} ms`);
    assert.ok(wentUnready, "the bus is not ready while the subscription is rebuilt");

    await admin.publish(`${prefix}done`, '{"user":"alice","pushId":"after-rebuild"}');
    await waitUntil(() => messages.length === 1, "the channel message arrives");
    assert.deepEqual(
      messages.map((m) => [m.message.pushId, m.live]),
      [["after-rebuild", true]],
    );
    assert.equal(stalledLogs().length, 1);
    await bus.close();
  });
});

describe("redis bus close", { timeout: 30_000 }, () => {
  it("returns during a blocking read", { timeout: 5000 }, async () => {
    const { bus } = await startBus({ blockMs: 30_000 });

    await bus.close();

    assert.equal(bus.ready(), false);
    await assert.rejects(bus.publish({ user: "alice", pushId: "p1" }), {
      code: "PATPUSH_BUS_CLOSED",
      message: /the bus is closed/,
    });
  });

  it("returns while redis is down", { timeout: 10_000 }, async () => {
    const { bus } = await startBus({ blockMs: 30_000 });
    await redis.kill();
    try {
      await waitUntil(() => !bus.ready(), "the bus notices the outage");

      await bus.close();

      assert.equal(bus.ready(), false);
    } finally {
      await redis.start();
    }
  });
});

describe("redis bus stream reset", { timeout: 30_000 }, () => {
  /** Appends an entry for alice with `pushId` at `id` ("*" lets Redis choose), returning its id. */
  async function addEntry(key: string, pushId: string, id = "*"): Promise<string> {
    const added = await admin.xadd(key, id, "message", JSON.stringify({ user: "alice", pushId }));
    assert.ok(added, "XADD returned an id");
    return added;
  }

  /**
   * Asserts that the events are the start coverage, the messages `before`, one
   * reset coverage with `from`, then the messages `after`.
   */
  function assertResetBetween(
    events: BusEvent[],
    before: string[],
    from: MessageId,
    after: string[],
  ): void {
    const summary = events.map((event) =>
      event.type === "message" ? event.message.pushId : `${event.reset ? "reset" : "start"}`,
    );
    assert.deepEqual(summary, ["start", ...before, "reset", ...after]);
    assert.deepEqual(coverages(events)[1], { type: "coverage", from, reset: true });
    assertIncreasing(events.slice(events.indexOf(coverages(events)[1]!) + 1) as BusMessage[]);
  }

  /** Waits long enough for several XREAD rounds that return nothing. */
  async function idleRounds(blockMs: number): Promise<void> {
    await new Promise((resolve) => setTimeout(resolve, blockMs * 3));
  }

  it("reads a recreated stream after DEL", async () => {
    const { events, received, logs, prefix } = await startBus({ blockMs: 200 });
    const key = `${prefix}done`;
    await addEntry(key, "future-id", "99999999999999-0");
    await waitUntil(() => received.length === 1, "the future entry arrives");

    await admin.del(key);
    const afterDel = await addEntry(key, "after-del");

    await waitUntil(() => received.length === 2, "the entry after DEL arrives");
    assert.deepEqual(pushIds(received), ["future-id", "after-del"]);
    assertResetBetween(events, ["future-id"], previousMessageId(afterDel), ["after-del"]);
    const resets = logs.records().filter((r) => r.msg === "done stream reset");
    assert.equal(resets.length, 1);
    assert.equal(resets[0]?.level, 40);
    assert.equal(resets[0]?.lastId, "99999999999999-0");
  });

  it("reads a stream created when missing", async () => {
    const { events, received, logs, prefix } = await startBus({ blockMs: 200 });
    const key = `${prefix}done`;
    await addEntry(key, "future-id", "99999999999999-0");
    await waitUntil(() => received.length === 1, "the future entry arrives");

    const missingLogs = () => logs.records().filter((r) => r.msg === "done stream missing");
    const missingBefore = missingLogs().length;
    await admin.del(key);
    await waitUntil(() => missingLogs().length > missingBefore, "the missing stream is noticed");
    assert.equal(missingLogs().at(-1)?.level, 30);
    const first = await addEntry(key, "first");
    await addEntry(key, "second");

    await waitUntil(() => received.length === 3, "the new entries arrive");
    assert.deepEqual(pushIds(received), ["future-id", "first", "second"]);
    // The key went away with whatever was not read yet, so the missing key is the reset.
    assert.ok(first, "the first entry has an id");
    assertResetBetween(events, ["future-id"], ZERO_MESSAGE_ID, ["first", "second"]);
    const deleted = logs.records().filter((r) => r.msg === "done stream deleted");
    assert.equal(deleted.length, 1, "the deleted stream is logged once");
    assert.equal(deleted[0]?.level, 40);
  });

  it("reads a replaced stream with lower ids", async () => {
    const { bus, events, received, logs, prefix } = await startBus({ blockMs: 200 });
    const key = `${prefix}done`;
    await addEntry(key, "old");
    await waitUntil(() => received.length === 1, "the old entry arrives");

    await admin.del(key);
    await addEntry(key, "low-1", "1-0");
    await waitUntil(() => received.length === 2, "the low entry arrives");
    await addEntry(key, "low-2", "2-0");
    await waitUntil(() => received.length === 3, "the next low entry arrives");
    await idleRounds(200);

    assert.deepEqual(pushIds(received), ["old", "low-1", "low-2"]);
    assertResetBetween(events, ["old"], "0-18446744073709551615", ["low-1", "low-2"]);
    const resets = logs.records().filter((r) => r.msg === "done stream reset");
    assert.equal(resets.length, 1);
    assert.equal(resets[0]?.lastGeneratedId, "1-0");
    assert.equal(bus.ready(), true);
  });

  it("delivers each entry once across rounds", async () => {
    const { events, received, logs, prefix } = await startBus({ blockMs: 200 });
    const key = `${prefix}done`;
    const expected: string[] = [];

    for (let round = 0; round < 5; round++) {
      for (let i = 0; i < 3; i++) {
        const pushId = `n${round}-${i}`;
        expected.push(pushId);
        await addEntry(key, pushId);
      }
      await waitUntil(() => received.length >= expected.length, `round ${round} arrives`);
      // XDEL of the newest entry lowers the newest id, but not the last-generated-id.
      if (round === 2) {
        const [[newestId] = []] = await admin.xrevrange(key, "+", "-", "COUNT", 1);
        assert.ok(newestId, "the stream has a newest entry");
        assert.equal(await admin.xdel(key, newestId), 1);
      }
      await idleRounds(200);
    }

    assert.deepEqual(pushIds(received), expected);
    assert.equal(logs.records().filter((r) => r.msg === "done stream reset").length, 0);
    assert.deepEqual(
      coverages(events).map((c) => c.reset),
      [false],
    );
  });

  it("is not ready on WRONGTYPE", async () => {
    const { bus, received, logs, prefix } = await startBus({ blockMs: 200 });
    const key = `${prefix}done`;

    await admin.set(key, "not a stream");
    await waitUntil(() => !bus.ready(), "the bus reports the failing reads");
    // Several retries run during the idle rounds, and each streak is logged once.
    await idleRounds(200);
    assert.equal(bus.ready(), false);

    await admin.del(key);
    await addEntry(key, "fixed");
    await waitUntil(() => bus.ready(), "the bus is ready again");
    await waitUntil(() => received.length === 1, "the entry arrives");

    assert.deepEqual(pushIds(received), ["fixed"]);
    const failures = logs.records().filter((r) => r.msg === "stream read failed");
    assert.equal(failures.length, 1);
    assert.match(String((failures[0]?.err as { message?: string })?.message), /WRONGTYPE/);
    const resumed = logs.records().filter((r) => r.msg === "stream read resumed");
    assert.equal(resumed.length, 1);
  });
});
