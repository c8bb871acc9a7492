import assert from "node:assert/strict";
import { randomBytes, randomUUID } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { Queue } from "bullmq";
import { Redis } from "ioredis";
import type { Browser, BrowserContext, Page } from "playwright-core";
import { createLogger } from "../common/logger.ts";
import { startRedisServer, type RedisTestServer } from "../common/redis-test-server.ts";
import { startDistributedDemo, type DistributedDemo } from "../examples/portal/distributed.ts";
import { publishDoneMessage } from "../server/index.ts";
import { DEFAULT_QUEUE_NAME } from "../tasks/index.ts";
import { launchChromium } from "./browser.ts";
import {
  documentIdOf,
  logIn,
  makePng,
  messageFrames,
  watchSocketFrames,
  type FrameLog,
} from "./demo.ts";

/** A page with a record of its socket frames and of the URLs its sockets opened. */
interface WatchedPage {
  page: Page;
  frames: FrameLog;
  socketUrls: string[];
}

function watchPage(page: Page): WatchedPage {
  const socketUrls: string[] = [];
  page.on("websocket", (socket) => socketUrls.push(socket.url()));
  return { page, frames: watchSocketFrames(page), socketUrls };
}

/** Waits until the page's log has `count` welcome frames for `user`. */
async function waitForWelcomes(watched: WatchedPage, user: string, count: number): Promise<void> {
  await watched.frames.waitFor(
    () =>
      watched.frames.frames.filter((frame) => frame.type === "welcome" && frame.user === user)
        .length >= count,
  );
}

/** Returns every field value of every hash whose key starts with `prefix`, by key. */
async function hashValuesUnder(redis: Redis, prefix: string): Promise<Map<string, string[]>> {
  const values = new Map<string, string[]>();
  let cursor = "0";
  do {
    const [next, keys] = await redis.scan(cursor, "MATCH", `${prefix}*`, "COUNT", 100);
    cursor = next;
    for (const key of keys) {
      if ((await redis.type(key)) !== "hash") continue;
      values.set(key, Object.values(await redis.hgetall(key)));
    }
  } while (cursor !== "0");
  return values;
}

/** Asserts that a preview job exists under `prefix`, and that no hash there contains a secret. */
async function assertNoSecretsInJobs(
  redis: Redis,
  prefix: string,
  secrets: Record<string, string>,
): Promise<void> {
  const hashes = await hashValuesUnder(redis, prefix);
  // The job hash stores the job name, which is the task name, in its `name` field.
  const jobs = [...hashes.entries()].filter(([, values]) => values.includes("make-preview"));
  assert.ok(jobs.length > 0, `no make-preview job under ${prefix}; keys: ${[...hashes.keys()]}`);

  for (const [key, values] of hashes) {
    for (const [name, secret] of Object.entries(secrets)) {
      const leaking = values.some((value) => value.includes(secret));
      assert.equal(leaking, false, `${key} contains the ${name} value in clear`);
    }
  }
}

