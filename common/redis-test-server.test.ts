import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { after, describe, it } from "node:test";
import { promisify } from "node:util";
import { Redis } from "ioredis";
import { startRedisServer, type RedisTestServer } from "./redis-test-server.ts";

const run = promisify(execFile);

describe("redis test server", () => {
  const servers: RedisTestServer[] = [];

  after(async () => {
    for (const server of servers) await server.stop();
  });

  it("restarts on the same port", async () => {
    const server = await startRedisServer();
    servers.push(server);
    assert.equal(server.dataDir, undefined);
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

  it("keeps data when persistent", async () => {
    const server = await startRedisServer({ persistent: true });
    servers.push(server);
    assert.ok(server.dataDir, "a persistent server has a data dir");
    assert.ok(existsSync(server.dataDir), "the data dir exists");
    const client = new Redis(server.url, { maxRetriesPerRequest: 0, retryStrategy: () => null });
    client.on("error", () => {});
    assert.equal(await client.set("k", "v"), "OK");
    assert.ok(await client.xadd("s", "*", "f", "1"));
    client.disconnect();

    // SIGKILL gives no chance to flush, so only appendfsync always keeps the writes.
    await server.kill();
    await server.start();

    const again = new Redis(server.url);
    assert.equal(await again.get("k"), "v");
    assert.equal(await again.xlen("s"), 1);
    again.disconnect();
  });

  it("requires a set password", async () => {
    const server = await startRedisServer({ password: "test password/1" });
    servers.push(server);
    assert.equal(new URL(server.url).password, "test%20password%2F1");

    const client = new Redis(server.url);
    assert.equal(await client.ping(), "PONG");
    client.disconnect();

    const url = new URL(server.url);
    url.password = "";
    const anonymous = new Redis(url.href, { maxRetriesPerRequest: 0, retryStrategy: () => null });
    anonymous.on("error", () => {});
    await assert.rejects(anonymous.ping(), /NOAUTH/);
    anonymous.disconnect();
  });

  it("removes the data dir on exit", async () => {
    const moduleUrl = new URL("./redis-test-server.ts", import.meta.url).href;
    const script =
      `import { startRedisServer } from ${JSON.stringify(moduleUrl)};\n` +
      "const server = await startRedisServer({ persistent: true });\n" +
      "console.log(server.dataDir);\n" +
      "await server.stop();\n";
    const args = ["--import", "tsx", "--input-type=module", "-e", script];
    const { stdout } = await run(process.execPath, args, { timeout: 20_000 });
    const dataDir = stdout.trim();
    assert.match(dataDir, /patpush-redis-/);
    assert.equal(existsSync(dataDir), false);
  });
});
