import assert from "node:assert/strict";
import { after, afterEach, before, beforeEach, describe, it } from "node:test";
import type { Browser, Page } from "playwright-core";
import type { WebSocket } from "ws";
import type { WelcomeDetail } from "./connection.ts";
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
  async function connect(debug = false, url = standIn.url): Promise<void> {
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
      { url, debug },
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

  async function messageIds(): Promise<string[]> {
    return (await recorded("message")).map((frame) => (frame as { id: string }).id);
  }

  async function welcomes(): Promise<WelcomeDetail[]> {
    return (await recorded("welcome")) as WelcomeDetail[];
  }

  /** Sends a message frame with `id`, and `live: true` when `live` is set. */
  function sendMessage(socket: WebSocket, id: string, live = false): void {
    socket.send(JSON.stringify(live ? { type: "message", id, live } : { type: "message", id }));
  }

  /** Closes socket `index` (1-based) with 4000 and waits for the next socket's welcome. */
  async function restart(index: number): Promise<WebSocket> {
    standIn.sockets[index - 1]!.close(4000, "restart");
    const next = await standIn.waitForSockets(index + 1);
    await waitForEvents("welcome", index + 1);
    return next;
  }

  async function lastMessageId(): Promise<string | undefined> {
    return page.evaluate(() => window.testConnection.lastMessageId);
  }

  it("receives welcome and messages", async () => {
    standIn.welcomeId = "7-0";
    await connect();
    const socket = await standIn.waitForSockets(1);
    await waitForEvents("welcome", 1);
    socket.send(JSON.stringify({ type: "message", id: "8-0", html: "<a></a>", pushId: "counter" }));
    await waitForEvents("message", 1);

    const [welcome] = await welcomes();
    assert.deepEqual(welcome?.frame, {
      type: "welcome",
      id: "7-0",
      recovery: "none",
      user: "alice",
      channels: [],
      conn: "c1",
    });
    assert.equal(welcome?.first, true);
    assert.equal(welcome?.gap, false);
    assert.equal(welcome?.mayHaveMissed, true);
    assert.deepEqual(standIn.upgradeUrls, ["/push"]);
    assert.deepEqual(await recorded("message"), [
      { type: "message", id: "8-0", html: "<a></a>", pushId: "counter" },
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
    socket.send(JSON.stringify({ type: "other", id: "3-0" }));
    socket.send(JSON.stringify({ type: "message", id: 3 }));
    socket.send(JSON.stringify({ type: "message", id: "03-0" }));
    socket.send(JSON.stringify({ type: "message", id: "3-0", live: false }));
    socket.send(JSON.stringify({ type: "message", id: "4-0" }));
    await waitForEvents("message", 1);

    assert.deepEqual(await messageIds(), ["4-0"]);
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
    await waitForEvents("welcome", 1);
    // "10-0" is above "9-6" although it sorts below it as text.
    for (const id of ["9-5", "9-5", "9-3", "9-6", "0-0", "10-0", "10-0", "9-9"]) {
      sendMessage(socket, id);
    }
    sendMessage(socket, "10-1");
    // Frames arrive in order, so once "10-1" is in, every earlier frame was handled.
    await waitForEvents("message", 4);

    assert.deepEqual(await messageIds(), ["9-5", "9-6", "10-0", "10-1"]);
    assert.equal(await page.evaluate(() => window.testConnection.duplicatesDropped), 5);
  });

  it("sends last id on reconnect", async () => {
    standIn.welcomeId = "5-0";
    await connect(false, `${standIn.url}?tab=a&last=stale`);
    const first = await standIn.waitForSockets(1);
    await waitForEvents("welcome", 1);
    sendMessage(first, "5-1");
    sendMessage(first, "5-2");
    await waitForEvents("message", 2);
    const second = await restart(1);
    // The server replays what follows "5-2"; a replay that overlaps is dropped.
    sendMessage(second, "5-2");
    sendMessage(second, "5-3");
    await waitForEvents("message", 3);
    await restart(2);

    assert.deepEqual(standIn.upgradeUrls, [
      "/push?tab=a",
      "/push?tab=a&last=5-2",
      "/push?tab=a&last=5-3",
    ]);
    assert.deepEqual(await messageIds(), ["5-1", "5-2", "5-3"]);
    const [, resumed] = await welcomes();
    assert.equal(resumed?.frame.recovery, "complete");
    assert.equal(resumed?.gap, false);
    assert.equal(resumed?.mayHaveMissed, false);
  });

  it("sends welcome id without messages", async () => {
    standIn.welcomeId = "12-4";
    await connect();
    await standIn.waitForSockets(1);
    await waitForEvents("welcome", 1);
    await restart(1);

    assert.deepEqual(standIn.upgradeUrls, ["/push", "/push?last=12-4"]);
    assert.equal(await lastMessageId(), "12-4");
  });

  it("passes live frames through", async () => {
    standIn.welcomeId = "3-0";
    await connect();
    const socket = await standIn.waitForSockets(1);
    await waitForEvents("welcome", 1);
    sendMessage(socket, "3-1");
    sendMessage(socket, "3-1", true);
    sendMessage(socket, "3-1", true);
    sendMessage(socket, "2-0", true);
    sendMessage(socket, "9-0", true);
    sendMessage(socket, "3-2");
    await waitForEvents("message", 6);
    await restart(1);

    assert.deepEqual(await messageIds(), ["3-1", "3-1", "3-1", "2-0", "9-0", "3-2"]);
    assert.equal(await page.evaluate(() => window.testConnection.duplicatesDropped), 0);
    assert.equal(standIn.upgradeUrls[1], "/push?last=3-2");
  });

  it("never moves last id backwards", async () => {
    standIn.welcomeId = "7-0";
    await connect();
    const first = await standIn.waitForSockets(1);
    await waitForEvents("welcome", 1);
    sendMessage(first, "7-2");
    sendMessage(first, "7-1");
    sendMessage(first, "8-0", true);
    sendMessage(first, "7-0");
    sendMessage(first, "7-2", true);
    await waitForEvents("message", 3);
    const afterFrames = await lastMessageId();
    const second = await restart(1);
    sendMessage(second, "6-9");
    sendMessage(second, "7-3");
    await waitForEvents("message", 4);

    assert.equal(afterFrames, "7-2");
    assert.equal(standIn.upgradeUrls[1], "/push?last=7-2");
    assert.deepEqual(await messageIds(), ["7-2", "8-0", "7-2", "7-3"]);
    assert.equal(await lastMessageId(), "7-3");
    assert.equal(await page.evaluate(() => window.testConnection.duplicatesDropped), 3);
  });

  it("reports gap and adopts its id", async () => {
    standIn.welcomeId = "10-0";
    await connect();
    const first = await standIn.waitForSockets(1);
    await waitForEvents("welcome", 1);
    sendMessage(first, "10-1");
    await waitForEvents("message", 1);
    // A stream reset: the new range starts below the page's last id.
    standIn.recovery = "gap";
    standIn.welcomeId = "3-0";
    const second = await restart(1);
    sendMessage(second, "3-1");
    await waitForEvents("message", 2);
    standIn.recovery = undefined;
    await restart(2);

    assert.deepEqual(await messageIds(), ["10-1", "3-1"]);
    const [, gap, resumed] = await welcomes();
    assert.equal(gap?.frame.recovery, "gap");
    assert.equal(gap?.first, false);
    assert.equal(gap?.gap, true);
    assert.equal(gap?.mayHaveMissed, true);
    assert.equal(resumed?.gap, false);
    assert.equal(resumed?.mayHaveMissed, false);
    assert.deepEqual(standIn.upgradeUrls, ["/push", "/push?last=10-1", "/push?last=3-1"]);
  });

  it("treats resumed none as missed", async () => {
    standIn.welcomeId = "4-0";
    await connect();
    await standIn.waitForSockets(1);
    await waitForEvents("welcome", 1);
    standIn.recovery = "none";
    standIn.welcomeId = "4-5";
    await restart(1);

    const [, resumed] = await welcomes();
    assert.equal(resumed?.gap, false);
    assert.equal(resumed?.mayHaveMissed, true);
    assert.equal(await lastMessageId(), "4-5");
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
    sendMessage(socket, "1-0");
    sendMessage(socket, "1-0");
    sendMessage(socket, "1-1");
    await waitForEvents("message", 2);

    assert.equal(quiet, 0);
    assert.ok(
      consoleEntries.some(
        (entry) => entry.type === "debug" && entry.text.includes("message received"),
      ),
    );
    assert.ok(
      consoleEntries.some(
        (entry) =>
          entry.type === "debug" &&
          entry.text.startsWith("[patpush] duplicate message dropped 1-0"),
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
