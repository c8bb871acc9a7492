import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { randomBytes, randomUUID } from "node:crypto";
import { once } from "node:events";
import { fileURLToPath } from "node:url";
import { after, before, describe, it } from "node:test";
import { Redis } from "ioredis";
import { createLogger } from "../../common/logger.ts";
import { startRedisServer, type RedisTestServer } from "../../common/redis-test-server.ts";
import { startDistributedDemo, type DistributedDemo } from "./distributed.ts";
import { logIn, waitUntil } from "./testing.ts";

const MAIN = fileURLToPath(new URL("./main.ts", import.meta.url));

const logger = createLogger({ level: process.env.PATPUSH_LOG_LEVEL ?? "silent" });

/** Options of a distributed demo on free ports, without the bundle build. */
function testOptions(redisUrl: string, keyPrefix: string) {
  return {
    redisUrl,
    encryptionKey: randomBytes(32).toString("hex"),
    keyPrefix,
    portalPort: 0,
    pushPort: 0,
    secondPushPort: 0,
    previewDelayMs: 0,
    buildBundle: false,
    logger,
  };
}

/** Returns the `http://host:port` origin of a push server from its WebSocket URL. */
function pushOrigin(socketUrl: string): string {
  return new URL(socketUrl.replace(/^ws:/, "http:")).origin;
}

describe("distributed demo options", () => {
  it("rejects invalid redis options", async () => {
    const options = { redisUrl: "http://127.0.0.1:6379", encryptionKey: "", logger };

    await assert.rejects(startDistributedDemo(options), (err: Error & { code?: string }) => {
      assert.equal(err.code, "PATPUSH_CONFIG_INVALID");
      assert.match(err.message, /^invalid distributed portal configuration:/);
      assert.match(err.message, /redisUrl: must be a redis:\/\/ or rediss:\/\/ URL/);
      assert.match(err.message, /encryptionKey: must not be empty \(got \[redacted\]\)/);
      return true;
    });
  });
});

describe("distributed demo", () => {
  let redisServer: RedisTestServer;
  let redis: Redis;

  before(async () => {
    redisServer = await startRedisServer();
    redis = new Redis(redisServer.url);
  });

  after(async () => {
    redis?.disconnect();
    await redisServer?.stop();
  });

  it("rejects a malformed encryption key", async () => {
    const options = { ...testOptions(redisServer.url, "bad-key:"), encryptionKey: "not-a-key" };

    await assert.rejects(startDistributedDemo(options), (err: Error & { code?: string }) => {
      assert.equal(err.code, "PATPUSH_CONFIG_INVALID");
      assert.match(err.message, /encryptionKey: must be 64 hex characters or base64 of 32 bytes/);
      assert.doesNotMatch(err.message, /not-a-key/);
      return true;
    });
  });

  it("starts from main with PATPUSH_REDIS_URL", async (t) => {
    const child = spawn(process.execPath, ["--import", "tsx", MAIN], {
      env: {
        ...process.env,
        PATPUSH_REDIS_URL: redisServer.url,
        PATPUSH_ENCRYPTION_KEY: "",
        PATPUSH_PORTAL_PORT: "0",
        PATPUSH_PUSH_PORT: "0",
        PATPUSH_SECOND_PUSH_PORT: "0",
        PATPUSH_LOG_LEVEL: "warn",
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    const exited = once(child, "exit");
    t.after(() => {
      if (child.exitCode === null) child.kill("SIGKILL");
    });
    let stdout = "";
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk));
    child.stderr.resume();

    await waitUntil(() => stdout.includes("?push=1)"), "the start banner", 30_000);
    assert.match(stdout, /PATPUSH_ENCRYPTION_KEY is unset/);
    const portalUrl = /patpush demo portal: (http:\/\/\S+)\/workspace/.exec(stdout)?.[1];
    assert.ok(portalUrl, `no portal URL in ${stdout}`);
    const pushUrls = [...stdout.matchAll(/push server: +(ws:\/\/\S+)/g)].map((match) => match[1]);
    assert.equal(pushUrls.length, 2, stdout);

    assert.equal((await fetch(`${portalUrl}/health`)).status, 200);
    child.kill("SIGTERM");
    const [code] = await exited;
    assert.equal(code, 0);
  });

  describe("running", () => {
    const keyPrefix = `portal-${randomUUID().slice(0, 8)}:`;
    let demo: DistributedDemo;

    before(async () => {
      demo = await startDistributedDemo(testOptions(redisServer.url, keyPrefix));
    });

    after(async () => {
      await demo?.close();
    });

    it("reports both push servers ready", async () => {
      assert.notEqual(demo.pushUrls[0], demo.pushUrls[1]);
      for (const socketUrl of demo.pushUrls) {
        const readyUrl = `${pushOrigin(socketUrl)}/ready`;
        await waitUntil(async () => (await fetch(readyUrl)).status === 200, `${readyUrl} ready`);
      }
    });

    it("picks push server by index", async () => {
      const { cookie } = await logIn(demo.portalUrl, "alice");

      for (const [index, socketUrl] of demo.pushUrls.entries()) {
        const response = await fetch(`${demo.portalUrl}/workspace?push=${index}`, {
          headers: { Cookie: cookie },
        });
        assert.equal(response.status, 200);
        assert.ok(
          (await response.text()).includes(`data-pat-push="socket-url: ${socketUrl}"`),
          `page for push=${index} does not use ${socketUrl}`,
        );
      }

      const missing = await fetch(`${demo.portalUrl}/workspace?push=2`, {
        headers: { Cookie: cookie },
      });
      assert.equal(missing.status, 400);
      assert.match(await missing.text(), /push must be the index of a push server, from 0 to 1/);
    });

    it("appends notifications to the done stream", async () => {
      const { cookie, authenticator } = await logIn(demo.portalUrl, "bob");

      const response = await fetch(`${demo.portalUrl}/notify`, {
        method: "POST",
        headers: { Cookie: cookie, Accept: "application/json" },
        body: new URLSearchParams({ _authenticator: authenticator, text: "through redis" }),
      });
      assert.equal(response.status, 200);

      const entries = await redis.xrange(`${keyPrefix}done`, "-", "+");
      assert.equal(entries.length, 1);
      const [, fields] = entries[0]!;
      assert.equal(fields[0], "message");
      assert.deepEqual(JSON.parse(fields[1]!), {
        channel: "site",
        event: "portal-notification",
        data: { from: "bob", text: "through redis" },
      });
    });
  });
});
