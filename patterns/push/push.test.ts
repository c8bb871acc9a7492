import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { after, afterEach, before, beforeEach, describe, it } from "node:test";
import type { Browser, Page } from "playwright-core";
import type { WebSocket } from "ws";
import { launchChromium } from "../../e2e/browser.ts";
import {
  buildBundle,
  openTestPage,
  pageHtml,
  pause,
  startFixtureServer,
  startPushStandIn,
  type ConsoleEntry,
  type FixtureServer,
  type PushStandIn,
  type RecordedEvent,
} from "../../client/test-support.ts";

const EVENT_TYPES = [
  "push",
  "doc-ready",
  "patpush:message",
  "patpush:welcome",
  "pat-inject-success",
];

describe("pat-push", () => {
  let browser: Browser;
  let fixtures: FixtureServer;
  let standIn: PushStandIn;
  let page: Page;
  let consoleEntries: ConsoleEntry[];

  before(async () => {
    const bundle = await buildBundle();
    fixtures = await startFixtureServer({ bundle });
    fixtures.routes.set("/blank", { body: pageHtml("<main>blank</main>") });
    fixtures.routes.set("/counter", { body: "<html><body><sup>3</sup></body></html>" });
    fixtures.routes.set("/docs/7", {
      body: `<div id="doc-7"><img id="preview-7" alt="preview 7"></div>`,
    });
    fixtures.routes.set("/docs/8", {
      body: `<div id="doc-8" data-pat-push-pending="/docs/8#doc-8">still rendering</div>`,
    });
    fixtures.routes.set("/docs/9", {
      body: `<div id="doc-9"><img id="preview-9" alt="preview 9"></div>`,
    });
    browser = await launchChromium();
  });

  after(async () => {
    await browser?.close();
    await fixtures?.close();
  });

  beforeEach(async () => {
    standIn = await startPushStandIn();
    ({ page, console: consoleEntries } = await openTestPage(browser));
  });

  afterEach(async () => {
    await page.close();
    await standIn.close();
  });

  /** Serves `body` as a page that records EVENT_TYPES and loads the bundle, and opens it. */
  async function openPage(body: string): Promise<void> {
    const path = `/page-${Math.random().toString(36).slice(2)}`;
    fixtures.routes.set(path, { body: pageHtml(body, EVENT_TYPES) });
    fixtures.requests.length = 0;
    await page.goto(`${fixtures.origin}${path}`);
  }

  function connectionMarkup(extra = ""): string {
    return `<div id="conn" class="pat-push" data-pat-push="socket-url: ${standIn.url}${extra}"></div>`;
  }

  async function recorded(type: string): Promise<RecordedEvent[]> {
    return page.evaluate(
      (type) => window.recordedEvents.filter((event) => event.type === type),
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

  function send(socket: WebSocket, frame: object): void {
    socket.send(JSON.stringify(frame));
  }

  describe("options", () => {
    beforeEach(async () => {
      await page.goto(`${fixtures.origin}/blank`);
    });

    it("returns defaults for no options", async () => {
      const options = await page.evaluate(() => window.patpush.parseOptions(null));

      assert.deepEqual(options, {
        pushId: null,
        url: null,
        mode: "replace",
        socketUrl: null,
        allowedOrigins: null,
        debug: false,
      });
    });

    it("maps kebab names to camelCase", async () => {
      const options = await page.evaluate(() =>
        window.patpush.parseOptions(
          "push-id: counter; url: /counter?a=1; mode: append; socket-url: ws://h:1/push; debug: true",
        ),
      );

      assert.equal(options.pushId, "counter");
      assert.equal(options.url, "/counter?a=1");
      assert.equal(options.mode, "append");
      assert.equal(options.socketUrl, "ws://h:1/push");
      assert.equal(options.debug, true);
    });

    it("warns and falls back on bad value", async () => {
      const options = await page.evaluate(() =>
        window.patpush.parseOptions("mode: sideways; debug: maybe"),
      );

      assert.equal(options.mode, "replace");
      assert.equal(options.debug, false);
      const warnings = consoleEntries
        .filter((entry) => entry.type === "warning")
        .map((entry) => entry.text);
      assert.ok(
        warnings.some((text) =>
          text.startsWith(`[pat-push] invalid value for option "mode": "sideways"`),
        ),
      );
      assert.ok(
        warnings.some((text) =>
          text.startsWith(`[pat-push] invalid value for option "debug": "maybe"`),
        ),
      );
    });

    it("warns about unknown keys", async () => {
      const options = await page.evaluate(() =>
        window.patpush.parseOptions("colour: red; push-id: a"),
      );

      assert.equal(options.pushId, "a");
      assert.equal("colour" in options, false);
      assert.ok(
        consoleEntries.some((entry) =>
          entry.text.startsWith(`[pat-push] unknown option "colour" ignored`),
        ),
      );
    });

    it("never throws on odd input", async () => {
      const results = await page.evaluate(() =>
        [
          ";;;",
          "::",
          "push-id",
          "a b c d e f g h",
          "push-id: x && push-id: y",
          "mode:",
          "x".repeat(10_000),
        ].map((text) => {
          try {
            return window.patpush.parseOptions(text).mode;
          } catch (error) {
            return `threw ${String(error)}`;
          }
        }),
      );

      assert.deepEqual(results, [
        "replace",
        "replace",
        "replace",
        "replace",
        "replace",
        "replace",
        "replace",
      ]);
    });
  });

  it("updates push-id element from url", async () => {
    standIn.welcomeId = 0;
    await openPage(
      connectionMarkup() +
        `<a id="counter" class="pat-push" data-pat-push="push-id: messages; url: /counter">` +
        `<sup>0</sup></a>`,
    );
    const socket = await standIn.waitForSockets(1);
    await waitForEvents("patpush:welcome", 1);
    send(socket, { type: "message", id: 1, pushId: "messages" });
    await page.waitForFunction(
      () => document.getElementById("counter")?.innerHTML === "<sup>3</sup>",
    );

    const pushes = await recorded("push");
    assert.deepEqual(pushes, [{ type: "push", target: "body", detail: { body: "messages" } }]);
  });

  it("appends with mode append", async () => {
    await openPage(
      connectionMarkup() +
        `<ul id="counter" class="pat-push" data-pat-push="push-id: messages; url: /counter; mode: append">` +
        `<sup>0</sup></ul>`,
    );
    const socket = await standIn.waitForSockets(1);
    send(socket, { type: "message", id: 1, pushId: "messages" });
    await page.waitForFunction(() => document.getElementById("counter")?.children.length === 2);

    assert.equal(await page.innerHTML("#counter"), "<sup>0</sup><sup>3</sup>");
  });

  it("handles push events from elsewhere", async () => {
    await openPage(
      `<a id="counter" class="pat-push" data-pat-push="push-id: messages; url: /counter"></a>`,
    );
    await page.evaluate(() => {
      document.body.dispatchEvent(new CustomEvent("push", { detail: { body: "messages" } }));
    });

    await page.waitForFunction(
      () => document.getElementById("counter")?.innerHTML === "<sup>3</sup>",
    );
  });

  it("dispatches custom event with data", async () => {
    await openPage(connectionMarkup());
    const socket = await standIn.waitForSockets(1);
    send(socket, { type: "message", id: 4, event: "doc-ready", data: { doc: 7, pages: [1, 2] } });
    await waitForEvents("doc-ready", 1);

    assert.deepEqual(await recorded("doc-ready"), [
      { type: "doc-ready", target: "body", detail: { data: { doc: 7, pages: [1, 2] }, id: 4 } },
    ]);
    assert.deepEqual(await recorded("patpush:message"), [
      {
        type: "patpush:message",
        target: "document",
        detail: { type: "message", id: 4, event: "doc-ready", data: { doc: 7, pages: [1, 2] } },
      },
    ]);
  });

  it("injects the pushed snippet", async () => {
    await openPage(connectionMarkup() + `<div id="doc-7">rendering</div>`);
    const socket = await standIn.waitForSockets(1);
    send(socket, {
      type: "message",
      id: 2,
      html: `<a href="/docs/7#doc-7" data-pat-inject="target: #doc-7::element"></a>`,
    });
    await page.waitForSelector("#preview-7");

    assert.equal(await page.locator("#doc-7").count(), 0);
    assert.deepEqual(
      (await recorded("pat-inject-success")).map((event) => event.target),
      ["img#preview-7"],
    );
  });

  it("refreshes placeholders on first welcome", async () => {
    standIn.welcomeId = undefined;
    await openPage(
      connectionMarkup() +
        `<div id="doc-9" data-pat-push-pending="/docs/9#doc-9">rendering</div>` +
        `<div id="doc-8" data-pat-push-pending="/docs/8#doc-8">rendering</div>`,
    );
    const socket = await standIn.waitForSockets(1);
    await page.waitForFunction(() =>
      document.getElementById("conn")?.classList.contains("pat-push-state-open"),
    );
    const beforeWelcome = fixtures.requests.filter((request) => request.startsWith("GET /docs/"));
    send(socket, { type: "welcome", id: 3, user: "alice", channels: [], conn: "c1" });
    await page.waitForSelector("#preview-9");
    await page.waitForFunction(
      () => document.getElementById("doc-8")?.textContent === "still rendering",
    );

    assert.deepEqual(beforeWelcome, []);
    assert.equal(await page.getAttribute("#doc-9", "data-pat-push-pending"), null);
    assert.equal(await page.getAttribute("#doc-8", "data-pat-push-pending"), "/docs/8#doc-8");
    assert.deepEqual(await recorded("patpush:welcome"), [
      {
        type: "patpush:welcome",
        target: "document",
        detail: { type: "welcome", id: 3, user: "alice", channels: [], conn: "c1" },
      },
    ]);
  });

  it("refreshes placeholders after missed ids", async () => {
    standIn.welcomeId = 3;
    await openPage(
      connectionMarkup() + `<div id="doc-8" data-pat-push-pending="/docs/8#doc-8">rendering</div>`,
    );
    const first = await standIn.waitForSockets(1);
    await waitForEvents("patpush:welcome", 1);
    await page.waitForFunction(
      () => document.getElementById("doc-8")?.textContent === "still rendering",
    );
    standIn.welcomeId = 5;
    first.close(4000, "restart");
    const second = await standIn.waitForSockets(2);
    await waitForEvents("patpush:welcome", 2);
    second.close(4000, "restart");
    await standIn.waitForSockets(3);
    await waitForEvents("patpush:welcome", 3);
    // Queued frames run in order, so this event arrives after any refresh the welcomes started.
    send(standIn.sockets[2]!, { type: "message", id: 6, event: "doc-ready" });
    await waitForEvents("doc-ready", 1);

    const refreshes = fixtures.requests.filter((request) => request === "GET /docs/8");
    assert.equal(refreshes.length, 2);
  });

  it("skips frames whose message event is cancelled", async () => {
    await openPage(connectionMarkup());
    await page.evaluate(() => {
      document.addEventListener("patpush:message", (event) => {
        if ((event as CustomEvent<{ id: number }>).detail.id === 5) event.preventDefault();
      });
    });
    const socket = await standIn.waitForSockets(1);
    send(socket, { type: "message", id: 5, event: "doc-ready" });
    send(socket, { type: "message", id: 6, event: "doc-ready" });
    await waitForEvents("patpush:message", 2);
    await waitForEvents("doc-ready", 1);

    const ready = await recorded("doc-ready");
    assert.deepEqual(
      ready.map((event) => (event.detail as { id: number }).id),
      [6],
    );
  });

  it("logs debug output when asked", async () => {
    await openPage(connectionMarkup("; debug: true"));
    const socket = await standIn.waitForSockets(1);
    send(socket, { type: "message", id: 1 });
    await waitForEvents("patpush:message", 1);

    const debug = consoleEntries
      .filter((entry) => entry.type === "debug")
      .map((entry) => entry.text);
    assert.ok(debug.some((text) => text.startsWith("[patpush] message received")));
    assert.ok(debug.some((text) => text.startsWith("[pat-push] initialised")));
  });

  it("shows connection state as class", async () => {
    await openPage(connectionMarkup());
    const socket = await standIn.waitForSockets(1);
    await page.waitForFunction(() =>
      document.getElementById("conn")?.classList.contains("pat-push-state-open"),
    );
    socket.close(4001, "session ended");
    await page.waitForFunction(() =>
      document.getElementById("conn")?.classList.contains("pat-push-state-rejected"),
    );

    const classes = await page.evaluate(() =>
      Array.from(document.getElementById("conn")!.classList),
    );
    assert.deepEqual(classes, ["pat-push", "pat-push-state-rejected"]);
  });

  it("opens one connection per URL", async () => {
    await openPage(
      connectionMarkup() +
        `<div id="second" class="pat-push" data-pat-push="socket-url: ${standIn.url}"></div>`,
    );
    await standIn.waitForSockets(1);
    await page.waitForFunction(() =>
      document.getElementById("second")?.classList.contains("pat-push-state-open"),
    );
    await pause(300);

    assert.equal(standIn.upgrades, 1);
    const same = await page.evaluate(
      (url) => window.patpush.getConnection(url)?.url === url,
      standIn.url,
    );
    assert.equal(same, true);
  });

  it("exposes the package version", async () => {
    await page.goto(`${fixtures.origin}/blank`);
    const packageJson = JSON.parse(
      await readFile(new URL("../../package.json", import.meta.url), "utf8"),
    ) as {
      version: string;
    };

    assert.equal(await page.evaluate(() => window.patpush.version), packageJson.version);
  });
});
