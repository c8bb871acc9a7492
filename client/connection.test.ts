import assert from "node:assert/strict";
import { after, afterEach, before, beforeEach, describe, it } from "node:test";
import type { Browser, Page } from "playwright-core";
import { launchChromium } from "../e2e/browser.ts";
import {
  buildBundle,
  openTestPage,
  pageHtml,
  pause,
  startFixtureServer,
  startPushStandIn,
  waitUntil,
  type ConsoleEntry,
  type FixtureServer,
  type PushStandIn,
} from "./test-support.ts";

/** Long enough for a client with the test backoff (20-100 ms) to have retried several times. */
const QUIET_PERIOD_MS = 1500;

describe("push connection", () => {
  let browser: Browser;
  let fixtures: FixtureServer;
  let standIn: PushStandIn;
  let page: Page;
  let consoleEntries: ConsoleEntry[];

  before(async () => {
    const bundle = await buildBundle();
    fixtures = await startFixtureServer({ bundle });
    fixtures.routes.set("/blank", { body: pageHtml("<main>blank</main>") });
    browser = await launchChromium();
  });

  after(async () => {
    await browser?.close();
    await fixtures?.close();
  });

  beforeEach(async () => {
    standIn = await startPushStandIn();
    ({ page, console: consoleEntries } = await openTestPage(browser));
    await page.goto(`${fixtures.origin}/blank`);
  });

  afterEach(async () => {
    await page.close();
    await standIn.close();
  });

  /** Creates `window.testConnection` in the page, recording its events, and connects it. */
  async function connect(debug = false): Promise<void> {
    await page.evaluate(
      ({ url, debug }) => {
        const connection = new window.patpush.PushConnection({
          url,
          debug,
          backoff: { baseMs: 20, maxMs: 100 },
        });
        for (const type of ["state", "welcome", "message"]) {
          connection.addEventListener(type, (event) => {
            const detail = (event as CustomEvent).detail as unknown;
            window.recordedEvents.push({ type, target: "connection", detail });
          });
        }
        window.testConnection = connection;
        connection.connect();
      },
      { url: standIn.url, debug },
    );
  }

  async function recorded(type: string): Promise<unknown[]> {
    return page.evaluate(
      (type) =>
        window.recordedEvents.filter((event) => event.type === type).map((event) => event.detail),
      type,
    );
  }

  async function waitForEvents(type: string, count: number): Promise<void> {
    await page.waitForFunction(
      ({ type, count }) =>
        window.recordedEvents.filter((event) => event.type === type).length >= count,
      { type, count },
    );
  }

  async function waitForState(state: string): Promise<void> {
    await page.waitForFunction((state) => window.testConnection.state === state, state);
  }

  async function messageIds(): Promise<number[]> {
    return (await recorded("message")).map((frame) => (frame as { id: number }).id);
  }

  it("receives welcome and messages", async () => {
    standIn.welcomeId = 7;
    await connect();
    const socket = await standIn.waitForSockets(1);
    await waitForEvents("welcome", 1);
    socket.send(JSON.stringify({ type: "message", id: 8, html: "<a></a>", pushId: "counter" }));
    await waitForEvents("message", 1);

    const [welcome] = (await recorded("welcome")) as Array<{ frame: unknown; first: boolean }>;
    assert.deepEqual(welcome?.frame, {
      type: "welcome",
      id: 7,
      user: "alice",
      channels: [],
      conn: "c1",
    });
    assert.equal(welcome?.first, true);
    assert.deepEqual(await recorded("message"), [
      { type: "message", id: 8, html: "<a></a>", pushId: "counter" },
    ]);
    const states = (await recorded("state")) as Array<{ state: string }>;
    assert.deepEqual(
      states.map((change) => change.state),
      ["connecting", "open"],
    );
  });

  it("ignores frames that are not protocol", async () => {
    await connect();
    const socket = await standIn.waitForSockets(1);
    socket.send("not json");
    socket.send(JSON.stringify({ type: "message" }));
    socket.send(JSON.stringify({ type: "other", id: 3 }));
    socket.send(JSON.stringify({ type: "message", id: 4 }));
    await waitForEvents("message", 1);

    assert.deepEqual(await messageIds(), [4]);
  });

  it("reconnects after restart close", async () => {
    await connect();
    const first = await standIn.waitForSockets(1);
    await waitForEvents("welcome", 1);
    first.close(4000, "restart");
    await standIn.waitForSockets(2);
    await waitForEvents("welcome", 2);

    const states = ((await recorded("state")) as Array<{ state: string; code?: number }>).map(
      (change) => `${change.state}${change.code === undefined ? "" : `:${change.code}`}`,
    );
    assert.deepEqual(states, ["connecting", "open", "reconnecting:4000", "open"]);
  });

  it("stops after auth revoked close", async () => {
    await connect();
    const socket = await standIn.waitForSockets(1);
    await waitForEvents("welcome", 1);
    socket.close(4001, "session ended");
    await waitForState("rejected");
    await pause(QUIET_PERIOD_MS);

    assert.equal(standIn.upgrades, 1);
    assert.equal(await page.evaluate(() => window.testConnection.state), "rejected");
    assert.ok(
      consoleEntries.some((entry) => entry.type === "warning" && entry.text.includes("4001")),
    );
  });

  it("stops after protocol error close", async () => {
    await connect();
    const socket = await standIn.waitForSockets(1);
    socket.close(4002, "bad frame");
    await waitForState("closed");
    await pause(QUIET_PERIOD_MS);

    assert.equal(standIn.upgrades, 1);
  });

  it("stops when auth check rejects", async () => {
    standIn.rejectStatus = 401;
    standIn.authStatus = 401;
    await connect();
    await waitForState("rejected");
    await pause(QUIET_PERIOD_MS);

    assert.equal(standIn.upgrades, 1);
    assert.equal(standIn.authRequests, 1);
    assert.equal(await page.evaluate(() => window.testConnection.state), "rejected");
  });

  it("retries when auth check passes", async () => {
    standIn.rejectStatus = 503;
    standIn.authStatus = 503;
    await connect();
    await waitUntil(() => standIn.upgrades >= 3, "three upgrade attempts");
    standIn.rejectStatus = undefined;
    await standIn.waitForSockets(1);
    await waitForState("open");

    assert.ok(standIn.authRequests >= 2, `auth checks: ${standIn.authRequests}`);
  });

  it("drops duplicate message ids", async () => {
    await connect();
    const socket = await standIn.waitForSockets(1);
    for (const id of [5, 5, 3, 6, 6, 7]) socket.send(JSON.stringify({ type: "message", id }));
    // Frames arrive in order, so once id 7 is in, every earlier frame was handled.
    await waitForEvents("message", 3);

    assert.deepEqual(await messageIds(), [5, 6, 7]);
  });

  it("accepts ids after server restart", async () => {
    standIn.welcomeId = 10;
    await connect();
    const first = await standIn.waitForSockets(1);
    first.send(JSON.stringify({ type: "message", id: 11 }));
    await waitForEvents("message", 1);
    standIn.welcomeId = 0;
    first.close(4000, "restart");
    const second = await standIn.waitForSockets(2);
    await waitForEvents("welcome", 2);
    second.send(JSON.stringify({ type: "message", id: 1 }));
    await waitForEvents("message", 2);

    assert.deepEqual(await messageIds(), [11, 1]);
    const welcomes = (await recorded("welcome")) as Array<{
      first: boolean;
      mayHaveMissed: boolean;
    }>;
    assert.equal(welcomes[1]?.first, false);
    assert.equal(welcomes[1]?.mayHaveMissed, true);
  });

  it("close stops reconnecting", async () => {
    await connect();
    const socket = await standIn.waitForSockets(1);
    await waitForEvents("welcome", 1);
    const closed = new Promise<number>((resolve) => socket.once("close", (code) => resolve(code)));
    await page.evaluate(() => window.testConnection.close());

    assert.equal(await closed, 1000);
    await pause(QUIET_PERIOD_MS);
    assert.equal(standIn.upgrades, 1);
    assert.equal(await page.evaluate(() => window.testConnection.state), "closed");
  });

  it("logs to console when debug", async () => {
    await connect(false);
    const socket = await standIn.waitForSockets(1);
    await waitForEvents("welcome", 1);
    const quiet = consoleEntries.filter((entry) => entry.type === "debug").length;
    await page.evaluate(() => {
      window.testConnection.debug = true;
    });
    socket.send(JSON.stringify({ type: "message", id: 1 }));
    await waitForEvents("message", 1);

    assert.equal(quiet, 0);
    assert.ok(
      consoleEntries.some(
        (entry) => entry.type === "debug" && entry.text.includes("message received"),
      ),
    );
  });

  it("derives auth URL from socket URL", async () => {
    const urls = await page.evaluate(() =>
      ["ws://push.test:8481/push", "wss://push.test/push/", "wss://push.test/ws?x=1"].map(
        (url) => new window.patpush.PushConnection({ url }).authUrl,
      ),
    );

    assert.deepEqual(urls, [
      "http://push.test:8481/push/auth",
      "https://push.test/push/auth",
      "https://push.test/ws/auth?x=1",
    ]);
  });

  it("rejects a non-socket URL", async () => {
    const message = await page.evaluate(() => {
      try {
        new window.patpush.PushConnection({ url: "http://push.test/push" });
        return "no error";
      } catch (error) {
        return String(error);
      }
    });

    assert.equal(
      message,
      "TypeError: invalid push server URL http://push.test/push: expected ws: or wss:",
    );
  });
});
