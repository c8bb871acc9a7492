import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { connect, createServer, type AddressInfo, type Socket } from "node:net";
import { after, before, describe, it } from "node:test";
import { Redis } from "ioredis";
import { startRedisServer, type RedisTestServer } from "../common/redis-test-server.ts";
import type { DoneMessage } from "../protocol/message.ts";
import { RedisBus, type RedisBusOptions } from "./redis-bus.ts";
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
  received: DoneMessage[];
  logs: LogCapture;
  prefix: string;
}

/** Starts a bus on a fresh prefix that records every message, and waits until it is ready. */
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
  const received: DoneMessage[] = [];
  bus.subscribe((message) => received.push(message));
  await waitUntil(() => bus.ready(), "the bus is ready");
  return { bus, received, logs, prefix };
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
    const { received, prefix } = await startBus();

    await admin.xadd(`${prefix}done`, "*", "message", '{"user":"alice","pushId":"p1"}');

    await waitUntil(() => received.length === 1, "the entry arrives");
    assert.deepEqual(received, [{ user: "alice", pushId: "p1" }]);
  });

  it("starts at the stream end", async () => {
    const prefix = freshPrefix();
    await admin.xadd(`${prefix}done`, "*", "message", '{"user":"alice","pushId":"old"}');

    const { received } = await startBus({ keyPrefix: prefix });
    await admin.xadd(`${prefix}done`, "*", "message", '{"user":"alice","pushId":"new"}');

    await waitUntil(() => received.length >= 1, "the new entry arrives");
    assert.deepEqual(pushIds(received), ["new"]);
  });

  it("publishes through the stream", async () => {
    const { bus, received, prefix } = await startBus();

    await bus.publish({ channel: "news", html: "<a></a>" });

    await waitUntil(() => received.length === 1, "the message arrives");
    assert.deepEqual(received, [{ channel: "news", html: "<a></a>" }]);
    assert.equal(await admin.xlen(`${prefix}done`), 1);
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
    const { received, prefix } = await startBus();

    await admin.publish(`${prefix}done`, '{"channel":"news","event":"refresh"}');

    await waitUntil(() => received.length === 1, "the message arrives");
    assert.deepEqual(received, [{ channel: "news", event: "refresh" }]);
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

/** A TCP proxy to Redis whose current connections can stop forwarding bytes without closing. */
interface StallingProxy {
  url: string;
  /** Drops every byte of the connections open now, in both directions, like a dead network path. */
  stall(): void;
  close(): Promise<void>;
}

async function startStallingProxy(targetPort: number): Promise<StallingProxy> {
  const pairs: { client: Socket; upstream: Socket; stalled: boolean }[] = [];
  const server = createServer((client) => {
    const upstream = connect(targetPort, "127.0.0.1");
    const pair = { client, upstream, stalled: false };
    pairs.push(pair);
    client.on("data", (chunk) => {
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
    stall: () => {
      for (const pair of pairs) pair.stalled = true;
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
  /** Appends one entry for alice with `pushId`, at `id` ("*" lets Redis choose). */
  async function addEntry(key: string, pushId: string, id = "*"): Promise<void> {
    await admin.xadd(key, id, "message", JSON.stringify({ user: "alice", pushId }));
  }

  /** Waits long enough for several XREAD rounds that return nothing. */
  async function idleRounds(blockMs: number): Promise<void> {
    await new Promise((resolve) => setTimeout(resolve, blockMs * 3));
  }

  it("reads a recreated stream after DEL", async () => {
    const { received, logs, prefix } = await startBus({ blockMs: 200 });
    const key = `${prefix}done`;
    await addEntry(key, "future-id", "99999999999999-0");
    await waitUntil(() => received.length === 1, "the future entry arrives");

    await admin.del(key);
    await addEntry(key, "after-del");

    await waitUntil(() => received.length === 2, "the entry after DEL arrives");
    assert.deepEqual(pushIds(received), ["future-id", "after-del"]);
    const resets = logs.records().filter((r) => r.msg === "done stream reset");
    assert.equal(resets.length, 1);
    assert.equal(resets[0]?.level, 40);
    assert.equal(resets[0]?.lastId, "99999999999999-0");
  });

  it("reads a stream created when missing", async () => {
    const { received, logs, prefix } = await startBus({ blockMs: 200 });
    const key = `${prefix}done`;
    await addEntry(key, "future-id", "99999999999999-0");
    await waitUntil(() => received.length === 1, "the future entry arrives");

    const missingLogs = () => logs.records().filter((r) => r.msg === "done stream missing");
    const missingBefore = missingLogs().length;
    await admin.del(key);
    await waitUntil(() => missingLogs().length > missingBefore, "the missing stream is noticed");
    assert.equal(missingLogs().at(-1)?.level, 30);
    await addEntry(key, "first");
    await addEntry(key, "second");

    await waitUntil(() => received.length === 3, "the new entries arrive");
    assert.deepEqual(pushIds(received), ["future-id", "first", "second"]);
  });

  it("reads a replaced stream with lower ids", async () => {
    const { bus, received, logs, prefix } = await startBus({ blockMs: 200 });
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
    const resets = logs.records().filter((r) => r.msg === "done stream reset");
    assert.equal(resets.length, 1);
    assert.equal(resets[0]?.lastGeneratedId, "1-0");
    assert.equal(bus.ready(), true);
  });

  it("delivers each entry once across rounds", async () => {
    const { received, logs, prefix } = await startBus({ blockMs: 200 });
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