describe("distributed mode", () => {
  let redisServer: RedisTestServer;
  let demo: DistributedDemo;
  let browser: Browser;
  let redis: Redis;
  let queue: Queue;
  const keyPrefix = `e2e-${randomUUID().slice(0, 8)}:`;
  const bullmqPrefix = keyPrefix.slice(0, -1);

  before(async () => {
    redisServer = await startRedisServer();
    demo = await startDistributedDemo({
      redisUrl: redisServer.url,
      encryptionKey: randomBytes(32).toString("hex"),
      keyPrefix,
      portalPort: 0,
      pushPort: 0,
      secondPushPort: 0,
      previewDelayMs: 200,
      logger: createLogger({ level: process.env.PATPUSH_LOG_LEVEL ?? "silent" }),
    });
    redis = new Redis(redisServer.url);
    queue = new Queue(DEFAULT_QUEUE_NAME, { connection: redis, prefix: bullmqPrefix });
    browser = await launchChromium();
  });

  after(async () => {
    await browser?.close();
    await queue?.close();
    await demo?.close();
    redis?.disconnect();
    await redisServer?.stop();
  });

  it("delivers through both push servers", async () => {
    const contexts: BrowserContext[] = [await browser.newContext(), await browser.newContext()];
    const [aliceContext, bobContext] = contexts as [BrowserContext, BrowserContext];
    const aliceA = watchPage(await aliceContext.newPage());
    const aliceB = watchPage(await aliceContext.newPage());
    const bob = watchPage(await bobContext.newPage());

    await logIn(aliceA.page, demo.portalUrl, "alice");
    await logIn(bob.page, demo.portalUrl, "bob");
    await waitForWelcomes(aliceA, "alice", 1);
    await waitForWelcomes(bob, "bob", 1);
    const bobDocumentsBefore = await bob.page.locator("#documents").innerHTML();

    // While the queue is paused the preview job waits in Redis, so both alice
    // pages render its placeholder and open their sockets before it is done.
    await queue.pause();
    await aliceA.page.setInputFiles('form.upload input[type="file"]', {
      name: "shared.png",
      mimeType: "image/png",
      buffer: await makePng(320, 240),
    });
    await Promise.all([
      aliceA.page.waitForURL(`${demo.portalUrl}/workspace`),
      aliceA.page.click("form.upload button"),
    ]);
    await aliceB.page.goto(`${demo.portalUrl}/workspace?push=1`);
    await waitForWelcomes(aliceA, "alice", 2);
    await waitForWelcomes(aliceB, "alice", 1);

    assert.deepEqual(aliceA.socketUrls, [demo.pushUrls[0], demo.pushUrls[0]]);
    assert.deepEqual(aliceB.socketUrls, [demo.pushUrls[1]]);
    assert.deepEqual(bob.socketUrls, [demo.pushUrls[0]]);

    const id = await documentIdOf(aliceA.page, "shared.png");
    assert.equal(await documentIdOf(aliceB.page, "shared.png"), id);
    for (const { page } of [aliceA, aliceB]) {
      assert.equal(await page.locator(`#doc-${id}-preview.pending`).count(), 1);
      await page.evaluate(() => {
        (window as unknown as { previewMarker: string }).previewMarker = "set before the preview";
      });
    }

    const cookie = (await aliceContext.cookies()).find((entry) => entry.name === "__ac");
    assert.ok(cookie, "alice has no __ac cookie");
    const authenticator = await aliceA.page
      .locator('form.upload input[name="_authenticator"]')
      .inputValue();
    assert.match(authenticator, /^[0-9a-f]{64}$/);
    const secrets = { __ac: cookie.value, _authenticator: authenticator };
    await assertNoSecretsInJobs(redis, `${bullmqPrefix}:`, secrets);

    await queue.resume();
    for (const { page } of [aliceA, aliceB]) {
      await page.locator(`#doc-${id}-preview img`).waitFor({ timeout: 20_000 });
    }

    // Frames on one socket arrive in order, so once bob has the channel
    // message published after alice's preview, a misrouted preview message
    // would already be in his log.
    await publishDoneMessage(
      redis,
      { channel: "site", event: "isolation-barrier", data: { step: 1 } },
      { keyPrefix },
    );
    await bob.frames.waitFor(
      (frame) => frame.type === "message" && frame.event === "isolation-barrier",
    );

    for (const [name, watched] of Object.entries({ aliceA, aliceB })) {
      const previews = messageFrames(watched.frames).filter(
        (frame) => frame.type === "message" && frame.html?.includes(`#doc-${id}-preview`),
      );
      assert.equal(previews.length, 1, `${name} frames: ${JSON.stringify(watched.frames.frames)}`);
      const marker = await watched.page.evaluate(
        () => (window as unknown as { previewMarker?: string }).previewMarker,
      );
      assert.equal(marker, "set before the preview", `${name} reloaded`);
    }

    const bobMessages = messageFrames(bob.frames);
    assert.equal(bobMessages.length, 1, `bob received ${JSON.stringify(bobMessages)}`);
    assert.equal(bobMessages[0]?.type === "message" && bobMessages[0].channel, "site");
    assert.equal(await bob.page.locator("#documents").innerHTML(), bobDocumentsBefore);

    await assertNoSecretsInJobs(redis, `${bullmqPrefix}:`, secrets);
    for (const context of contexts) await context.close();
  });
});
