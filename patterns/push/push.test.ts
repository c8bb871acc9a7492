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
  "patpush:gap",
  "pat-inject-success",
];

const PENDING_10 = `<div id="doc-10" data-pat-push-pending="/docs/10#doc-10">still rendering</div>`;
const READY_10 = `<div id="doc-10"><img id="preview-10" alt="preview 10"></div>`;

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
    standIn.welcomeId = "0-0";
    await openPage(
      connectionMarkup() +
        `<a id="counter" class="pat-push" data-pat-push="push-id: messages; url: /counter">` +
        `<sup>0</sup></a>`,
    );
    const socket = await standIn.waitForSockets(1);
    await waitForEvents("patpush:welcome", 1);
    send(socket, { type: "message", id: "1-0", pushId: "messages" });
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
    send(socket, { type: "message", id: "1-0", pushId: "messages" });
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
    send(socket, {
      type: "message",
      id: "4-0",
      event: "doc-ready",
      data: { doc: 7, pages: [1, 2] },
    });
    await waitForEvents("doc-ready", 1);

    assert.deepEqual(await recorded("doc-ready"), [
      { type: "doc-ready", target: "body", detail: { data: { doc: 7, pages: [1, 2] }, id: "4-0" } },
    ]);
    assert.deepEqual(await recorded("patpush:message"), [
      {
        type: "patpush:message",
        target: "document",
        detail: {
          type: "message",
          id: "4-0",
          event: "doc-ready",
          data: { doc: 7, pages: [1, 2] },
        },
      },
    ]);
  });

  it("skips reserved event names", async () => {
    await openPage(connectionMarkup());
    const socket = await standIn.waitForSockets(1);
    send(socket, { type: "message", id: "4-0", event: "pat-inject-success" });
    send(socket, { type: "message", id: "5-0", event: "doc-ready" });
    await waitForEvents("doc-ready", 1);

    assert.deepEqual(await recorded("pat-inject-success"), []);
    assert.ok(
      consoleEntries.some((entry) =>
        entry.text.startsWith(`[pat-push] message event "pat-inject-success" is reserved`),
      ),
    );
  });

  it("ignores socket options of injected elements", async () => {
    fixtures.routes.set("/docs/11", {
      body:
        `<div id="doc-11"><span id="inner-11" class="pat-push" ` +
        `data-pat-push="socket-url: ws://127.0.0.2:9/push; allowed-origins: http://127.0.0.2:9">` +
        `</span></div>`,
    });
    await openPage(connectionMarkup() + `<div id="doc-11">rendering</div>`);
    const socket = await standIn.waitForSockets(1);
    send(socket, {
      type: "message",
      id: "2-0",
      html: `<a href="/docs/11#doc-11" data-pat-inject="target: #doc-11::element"></a>`,
    });
    await page.waitForSelector("#inner-11", { state: "attached" });

    const opened = await page.evaluate(
      () => window.patpush.getConnection("ws://127.0.0.2:9/push") !== undefined,
    );
    assert.equal(opened, false);
    assert.ok(
      consoleEntries.some((entry) =>
        entry.text.startsWith("[pat-push] socket-url and allowed-origins of an injected element"),
      ),
    );
  });

  it("injects the pushed snippet", async () => {
    await openPage(connectionMarkup() + `<div id="doc-7">rendering</div>`);
    const socket = await standIn.waitForSockets(1);
    send(socket, {
      type: "message",
      id: "2-0",
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
    const welcome = {
      type: "welcome",
      id: "3-0",
      recovery: "none",
      user: "alice",
      channels: [],
      conn: "c1",
    };
    send(socket, welcome);
    await page.waitForSelector("#preview-9");
    await page.waitForFunction(
      () => document.getElementById("doc-8")?.textContent === "still rendering",
    );

    assert.deepEqual(beforeWelcome, []);
    assert.equal(await page.getAttribute("#doc-9", "data-pat-push-pending"), null);
    assert.equal(await page.getAttribute("#doc-8", "data-pat-push-pending"), "/docs/8#doc-8");
    assert.deepEqual(await recorded("patpush:welcome"), [
      { type: "patpush:welcome", target: "document", detail: welcome },
    ]);
    assert.deepEqual(await recorded("patpush:gap"), []);
  });

  /**
   * Opens a page with the pending placeholder #doc-10, waits until the first
   * welcome's refresh left it pending, and makes its URL return the ready
   * fragment from then on.
   */
  async function openPendingPage(): Promise<WebSocket> {
    fixtures.routes.set("/docs/10", { body: PENDING_10 });
    const placeholder = `<div id="doc-10" data-pat-push-pending="/docs/10#doc-10">rendering</div>`;
    await openPage(connectionMarkup() + placeholder);
    const socket = await standIn.waitForSockets(1);
    await waitForEvents("patpush:welcome", 1);
    await page.waitForFunction(
      () => document.getElementById("doc-10")?.textContent === "still rendering",
    );
    fixtures.routes.set("/docs/10", { body: READY_10 });
    return socket;
  }

  function placeholderRequests(): string[] {
    return fixtures.requests.filter((request) => request === "GET /docs/10");
  }

  it("reloads placeholders on gap", async () => {
    standIn.welcomeId = "3-0";
    const first = await openPendingPage();
    send(first, { type: "message", id: "3-1", event: "doc-ready" });
    await waitForEvents("doc-ready", 1);
    standIn.recovery = "gap";
    standIn.welcomeId = "3-7";
    first.close(4000, "restart");
    await standIn.waitForSockets(2);
    await page.waitForSelector("#preview-10");

    assert.deepEqual(standIn.upgradeUrls, ["/push", "/push?last=3-1"]);
    assert.equal(placeholderRequests().length, 2);
    assert.equal(await page.getAttribute("#doc-10", "data-pat-push-pending"), null);
    assert.deepEqual(await recorded("patpush:gap"), [
      {
        type: "patpush:gap",
        target: "document",
        detail: {
          type: "welcome",
          id: "3-7",
          recovery: "gap",
          user: "alice",
          channels: [],
          conn: "c2",
        },
      },
    ]);
  });

  it("keeps placeholders on complete", async () => {
    standIn.welcomeId = "3-0";
    const first = await openPendingPage();
    send(first, { type: "message", id: "3-1", event: "doc-ready" });
    await waitForEvents("doc-ready", 1);
    first.close(4000, "restart");
    const second = await standIn.waitForSockets(2);
    await waitForEvents("patpush:welcome", 2);
    // Queued frames run in order, so this event arrives after any refresh the welcome started.
    send(second, { type: "message", id: "3-2", event: "doc-ready" });
    await waitForEvents("doc-ready", 2);

    const welcomes = await recorded("patpush:welcome");
    assert.equal((welcomes[1]?.detail as { recovery: string }).recovery, "complete");
    assert.equal(placeholderRequests().length, 1);
    assert.equal(await page.textContent("#doc-10"), "still rendering");
    assert.deepEqual(await recorded("patpush:gap"), []);
  });

  it("applies replayed message once", async () => {
    await openPage(connectionMarkup() + `<ul id="list"></ul>`);
    await page.evaluate(() => {
      document.body.addEventListener("item-added", () => {
        document.getElementById("list")?.insertAdjacentHTML("beforeend", "<li>item</li>");
      });
    });
    const first = await standIn.waitForSockets(1);
    await waitForEvents("patpush:welcome", 1);
    send(first, { type: "message", id: "1-1", event: "item-added" });
    await waitForEvents("patpush:message", 1);
    first.close(4000, "restart");
    const second = await standIn.waitForSockets(2);
    await waitForEvents("patpush:welcome", 2);
    // The server replays from the page's last id; the overlap must not apply again.
    send(second, { type: "message", id: "1-1", event: "item-added" });
    send(second, { type: "message", id: "1-2", event: "item-added" });
    await waitForEvents("patpush:message", 2);
    await pause(200);

    const ids = (await recorded("patpush:message")).map(
      (event) => (event.detail as { id: string }).id,
    );
    assert.deepEqual(ids, ["1-1", "1-2"]);
    assert.equal(await page.locator("#list li").count(), 2);
  });

  it("skips frames whose message event is cancelled", async () => {
    await openPage(connectionMarkup());
    await page.evaluate(() => {
      document.addEventListener("patpush:message", (event) => {
        if ((event as CustomEvent<{ id: string }>).detail.id === "5-0") event.preventDefault();
      });
    });
    const socket = await standIn.waitForSockets(1);
    send(socket, { type: "message", id: "5-0", event: "doc-ready" });
    send(socket, { type: "message", id: "6-0", event: "doc-ready" });
    await waitForEvents("patpush:message", 2);
    await waitForEvents("doc-ready", 1);

    const ready = await recorded("doc-ready");
    assert.deepEqual(
      ready.map((event) => (event.detail as { id: string }).id),
      ["6-0"],
    );
  });

  it("logs debug output when asked", async () => {
    await openPage(connectionMarkup("; debug: true"));
    const socket = await standIn.waitForSockets(1);
    send(socket, { type: "message", id: "1-0" });
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
