/**
 * Random message frames against the pat-push pattern in one Chromium page:
 * tag soup, attributes, selectors and URLs, in the snippets and in the
 * fragments the page fetches. The run is repeatable: set PATPUSH_FUZZ_SEED
 * to the seed that a failure prints, and PATPUSH_FUZZ_COUNT to change the
 * number of frames (1000 by default).
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { Browser } from "playwright-core";
import { launchChromium } from "../e2e/browser.ts";
import {
  buildBundle,
  pageHtml,
  pause,
  startFixtureServer,
  startPushStandIn,
  type FixtureServer,
  type PushStandIn,
} from "../client/test-support.ts";
import {
  activeContentUnder,
  foreignRequests,
  openWatchedPage,
  PASSIVE_RESOURCE_TYPES,
  PAYLOAD,
  payloadTraces,
} from "../patterns/push/hostile-page.ts";

const SEED = Number(process.env.PATPUSH_FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 32));
const FRAME_COUNT = Number(process.env.PATPUSH_FUZZ_COUNT ?? 1000);
/** Random fragments served at /soup-0 … /soup-<n - 1>. */
const SOUP_PAGES = 40;

/** Events counted and printed, to show what a run exercised. */
const EVENT_TYPES = [
  "pat-inject-success",
  "pat-inject-missingSource",
  "pat-inject-missingTarget",
  "patpush:fetch-failed",
  "patpush:invalid-snippet",
  "patpush:url-rejected",
];

const PAGE_BODY = `
<div id="t"><p>old</p></div>
<div id="ok">waiting</div>
<script id="idle"></script>`;

const TAGS = [
  "div", "p", "span", "a", "img", "svg", "math", "script", "style", "iframe", "object", "embed",
  "base", "meta", "link", "template", "form", "button", "input", "noscript", "table", "tr", "td",
  "select", "option", "textarea", "title", "xmp", "noembed", "animate", "set", "use",
  "foreignObject", "mglyph", "mtext", "annotation-xml", "details", "video", "source", "frameset",
  "body", "head", "html", "image", "feImage", "portal", "applet", "isindex", "plaintext",
];

const ATTRIBUTES = [
  "href", "src", "xlink:href", "action", "formaction", "srcdoc", "onerror", "onload", "onclick",
  "onfocus", "onbegin", "ONMOUSEOVER", "autofocus", "style", "id", "name", "class", "srcset",
  "ping", "data-pat-inject", "data-pat-push", "data-pat-push-pending", "attributeName", "values",
  "to", "http-equiv", "content", "shadowrootmode", "is", "data", "poster", "background",
];

const URLS = [
  "/clean#s", "/clean", "/soup-N#s", "/soup-N", "./a/../soup-N#s", "/to-foreign#s", "#s", "",
  "FOREIGN/clean#s", "//FOREIGN_HOST/clean#s", "\\\\FOREIGN_HOST/clean", "/\\FOREIGN_HOST/x",
  "https:FOREIGN_HOST/x", "http://PAGE_HOST@FOREIGN_HOST/x", "http://u:p@PAGE_HOST/clean#s",
  "javascript:PAYLOAD", " java&#x09;script:PAYLOAD", "&#x01;//FOREIGN_HOST/x",
  "data:text/html,<script>PAYLOAD</script>", "data:image/svg+xml,<svg onload=PAYLOAD>",
  "blob:FOREIGN/1", "file:///etc/passwd", "http://１２７.０.０.２:FOREIGN_PORT/x",
  "http://xn--pple-43d.localhost/x", "FOREIGN_WS/push", "vbscript:PAYLOAD",
];

const SELECTORS = [
  "#t", "#t::element", "#t::before", "#t::after", "#t::element::after", "#t::element::before",
  "#s", "#s::element", "script#idle", "style", "#nope", "#t[", ":has(", "body", "head", "html",
  "div", "*", "::element", "p:nth-child(", "#ok", "a[href^=javascript]", "svg *", "template",
  "[onerror]", "", " ", "#t, #nope", "\\", "#\u0000", "html::element", "body::element",
];

