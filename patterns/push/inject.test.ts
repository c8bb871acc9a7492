import assert from "node:assert/strict";
import { after, afterEach, before, beforeEach, describe, it } from "node:test";
import type { Browser, Page } from "playwright-core";
import { launchChromium } from "../../e2e/browser.ts";
import {
  buildBundle,
  openTestPage,
  pageHtml,
  startFixtureServer,
  type ConsoleEntry,
  type FixtureServer,
  type RecordedEvent,
} from "../../client/test-support.ts";

const EVENT_TYPES = [
  "pat-inject-success",
  "patpush:injected",
  "pat-inject-missingSource",
  "pat-inject-missingTarget",
  "patpush:fetch-failed",
  "patpush:invalid-snippet",
  "patpush:url-rejected",
];

const PAGE_BODY = `
<div id="main" data-old="yes"><p>old</p></div>
<div id="list"><p>one</p></div>
<section id="box"><span>box</span></section>`;

const FRAGMENT = `<!doctype html><html><body>
<div id="main"><p>new</p></div>
<div id="more"><p>zero</p></div>
<div id="other">other</div>
<div id="card"><article id="card-7">card</article></div>
</body></html>`;

const ACTIVE_FRAGMENT = `<!doctype html><html><body>
<div id="main">
  <script>window.fragmentRan = true;</script>
  <img id="bad" src="/missing.png" onerror="window.imageErrorRan = true">
  <a id="link" href=" javascript:window.linkRan = true">link</a>
  <iframe id="frame" srcdoc="<script>parent.srcdocRan = true</script>"></iframe>
  <button id="button" onclick="window.clickRan = true">button</button>
</div>
</body></html>`;

interface Outcome {
  events: RecordedEvent[];
  injectedCount: number;
  html: Record<string, string>;
}

