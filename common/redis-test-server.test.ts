import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { Redis } from "ioredis";
import { startRedisServer, type RedisTestServer } from "./redis-test-server.ts";

describe("redis test server", () => {
  let server: RedisTestServer | undefined;

  after(async () => {
    await server?.stop();
  });

  it("restarts on the same port", async () => {
    server = await startRedisServer();
    const client = new Redis(server.url, { maxRetriesPerRequest: 0, retryStrategy: () => null });
    client.on("error", () => {});
    assert.equal(await client.set("k", "v"), "OK");
    client.disconnect();

    await server.kill();
    await server.start();

    const again = new Redis(server.url);
    assert.equal(await again.get("k"), null);
    again.disconnect();
  });
});