const EVENT_NAMES = [
  "doc-ready", "patpush:injected", "push", "pat-inject-success", "click", "", "DOMContentLoaded",
  "x".repeat(60),
];

declare global {
  interface Window {
    /** Set when the frame sent after the random ones has been handled. */
    fuzzDone?: boolean;
  }
}

const JUNK = ["<", ">", "\"", "'", "&", ";", "&&", "::", "\u0000", "\u0001", "\u202e", " ", "\n"];

/** Mulberry32: a small seeded PRNG, so a failing run can be repeated from its seed. */
function createRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Random markup, selectors and frames drawn from one seeded PRNG. */
class SoupMaker {
  readonly #random: () => number;

  constructor(seed: number) {
    this.#random = createRandom(seed);
  }

  int(max: number): number {
    return Math.floor(this.#random() * max);
  }

  chance(probability: number): boolean {
    return this.#random() < probability;
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }

  junk(): string {
    let text = "";
    for (let count = this.int(6); count > 0; count -= 1) {
      text += this.chance(0.5) ? this.pick(JUNK) : String.fromCharCode(32 + this.int(95));
    }
    return text;
  }

  url(): string {
    let url = this.chance(0.9) ? this.pick(URLS) : this.junk();
    // Half the URLs name a random fragment, so that many frames reach the clean-up.
    if (this.chance(0.5)) url = this.pick(["/soup-N#s", "/soup-N"]);
    return url.replace("soup-N", `soup-${this.int(SOUP_PAGES)}`);
  }

  selector(): string {
    return this.chance(0.9) ? this.pick(SELECTORS) : this.junk();
  }

  sourceSelector(): string {
    return this.chance(0.5) ? this.pick(["#s", "#s::element", "body"]) : this.selector();
  }

  targetSelector(): string {
    return this.chance(0.5) ? this.pick(["#t::after", "#t::before", "#t"]) : this.selector();
  }

  attributeValue(name: string): string {
    const lower = name.toLowerCase();
    if (lower.startsWith("on")) return "PAYLOAD";
    if (lower === "data-pat-inject") {
      return `source: ${this.selector()}; target: ${this.selector()}`;
    }
    if (lower === "data-pat-push") {
      const push = `push-id: p${this.int(3)}; url: ${this.url()}`;
      return `${push}; socket-url: ${this.url()}; allowed-origins: FOREIGN`;
    }
    if (lower === "srcdoc") return "<script>parent.pwned = 1</script>";
    if (lower === "style") return this.pick(["color:red", "background:url(javascript:PAYLOAD)"]);
    if (lower === "id") return this.pick(["s", "t", "ok", "idle", "querySelector", "x"]);
    if (this.chance(0.6)) return this.url();
    return this.junk();
  }

  element(depth: number): string {
    const tag = this.pick(TAGS);
    let attributes = "";
    for (let count = this.int(4); count > 0; count -= 1) {
      const name = this.pick(ATTRIBUTES);
      const value = this.attributeValue(name).replaceAll('"', "&quot;");
      const unquoted = ` ${name}=${value.replace(/\s/g, "")}`;
      attributes += this.chance(0.8) ? ` ${name}="${value}"` : unquoted;
    }
    const leaf = this.pick(["", "text", "PAYLOAD", this.junk()]);
    const children = depth > 0 ? this.soup(depth - 1) : leaf;
    const close = this.chance(0.85) ? `</${tag}>` : "";
    return `<${tag}${attributes}>${children}${close}`;
  }

  soup(depth: number): string {
    let html = "";
    for (let count = this.int(4); count > 0; count -= 1) {
      html += this.chance(0.15) ? this.junk() : this.element(depth);
    }
    return html;
  }

  trigger(): string {
    const sets = Array.from(
      { length: 1 + this.int(3) },
      () => `source: ${this.sourceSelector()}; target: ${this.targetSelector()}`,
    );
    const shorthand = `${this.sourceSelector()} ${this.targetSelector()}`;
    const options = this.chance(0.2) ? shorthand : sets.join(" && ");
    const marker = this.chance(0.8)
      ? `data-pat-inject="${options.replaceAll('"', "&quot;")}"`
      : `class="pat-inject"`;
    return `<a href="${this.url().replaceAll('"', "&quot;")}" ${marker}>${this.soup(1)}</a>`;
  }

  snippet(): string {
    let html = this.chance(0.3) ? this.soup(2) : "";
    for (let count = this.int(4); count > 0; count -= 1) html += this.trigger();
    if (this.chance(0.02)) html += this.trigger().repeat(30);
    return html;
  }

  fragment(): string {
    const body = `<div id="s">${this.soup(3)}</div>${this.soup(2)}`;
    if (this.chance(0.8)) return body;
    return `<!doctype html><html><head>${this.soup(1)}</head><body>${body}</body></html>`;
  }

  frame(id: string): Record<string, unknown> {
    const frame: Record<string, unknown> = { type: "message", id };
    if (this.chance(0.85)) frame.html = this.snippet();
    if (this.chance(0.05)) frame.html = this.pick([42, {}, [], null, true]);
    if (this.chance(0.1)) frame.event = this.pick(EVENT_NAMES);
    if (this.chance(0.1)) {
      frame.data = this.pick([PAYLOAD, { html: "<script>PAYLOAD</script>" }, 7]);
    }
    if (this.chance(0.1)) frame.pushId = this.pick(["p0", "p1", "p2", "", 5]);
    return frame;
  }
}

describe("pattern fuzz", () => {
  let browser: Browser;
  let site: FixtureServer;
  let foreign: FixtureServer;
  let standIn: PushStandIn;
  let replacements: Array<[string, string]>;

  before(async () => {
    const bundle = await buildBundle();
    site = await startFixtureServer({ bundle });
    foreign = await startFixtureServer({ host: "127.0.0.2", cors: true });
    standIn = await startPushStandIn();
    const foreignUrl = new URL(foreign.origin);
    replacements = [
      ["FOREIGN_HOST", foreignUrl.host],
      ["FOREIGN_PORT", foreignUrl.port],
      ["FOREIGN_WS", `ws://${foreignUrl.host}`],
      ["FOREIGN", foreign.origin],
      ["PAGE_HOST", new URL(site.origin).host],
      ["PAYLOAD", PAYLOAD],
    ];
    browser = await launchChromium();
  });

  after(async () => {
    await browser?.close();
    await standIn?.close();
    await site?.close();
    await foreign?.close();
  });

  function expand(text: string): string {
    let expanded = text;
    for (const [token, value] of replacements) expanded = expanded.replaceAll(token, value);
    return expanded;
  }

  function expandFrame(frame: Record<string, unknown>): Record<string, unknown> {
    const expanded: Record<string, unknown> = {};
    for (const [key, value] of Object.entries(frame)) {
      expanded[key] = typeof value === "string" ? expand(value) : value;
    }
    return expanded;
  }

  it(`survives ${FRAME_COUNT} random frames`, async (t) => {
    t.diagnostic(`seed ${SEED}; repeat with PATPUSH_FUZZ_SEED=${SEED}`);
    const context = `(seed ${SEED}; repeat with PATPUSH_FUZZ_SEED=${SEED})`;
    const maker = new SoupMaker(SEED);
    for (let index = 0; index < SOUP_PAGES; index += 1) {
      site.routes.set(`/soup-${index}`, { body: expand(maker.fragment()) });
    }
    site.routes.set("/clean", { body: `<div id="s"><p>clean</p></div>` });
    site.routes.set("/final", { body: `<div id="final-src">applied</div>` });
    site.routes.set("/to-foreign", {
      status: 302,
      body: "",
      headers: { Location: `${foreign.origin}/clean` },
    });
    const connection = `<div id="conn" class="pat-push" data-pat-push="socket-url: ${standIn.url}">`;
    site.routes.set("/page", { body: pageHtml(`${connection}</div>${PAGE_BODY}`, EVENT_TYPES) });

    const watched = await openWatchedPage(browser);
    const { page } = watched;
    try {
      await watched.open(`${site.origin}/page`);
      const socket = await standIn.waitForSockets(1);
      await page.waitForFunction(() =>
        document.getElementById("conn")?.classList.contains("pat-push-state-open"),
      );

      await page.evaluate(() => {
        window.fuzzDone = false;
        document.addEventListener("fuzz-done", () => (window.fuzzDone = true));
        for (const element of Array.from(document.querySelectorAll("head *, script"))) {
          element.setAttribute("data-page-markup", "");
        }
      });
      const started = Date.now();
      for (let index = 0; index < FRAME_COUNT; index += 1) {
        socket.send(JSON.stringify(expandFrame(maker.frame(`${index + 1}-0`))));
      }

      // Frames are applied in order, so this event fires once every random frame is done.
      const doneFrame = { type: "message", id: `${FRAME_COUNT + 1}-0`, event: "fuzz-done" };
      socket.send(JSON.stringify(doneFrame));
      await page.waitForFunction(() => window.fuzzDone === true, undefined, { timeout: 30_000 });

      // The random frames may have replaced any part of the page, so the target is made afresh.
      await page.evaluate(() => {
        document.getElementById("final")?.remove();
        const final = document.createElement("div");
        final.id = "final";
        if (document.documentElement === null) document.append(document.createElement("html"));
        (document.body ?? document.documentElement!).append(final);
      });
      socket.send(
        JSON.stringify({
          type: "message",
          id: `${FRAME_COUNT + 2}-0`,
          html: `<a href="/final#final-src" data-pat-inject="target: #final"></a>`,
        }),
      );
      await page.waitForFunction(
        () => document.getElementById("final")?.textContent === "applied",
        undefined,
        { timeout: 5000 },
      );
      t.diagnostic(`${FRAME_COUNT} frames applied in ${Date.now() - started} ms`);
      const counts = await page.evaluate(() => {
        const byType: Record<string, number> = {};
        for (const { type } of window.recordedEvents) byType[type] = (byType[type] ?? 0) + 1;
        return byType;
      });
      t.diagnostic(`events: ${JSON.stringify(counts)}`);

      // Time for a meta refresh, an animation or an image error to act.
      await pause(300);

      const thrown = watched.console.filter(
        (entry) => entry.type === "error" && entry.text.includes("applying a push frame failed"),
      );
      assert.deepEqual(thrown, [], `the pattern threw ${context}`);
      assert.deepEqual(watched.errors, [], `uncaught page errors ${context}`);
      assert.deepEqual(await payloadTraces(watched), [], `a payload ran ${context}`);
      // Fragments may load images and other passive resources from any origin, and
      // every request at the foreign server must be one of those.
      const passive = new Set(
        watched.requests
          .filter(({ type }) => PASSIVE_RESOURCE_TYPES.has(type))
          .map(({ url }) => {
            const parsed = new URL(url);
            return `GET ${parsed.pathname}${parsed.search}`;
          }),
      );
      const unexplained = foreign.requests.filter((request) => !passive.has(request));
      assert.deepEqual(unexplained, [], `the foreign server got requests ${context}`);
      assert.deepEqual(
        foreignRequests(watched, [site.origin, standIn.url], PASSIVE_RESOURCE_TYPES),
        [],
        `the page requested another origin ${context}`,
      );
      assert.deepEqual(watched.navigations, [], `the page navigated ${context}`);
      const active = await activeContentUnder(page, ":root", "[data-page-markup]");
      assert.deepEqual(active, [], `active content entered the page ${context}`);
    } finally {
      await page.close();
    }
  });
});
