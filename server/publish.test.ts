import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { Redis } from "ioredis";
import { startRedisServer, type RedisTestServer } from "../common/redis-test-server.ts";
import { compareMessageIds, isMessageId } from "../protocol/message-id.ts";
import { MessageError } from "./errors.ts";
import { doneKey, publishDoneMessage } from "./publish.ts";

let redis: RedisTestServer;
let client: Redis;

before(async () => {
  redis = await startRedisServer();
  client = new Redis(redis.url);
});

after(async () => {
  client.disconnect();
  await redis.stop();
});

function freshPrefix(): string {
  return `test-${randomBytes(4).toString("hex")}:`;
}

describe("publishDoneMessage", { timeout: 30_000 }, () => {
  it("appends the message JSON", async () => {
    const prefix = freshPrefix();
    const message = { user: "alice", html: "<a></a>", data: { n: 1 } };

    const id = await publishDoneMessage(client, message, { keyPrefix: prefix });

    const entries = await client.xrange(`${prefix}done`, "-", "+");
    assert.equal(entries.length, 1);
    const [entryId, fields] = entries[0]!;
    assert.equal(entryId, id);
    assert.deepEqual(fields, ["message", JSON.stringify(message)]);
  });

  it("returns increasing message ids", async () => {
    const prefix = freshPrefix();
    const ids: string[] = [];

    for (let i = 0; i < 50; i++) {
      const message = { user: "alice", pushId: `p${i}` };
      ids.push(await publishDoneMessage(client, message, { keyPrefix: prefix }));
    }

    for (const id of ids) assert.ok(isMessageId(id), `${id} is a message id`);
    for (let i = 1; i < ids.length; i++) {
      assert.ok(compareMessageIds(ids[i - 1]!, ids[i]!) < 0, `${ids[i - 1]} < ${ids[i]}`);
    }
    const entries = await client.xrange(`${prefix}done`, "-", "+");
    assert.deepEqual(
      entries.map(([id]) => id),
      ids,
    );
  });

  it("uses the default key", async () => {
    assert.equal(doneKey(), "patpush:done");
    await client.del("patpush:done");

    const id = await publishDoneMessage(client, { channel: "news", pushId: "p1" });

    const entries = await client.xrange("patpush:done", "-", "+");
    assert.deepEqual(entries, [[id, ["message", '{"channel":"news","pushId":"p1"}']]]);
    await client.del("patpush:done");
  });

  it("rejects an invalid message unwritten", async () => {
    const prefix = freshPrefix();

    await assert.rejects(
      publishDoneMessage(
        client,
        { user: "alice", channel: "news", pushId: "p1" },
        { keyPrefix: prefix },
      ),
      (error) => {
        assert.ok(error instanceof MessageError);
        assert.equal(error.code, "PATPUSH_MESSAGE_INVALID");
        assert.match(error.message, /must name exactly one recipient: user or channel/);
        return true;
      },
    );
    assert.equal(await client.exists(`${prefix}done`), 0);
  });

  it("rejects a non-positive maxLen", async () => {
    await assert.rejects(
      publishDoneMessage(client, { user: "alice", pushId: "p1" }, { maxLen: 0 }),
      {
        name: "RangeError",
        message: "maxLen must be a positive integer (got 0)",
      },
    );
  });

  it("keeps the stream near maxLen", async () => {
    const prefix = freshPrefix();
    const maxLen = 50;
    const [, nodeEntries] = (await client.config("GET", "stream-node-max-entries")) as string[];

    const writes = [];
    for (let i = 0; i < 2000; i++) {
      writes.push(
        publishDoneMessage(
          client,
          { user: "alice", pushId: `p${i}` },
          { keyPrefix: prefix, maxLen },
        ),
      );
    }
    await Promise.all(writes);

    // MAXLEN ~ removes only whole macro nodes of stream-node-max-entries
    // entries each (100 by default), so the stream keeps at least maxLen
    // entries and less than one extra node beyond it.
    const length = await client.xlen(`${prefix}done`);
    assert.ok(length >= maxLen, `length ${length} >= ${maxLen}`);
    assert.ok(
      length < maxLen + Number(nodeEntries),
      `length ${length} < ${maxLen} + ${nodeEntries}`,
    );
  });
});