describe("inject", () => {
  let browser: Browser;
  let fixtures: FixtureServer;
  let otherHost: FixtureServer;
  let otherPort: FixtureServer;
  let page: Page;
  let consoleEntries: ConsoleEntry[];

  before(async () => {
    const bundle = await buildBundle();
    fixtures = await startFixtureServer({ bundle });
    otherHost = await startFixtureServer({ host: "127.0.0.2", cors: true });
    otherPort = await startFixtureServer({ cors: true });
    fixtures.routes.set("/page", { body: pageHtml(PAGE_BODY) });
    fixtures.routes.set("/fragment", { body: FRAGMENT });
    fixtures.routes.set("/plain", { body: "<html><body><em>plain</em> text</body></html>" });
    fixtures.routes.set("/active", { body: ACTIVE_FRAGMENT });
    fixtures.routes.set("/gone", { status: 404, body: FRAGMENT });
    fixtures.routes.set("/broken", { status: 500, body: FRAGMENT });
    otherPort.routes.set("/fragment", { body: FRAGMENT });
    browser = await launchChromium();
  });

  after(async () => {
    await browser?.close();
    await fixtures?.close();
    await otherHost?.close();
    await otherPort?.close();
  });

  beforeEach(async () => {
    ({ page, console: consoleEntries } = await openTestPage(browser));
    await page.goto(`${fixtures.origin}/page`);
    await page.evaluate((types) => window.recordEvents(types), EVENT_TYPES);
    fixtures.requests.length = 0;
  });

  afterEach(async () => {
    await page.close();
  });

  /** Applies `snippet` in the page and returns the events and the content of #main, #list and #box. */
  async function apply(snippet: string, allowedOrigins: string[] = []): Promise<Outcome> {
    return page.evaluate(
      async ({ snippet, allowedOrigins }) => {
        const results = await window.patpush.applySnippet(snippet, { allowedOrigins });
        const html: Record<string, string> = {};
        for (const id of ["main", "list", "box"])
          html[id] = document.getElementById(id)?.innerHTML ?? "(absent)";
        const injectedCount = results.reduce((sum, result) => sum + result.injected.length, 0);
        return { events: window.recordedEvents, injectedCount, html };
      },
      { snippet, allowedOrigins },
    );
  }

  function eventsOf(outcome: Outcome, type: string): RecordedEvent[] {
    return outcome.events.filter((event) => event.type === type);
  }

  function warned(text: string): boolean {
    return consoleEntries.some((entry) => entry.type === "warning" && entry.text.includes(text));
  }

  it("replaces target content by default", async () => {
    const outcome = await apply(`<a href="/fragment#main" data-pat-inject=""></a>`);

    assert.equal(outcome.html.main, "<p>new</p>");
    assert.equal(await page.getAttribute("#main", "data-old"), "yes");
    assert.equal(outcome.injectedCount, 1);
    assert.deepEqual(fixtures.requests, ["GET /fragment"]);
  });

  it("fires success on injected node", async () => {
    const outcome = await apply(`<a href="/fragment#card" data-pat-inject="target: #box"></a>`);

    assert.equal(outcome.html.box, `<article id="card-7">card</article>`);
    const detail = { url: `${fixtures.origin}/fragment#card`, source: "#card", target: "#box" };
    assert.deepEqual(eventsOf(outcome, "pat-inject-success"), [
      { type: "pat-inject-success", target: "article#card-7", detail },
    ]);
    assert.deepEqual(eventsOf(outcome, "patpush:injected"), [
      { type: "patpush:injected", target: "article#card-7", detail },
    ]);
  });

  it("replaces target element with ::element", async () => {
    const outcome = await apply(
      `<a href="/fragment#main" data-pat-inject="source: #main::element; target: #main::element"></a>`,
    );

    assert.equal(outcome.html.main, "<p>new</p>");
    assert.equal(await page.getAttribute("#main", "data-old"), null);
    assert.equal(await page.locator("#main").count(), 1);
    assert.deepEqual(
      eventsOf(outcome, "pat-inject-success").map((event) => event.target),
      ["div#main"],
    );
  });

  it("inserts before content with ::before", async () => {
    const outcome = await apply(
      `<a href="/fragment#more" data-pat-inject="target: #list::before"></a>`,
    );

    assert.equal(outcome.html.list, "<p>zero</p><p>one</p>");
  });

  it("inserts after content with ::after", async () => {
    const outcome = await apply(
      `<a href="/fragment#more" data-pat-inject="target: #list::after"></a>`,
    );

    assert.equal(outcome.html.list, "<p>one</p><p>zero</p>");
  });

  it("inserts beside target with ::element::after", async () => {
    await apply(
      `<a href="/fragment#more" data-pat-inject="source: #more::element; target: #list::element::after"></a>`,
    );

    const order = await page.evaluate(() =>
      Array.from(document.body.children).map((element) => element.id),
    );
    assert.deepEqual(order.slice(0, 4), ["main", "list", "more", "box"]);
  });

  it("source option overrides href selector", async () => {
    const outcome = await apply(
      `<a href="/fragment#main" data-pat-inject="source: #other; target: #box"></a>`,
    );

    assert.equal(outcome.html.box, "other");
    assert.equal(outcome.html.main, "<p>old</p>");
  });

  it("takes body content without selector", async () => {
    const outcome = await apply(`<a href="/plain" data-pat-inject="target: #box"></a>`);

    assert.equal(outcome.html.box, "<em>plain</em> text");
  });

  it("applies every && option set", async () => {
    const outcome = await apply(
      `<a href="/fragment#other" data-pat-inject="target: #box && source: #more; target: #list"></a>`,
    );

    assert.equal(outcome.html.box, "other");
    assert.equal(outcome.html.list, "<p>zero</p>");
    assert.deepEqual(fixtures.requests, ["GET /fragment"]);
  });

  it("reports missing source", async () => {
    const outcome = await apply(`<a href="/fragment#nowhere" data-pat-inject="target: #main"></a>`);

    assert.equal(outcome.html.main, "<p>old</p>");
    assert.deepEqual(eventsOf(outcome, "pat-inject-missingSource"), [
      {
        type: "pat-inject-missingSource",
        target: "div#main",
        detail: { selector: "#nowhere", url: `${fixtures.origin}/fragment#nowhere` },
      },
    ]);
    assert.ok(warned(`source "#nowhere" not found`));
  });

  it("reports missing target without request", async () => {
    const outcome = await apply(`<a href="/fragment#main" data-pat-inject="target: #absent"></a>`);

    assert.deepEqual(eventsOf(outcome, "pat-inject-missingTarget"), [
      {
        type: "pat-inject-missingTarget",
        target: "document",
        detail: { selector: "#absent", url: `${fixtures.origin}/fragment#main` },
      },
    ]);
    assert.deepEqual(fixtures.requests, []);
    assert.ok(warned(`target "#absent" not found`));
  });

  for (const [path, status] of [
    ["/gone", 404],
    ["/broken", 500],
  ] as const) {
    it(`reports fetch failure on ${status}`, async () => {
      const outcome = await apply(`<a href="${path}#main" data-pat-inject=""></a>`);

      assert.equal(outcome.html.main, "<p>old</p>");
      assert.equal(outcome.injectedCount, 0);
      assert.deepEqual(eventsOf(outcome, "patpush:fetch-failed"), [
        {
          type: "patpush:fetch-failed",
          target: "div#main",
          detail: { url: `${fixtures.origin}${path}`, status, reason: `status ${status}` },
        },
      ]);
      assert.ok(warned(`fetching ${fixtures.origin}${path} failed: status ${status}`));
    });
  }

  it("rejects other origins without request", async () => {
    const outcome = await apply(
      `<a href="${otherHost.origin}/fragment#main" data-pat-inject=""></a>` +
        `<a href="${otherPort.origin}/fragment#main" data-pat-inject=""></a>`,
    );

    assert.equal(outcome.html.main, "<p>old</p>");
    const rejected = eventsOf(outcome, "patpush:url-rejected");
    assert.deepEqual(
      rejected.map((event) => (event.detail as { origin: string }).origin),
      [otherHost.origin, otherPort.origin],
    );
    assert.equal(rejected[0]?.target, "div#main");
    assert.deepEqual(otherHost.requests, []);
    assert.deepEqual(otherPort.requests, []);
    assert.ok(warned("injection URL rejected"));
  });

  it("fetches from allowed origin", async () => {
    const outcome = await apply(
      `<a href="${otherPort.origin}/fragment#other" data-pat-inject="target: #box"></a>`,
      [otherPort.origin],
    );

    assert.equal(outcome.html.box, "other");
    assert.deepEqual(otherPort.requests, ["GET /fragment"]);
  });

  it("rejects javascript href", async () => {
    const outcome = await apply(
      `<a href="javascript:window.hrefRan=true" data-pat-inject="target: #main"></a>`,
    );

    const rejected = eventsOf(outcome, "patpush:url-rejected");
    assert.equal(rejected.length, 1);
    assert.equal(
      (rejected[0]?.detail as { reason: string }).reason,
      "scheme javascript: is not http(s)",
    );
    assert.equal(await page.evaluate(() => "hrefRan" in window), false);
  });

  it("never follows a redirect", async () => {
    otherPort.requests.length = 0;
    fixtures.routes.set("/moved", {
      status: 302,
      body: "",
      headers: { Location: `${otherPort.origin}/fragment` },
    });
    fixtures.routes.set("/moved-here", {
      status: 301,
      body: "",
      headers: { Location: "/fragment" },
    });
    const outcome = await apply(
      `<a href="/moved#main" data-pat-inject=""></a>` +
        `<a href="/moved-here#other" data-pat-inject="target: #box"></a>`,
    );

    assert.equal(outcome.html.main, "<p>old</p>");
    assert.equal(outcome.html.box, "<span>box</span>");
    const failed = eventsOf(outcome, "patpush:fetch-failed").map((event) => event.detail);
    assert.deepEqual(failed, [
      { url: `${fixtures.origin}/moved`, status: 0, reason: "redirect not followed" },
      { url: `${fixtures.origin}/moved-here`, status: 0, reason: "redirect not followed" },
    ]);
    assert.deepEqual(otherPort.requests, []);
    assert.deepEqual(fixtures.requests.sort(), ["GET /moved", "GET /moved-here"]);
  });

  it("rejects URL with user info", async () => {
    const origin = new URL(fixtures.origin);
    const outcome = await apply(
      `<a href="http://portal@${origin.host}/fragment#main" data-pat-inject=""></a>`,
    );

    const rejected = eventsOf(outcome, "patpush:url-rejected");
    assert.equal(rejected.length, 1);
    assert.equal((rejected[0]?.detail as { reason: string }).reason, "URL contains user info");
    assert.deepEqual(fixtures.requests, []);
  });

  it("never fills script or style", async () => {
    await page.evaluate(() => {
      const script = document.createElement("script");
      script.id = "idle";
      document.body.append(script, document.createElement("style"));
    });
    fixtures.routes.set("/text", { body: `<p id="code">window.textRan = true</p>` });
    const outcome = await apply(
      `<a href="/text#code" data-pat-inject="target: script#idle"></a>` +
        `<a href="/text#code" data-pat-inject="target: style"></a>`,
    );

    const invalid = eventsOf(outcome, "patpush:invalid-snippet").map(
      (event) => (event.detail as { reason: string }).reason,
    );
    assert.deepEqual(invalid, [
      "target is a script or style element",
      "target is a script or style element",
    ]);
    assert.equal(await page.evaluate(() => "textRan" in window), false);
    assert.equal(await page.evaluate(() => document.getElementById("idle")?.textContent), "");
    assert.deepEqual(fixtures.requests, []);
  });

  it("never replaces the document element", async () => {
    const outcome = await apply(
      `<a href="/fragment#main" data-pat-inject="target: html::element"></a>` +
        `<a href="/fragment#main" data-pat-inject="target: :root::element::after"></a>`,
    );

    const invalid = eventsOf(outcome, "patpush:invalid-snippet").map(
      (event) => (event.detail as { reason: string }).reason,
    );
    assert.deepEqual(invalid, ["target is the document element", "target is the document element"]);
    assert.equal(outcome.html.main, "<p>old</p>");
    assert.deepEqual(fixtures.requests, []);
  });

  it("applies at most MAX_TRIGGERS elements", async () => {
    const trigger = `<a href="/fragment#more" data-pat-inject="target: #list::after"></a>`;
    const outcome = await apply(trigger.repeat(20));

    const invalid = eventsOf(outcome, "patpush:invalid-snippet");
    assert.equal(invalid.length, 1);
    assert.deepEqual(
      { ...(invalid[0]?.detail as object), snippet: undefined },
      { reason: "too many pat-inject elements", count: 20, max: 16, snippet: undefined },
    );
    assert.equal(fixtures.requests.length, 16);
  });

  it("never runs scripts or handlers", async () => {
    const outcome = await apply(
      `<script>window.snippetRan = true;</script>` +
        `<img src="/missing.png" onerror="window.snippetImageRan = true">` +
        `<a href="/active#main" data-pat-inject=""></a>`,
    );
    await page.waitForFunction(
      () => (document.getElementById("bad") as HTMLImageElement | null)?.complete === true,
    );
    await page.click("#button");

    const ran = await page.evaluate(() =>
      [
        "snippetRan",
        "snippetImageRan",
        "fragmentRan",
        "imageErrorRan",
        "linkRan",
        "srcdocRan",
        "clickRan",
      ].filter((name) => name in window),
    );
    assert.deepEqual(ran, []);
    assert.equal(await page.locator("#main script").count(), 0);
    assert.equal(await page.getAttribute("#bad", "onerror"), null);
    assert.equal(await page.getAttribute("#bad", "src"), "/missing.png");
    assert.equal(await page.getAttribute("#link", "href"), null);
    assert.equal(await page.locator("#frame").count(), 0);
    assert.equal(await page.getAttribute("#button", "onclick"), null);
    assert.ok(outcome.html.main?.includes(`<a id="link">link</a>`));
  });

  it("reports invalid selectors without throwing", async () => {
    const outcome = await apply(
      `<a href="/fragment#main" data-pat-inject="target: #main["></a>` +
        `<a href="/fragment#main" data-pat-inject="source: ::nonsense(; target: #box"></a>`,
    );

    assert.equal(outcome.html.main, "<p>old</p>");
    assert.equal(outcome.html.box, "<span>box</span>");
    const invalid = eventsOf(outcome, "patpush:invalid-snippet").map((event) => event.detail);
    assert.deepEqual(invalid, [
      {
        reason: "invalid target selector",
        selector: "#main[",
        url: `${fixtures.origin}/fragment#main`,
      },
      {
        reason: "invalid source selector",
        selector: "::nonsense(",
        url: `${fixtures.origin}/fragment#main`,
      },
    ]);
  });

  it("reports snippet without href", async () => {
    const outcome = await apply(`<a data-pat-inject="target: #main"></a>`);

    const invalid = eventsOf(outcome, "patpush:invalid-snippet");
    assert.equal(invalid.length, 1);
    assert.equal(invalid[0]?.target, "document");
    assert.equal((invalid[0]?.detail as { reason: string }).reason, "missing href");
    assert.deepEqual(fixtures.requests, []);
    assert.ok(warned("snippet element has missing href"));
  });

  it("reports snippet without injection element", async () => {
    const outcome = await apply(`<p>hello</p>`);

    assert.deepEqual(eventsOf(outcome, "patpush:invalid-snippet"), [
      {
        type: "patpush:invalid-snippet",
        target: "document",
        detail: { reason: "no pat-inject element", snippet: "<p>hello</p>" },
      },
    ]);
  });
});
