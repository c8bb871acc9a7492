import assert from "node:assert/strict";
import { after, afterEach, before, beforeEach, describe, it } from "node:test";
import type { Browser, Page } from "playwright-core";
import { launchChromium } from "../../e2e/browser.ts";
import {
  buildBundle,
  openTestPage,
  pageHtml,
  startFixtureServer,
  type FixtureServer,
} from "../../client/test-support.ts";

declare global {
  interface Window {
    /** Data of every `message` event the test page received. */
    receivedMessages: unknown[];
    /** Elements that fired `load` or `error`, recorded in the capture phase. */
    settledElements: Set<EventTarget>;
  }
}

const PAGE_BODY = `<div id="main"><p>old</p></div><div id="box"><p>box</p></div>`;

/** A same-origin page whose script sets a flag in the page that embeds it. */
const SCRIPT_PAGE = `<!doctype html><html><body>
<script>parent.frameRan = true;</script>
</body></html>`;

const FRAMESET_PAGE = `<!doctype html><html>
<frameset><frame id="frame" src="/page-with-script"></frameset>
</html>`;

const PNG_DATA_URL =
  "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==";

type AttributeMap = Record<string, Record<string, string>>;

describe("active content clean-up", () => {
  let browser: Browser;
  let fixtures: FixtureServer;
  let page: Page;

  before(async () => {
    const bundle = await buildBundle();
    fixtures = await startFixtureServer({ bundle });
    fixtures.routes.set("/page", { body: pageHtml(PAGE_BODY) });
    fixtures.routes.set("/page-with-script", { body: SCRIPT_PAGE });
    fixtures.routes.set("/frameset", { body: FRAMESET_PAGE });
    browser = await launchChromium();
  });

  after(async () => {
    await browser?.close();
    await fixtures?.close();
  });

  beforeEach(async () => {
    ({ page } = await openTestPage(browser));
    await page.goto(`${fixtures.origin}/page`);
    await page.evaluate(() => {
      window.receivedMessages = [];
      window.settledElements = new Set();
      window.addEventListener("message", (event) => window.receivedMessages.push(event.data));
      for (const type of ["load", "error"]) {
        document.addEventListener(type, (event) => window.settledElements.add(event.target!), true);
      }
      // Lets only javascript: submissions through, so a form never navigates the test page away.
      document.addEventListener("submit", (event) => {
        const submitter = (event as SubmitEvent).submitter as HTMLButtonElement | null;
        const form = event.target as HTMLFormElement;
        const action = submitter?.hasAttribute("formaction") ? submitter.formAction : form.action;
        if (!action.startsWith("javascript:")) event.preventDefault();
      });
    });
    fixtures.requests.length = 0;
  });

  afterEach(async () => {
    await page.close();
  });

  /** Applies `snippet` in the page and returns the content of #main. */
  async function apply(snippet: string): Promise<string> {
    return page.evaluate(async (snippet) => {
      await window.patpush.applySnippet(snippet);
      return document.getElementById("main")?.innerHTML ?? "(absent)";
    }, snippet);
  }

  /** Serves `markup` as #main of /fragment, injects that into #main, and returns the result. */
  async function inject(markup: string): Promise<string> {
    const body = `<!doctype html><html><body><div id="main">${markup}</div></body></html>`;
    fixtures.routes.set("/fragment", { body });
    const html = await apply(`<a href="/fragment#main" data-pat-inject=""></a>`);
    assert.ok(!html.includes("<p>old</p>"), "the fragment replaced the old content");
    return html;
  }

  /**
   * Returns the attributes of every element with an id in #main, by id. It
   * reads them through Element.prototype, because a form's named controls
   * can shadow `form.attributes`.
   */
  async function attributesById(): Promise<AttributeMap> {
    return page.evaluate(() => {
      const readAttributes = Object.getOwnPropertyDescriptor(Element.prototype, "attributes")!.get!;
      const result: Record<string, Record<string, string>> = {};
      for (const element of Array.from(document.querySelectorAll("#main [id]"))) {
        const attributes = Array.from(readAttributes.call(element) as NamedNodeMap);
        const pairs = attributes.map((attribute) => [attribute.name, attribute.value]);
        result[element.getAttribute("id")!] = Object.fromEntries(pairs);
      }
      return result;
    });
  }

  async function count(selector: string): Promise<number> {
    return page.locator(selector).count();
  }

  /**
   * Waits two animation frames, so that SVG animations have taken effect, and
   * until every iframe, frame, object, embed and link in #main has fired load or error.
   */
  async function settle(): Promise<void> {
    await page.evaluate(
      () => new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve))),
    );
    const loaders = ["iframe", "frame", "object", "embed", "link"].map((name) => `#main ${name}`);
    await page.waitForFunction(
      (selector) =>
        Array.from(document.querySelectorAll(selector)).every((element) =>
          window.settledElements.has(element),
        ),
      loaders.join(", "),
      { timeout: 10_000 },
    );
  }

  /** Dispatches a bubbling click on each element matching `selector` and returns their count. */
  async function dispatchClicks(selector: string): Promise<number> {
    return page.evaluate((selector) => {
      const elements = Array.from(document.querySelectorAll(selector));
      for (const element of elements) {
        element.dispatchEvent(new MouseEvent("click", { bubbles: true, cancelable: true }));
      }
      return elements.length;
    }, selector);
  }

  /**
   * Clicks a `javascript:` link of the test's own and waits until it has run.
   * Chromium 156 runs a page's `javascript:` URLs in activation order (seen in
   * practice, not specified), so a payload activated earlier has run by then.
   */
  async function flushJavaScriptUrls(): Promise<void> {
    await page.evaluate(() => {
      const link = document.createElement("a");
      link.href = "javascript:void(window.controlRan = true)";
      document.body.append(link);
      link.click();
      link.remove();
    });
    await page.waitForFunction(() => "controlRan" in window);
  }

  /** Returns those of `names` that a payload has set on `window`. */
  async function flagsSet(names: string[]): Promise<string[]> {
    return page.evaluate((names) => names.filter((name) => name in window), names);
  }

  it("blocks svg animate href bypass", async () => {
    await inject(
      `<svg width="40" height="20"><a id="svg-link">` +
        `<animate attributeName="href" values="javascript:void(window.animateRan = true)"/>` +
        `<text x="0" y="15">x</text></a></svg>`,
    );

    assert.equal(await count("#main animate"), 0);
    assert.equal(await count("#svg-link text"), 1);
    assert.deepEqual((await attributesById())["svg-link"], { id: "svg-link" });

    await settle();
    const animatedHref = await page.evaluate(
      () => (document.getElementById("svg-link") as unknown as SVGAElement).href.animVal,
    );
    assert.equal(animatedHref, "");
    assert.equal(await dispatchClicks("#svg-link text"), 1);
    await flushJavaScriptUrls();
    assert.deepEqual(await flagsSet(["animateRan"]), []);
  });

  it("removes data URL iframe", async () => {
    const html = await inject(
      `<iframe id="data-frame" ` +
        `src="data:text/html,<script>parent.postMessage('data frame ran', '*')</script>"></iframe>` +
        `<p id="after">after</p>`,
    );

    assert.equal(await count("#data-frame"), 0);
    assert.equal(html, `<p id="after">after</p>`);

    await settle();
    assert.deepEqual(await page.evaluate(() => window.receivedMessages), []);
  });

  it("removes same-origin script iframe", async () => {
    const html = await inject(
      `<iframe id="page-frame" src="/page-with-script"></iframe><p id="after">after</p>`,
    );

    assert.equal(await count("#page-frame"), 0);
    assert.equal(html, `<p id="after">after</p>`);

    await settle();
    assert.deepEqual(await flagsSet(["frameRan"]), []);
    assert.ok(!fixtures.requests.includes("GET /page-with-script"));
  });

  it("removes frames of frameset page", async () => {
    await apply(
      `<a href="/frameset" data-pat-inject="target: #main"></a>` +
        `<a href="/frameset" data-pat-inject="source: body::element; target: #box"></a>`,
    );

    assert.equal(await count("frame, frameset"), 0);
    assert.equal(await page.innerHTML("#main"), "");
    assert.equal(await page.innerHTML("#box"), "");

    await settle();
    assert.deepEqual(await flagsSet(["frameRan"]), []);
    assert.ok(!fixtures.requests.includes("GET /page-with-script"));
  });

  it("removes embedding elements", async () => {
    await inject(
      `<object id="object" data="/page-with-script" type="text/html"></object>` +
        `<embed id="embed" src="/page-with-script" type="text/html">` +
        `<applet id="applet" code="Payload.class"></applet>` +
        `<portal id="portal" src="/page-with-script"></portal>` +
        `<noscript id="noscript"><p id="fallback">fallback</p></noscript>`,
    );

    for (const id of ["object", "embed", "applet", "portal"]) {
      assert.equal(await count(`#${id}`), 0, `#${id} is removed`);
    }
    assert.equal(await count("#noscript #fallback"), 1);

    await settle();
    assert.deepEqual(await flagsSet(["frameRan"]), []);
    assert.deepEqual(fixtures.requests, ["GET /fragment"]);
  });

  it("removes base, meta and link", async () => {
    await inject(
      `<base id="base" href="http://127.0.0.2:9/">` +
        `<meta id="meta" http-equiv="refresh" content="0; url=${fixtures.origin}/refreshed">` +
        `<link id="link" rel="stylesheet" href="${fixtures.origin}/style.css">` +
        `<p id="after">after</p>`,
    );

    for (const id of ["base", "meta", "link"]) {
      assert.equal(await count(`#${id}`), 0, `#${id} is removed`);
    }
    assert.equal(await count("#after"), 1);
    assert.equal(await page.evaluate(() => document.baseURI), `${fixtures.origin}/page`);

    await settle();
    assert.deepEqual(fixtures.requests, ["GET /fragment"]);
  });

  it("removes svg animation elements", async () => {
    await inject(
      `<svg id="shapes" width="40" height="20">` +
        `<a id="set-link"><set attributeName="href" to="javascript:void(window.setRan = true)"/>` +
        `<text x="0" y="15">y</text></a>` +
        `<rect id="rect" width="10" height="10">` +
        `<animate attributeName="width" to="20" dur="1s"/>` +
        `<animateMotion path="M0,0 L10,10" dur="1s"/>` +
        `<animateTransform attributeName="transform" type="rotate" to="90" dur="1s"/>` +
        `<set attributeName="fill" to="red"/></rect>` +
        `<discard href="#rect" begin="0s"/>` +
        `<handler type="application/ecmascript">window.handlerRan = true</handler></svg>`,
    );

    const localNames = await page.evaluate(() =>
      Array.from(document.querySelectorAll("#shapes *"), (element) => element.localName),
    );
    assert.deepEqual(localNames, ["a", "text", "rect"]);

    await settle();
    assert.equal(await dispatchClicks("#set-link text"), 1);
    await flushJavaScriptUrls();
    assert.deepEqual(await flagsSet(["setRan", "handlerRan"]), []);
  });

  it("removes svg use of other documents", async () => {
    await inject(
      `<svg><defs><circle id="dot" r="4"/></defs>` +
        `<use id="local-use" href="#dot"/>` +
        `<use id="local-xlink-use" xlink:href=" #dot"/>` +
        `<use id="file-use" href="/sprite.svg#dot"/>` +
        `<use id="data-use" href="data:image/svg+xml,<svg id='x' xmlns='http://www.w3.org/2000/svg'/>#x"/>` +
        `<use id="xlink-use" xlink:href="http://127.0.0.2:9/sprite.svg#dot"/></svg>`,
    );

    const ids = await page.evaluate(() =>
      Array.from(document.querySelectorAll("#main use"), (element) => element.id),
    );
    assert.deepEqual(ids, ["local-use", "local-xlink-use"]);
  });

  it("removes non-http form actions", async () => {
    await inject(
      `<form id="mail-form" action="mailto:someone@example.org">` +
        `<button id="data-button" formaction="data:text/html,<p>x</p>">a</button>` +
        `<button id="script-button" formaction="JavaScript:void(window.formRan = true)">b</button>` +
        `<button id="https-button" formaction="https://127.0.0.1:9/submit">c</button></form>` +
        `<form id="relative-form" action="/submit">` +
        `<input id="ftp-input" type="submit" formaction="ftp://127.0.0.1/upload"></form>` +
        `<form id="https-form" action="https://127.0.0.1:9/submit"></form>`,
    );

    const attributes = await attributesById();
    assert.deepEqual(attributes["mail-form"], { id: "mail-form" });
    assert.deepEqual(attributes["data-button"], { id: "data-button" });
    assert.deepEqual(attributes["script-button"], { id: "script-button" });
    assert.deepEqual(attributes["https-button"], {
      id: "https-button",
      formaction: "https://127.0.0.1:9/submit",
    });
    assert.deepEqual(attributes["relative-form"], { id: "relative-form", action: "/submit" });
    assert.deepEqual(attributes["ftp-input"], { id: "ftp-input", type: "submit" });
    assert.deepEqual(attributes["https-form"], {
      id: "https-form",
      action: "https://127.0.0.1:9/submit",
    });

    await page.evaluate(() => {
      (document.getElementById("script-button") as HTMLButtonElement).click();
    });
    await flushJavaScriptUrls();
    assert.deepEqual(await flagsSet(["formRan"]), []);
  });

  it("removes disallowed link schemes", async () => {
    await inject(
      `<a id="data-link" href="data:text/html,<script>parent.dataLinkRan = true</script>">d</a>` +
        `<a id="file-link" href="file:///etc/passwd">f</a>` +
        `<a id="other-scheme-link" href="ms-settings:privacy">o</a>` +
        `<a id="control-link" href="&#1; java&#9;script&#10;:void(window.controlCharRan = true)">c</a>` +
        `<a id="upper-link" href="  JAVASCRIPT:void(window.upperRan = true)">u</a>` +
        `<map name="areas"><area id="area-link" href="vbscript:x" alt="a"></map>` +
        `<svg><a id="svg-data-link" xlink:href="data:text/html,x"><text>s</text></a>` +
        `<a id="svg-script-link" href="javascript:void(window.svgLinkRan = true)"><text>t</text></a></svg>` +
        `<math><mi id="math-link" href="data:text/html,x">m</mi></math>` +
        `<a id="https-link" href="https://127.0.0.1:9/docs">h</a>` +
        `<a id="http-link" href="http://127.0.0.1:9/docs">h</a>` +
        `<a id="path-link" href="/docs/7">p</a>` +
        `<a id="relative-link" href="docs/7?view=full">r</a>` +
        `<a id="colon-path-link" href="./notes:draft">c</a>` +
        `<a id="hash-link" href="#section">h</a>` +
        `<a id="query-link" href="?page=2">q</a>` +
        `<a id="network-path-link" href="//127.0.0.1:9/docs">n</a>` +
        `<a id="mail-link" href="MAILTO:someone@example.org">m</a>` +
        `<a id="phone-link" href="tel:+15550100">t</a>`,
    );

    const attributes = await attributesById();
    for (const id of [
      "data-link",
      "file-link",
      "other-scheme-link",
      "control-link",
      "upper-link",
      "svg-data-link",
      "svg-script-link",
      "math-link",
    ]) {
      assert.deepEqual(attributes[id], { id }, `#${id} has no URL`);
    }
    assert.deepEqual(attributes["area-link"], { id: "area-link", alt: "a" });
    const safe: Array<[string, string]> = [
      ["https-link", "https://127.0.0.1:9/docs"],
      ["http-link", "http://127.0.0.1:9/docs"],
      ["path-link", "/docs/7"],
      ["relative-link", "docs/7?view=full"],
      ["colon-path-link", "./notes:draft"],
      ["hash-link", "#section"],
      ["query-link", "?page=2"],
      ["network-path-link", "//127.0.0.1:9/docs"],
      ["mail-link", "MAILTO:someone@example.org"],
      ["phone-link", "tel:+15550100"],
    ];
    for (const [id, href] of safe) {
      assert.deepEqual(attributes[id], { id, href }, `#${id} keeps its href`);
    }

    const clickable = ["#data-link", "#control-link", "#upper-link", "#area-link"];
    clickable.push("#svg-data-link text", "#svg-script-link text");
    assert.equal(await dispatchClicks(clickable.join(", ")), clickable.length);
    await flushJavaScriptUrls();
    const flags = ["dataLinkRan", "controlCharRan", "upperRan", "svgLinkRan"];
    assert.deepEqual(await flagsSet(flags), []);
  });

  it("allows data images only on img", async () => {
    await inject(
      `<img id="png" src="${PNG_DATA_URL}" alt="">` +
        `<img id="gif" src="data:image/gif;base64,R0lGODlhAQABAAAAACw=" alt="">` +
        `<img id="jpeg" src="DATA:image/JPEG;base64,/9j/" alt="">` +
        `<img id="webp" src=" data:image/webp;base64,UklGRg==" alt="">` +
        `<img id="https-image" src="https://127.0.0.1:9/logo.png" alt="">` +
        `<img id="relative-image" src="logo.png" alt="">` +
        `<img id="svg-image" src="data:image/svg+xml,<svg xmlns='http://www.w3.org/2000/svg'/>" alt="">` +
        `<img id="html-image" src="data:text/html,<p>x</p>" alt="">` +
        `<input id="image-input" type="image" src="${PNG_DATA_URL}" alt="">` +
        `<video id="video" poster="${PNG_DATA_URL}"></video>` +
        `<table id="table" background="${PNG_DATA_URL}"><tbody><tr><td>cell</td></tr></tbody></table>` +
        `<svg><image id="svg-image-element" href="${PNG_DATA_URL}" width="1" height="1"/></svg>`,
    );

    const attributes = await attributesById();
    const kept: Array<[string, string]> = [
      ["png", PNG_DATA_URL],
      ["gif", "data:image/gif;base64,R0lGODlhAQABAAAAACw="],
      ["jpeg", "DATA:image/JPEG;base64,/9j/"],
      ["webp", " data:image/webp;base64,UklGRg=="],
      ["https-image", "https://127.0.0.1:9/logo.png"],
      ["relative-image", "logo.png"],
    ];
    for (const [id, src] of kept) {
      assert.deepEqual(attributes[id], { id, src, alt: "" }, `#${id} keeps its src`);
    }
    assert.deepEqual(attributes["svg-image"], { id: "svg-image", alt: "" });
    assert.deepEqual(attributes["html-image"], { id: "html-image", alt: "" });
    assert.deepEqual(attributes["image-input"], { id: "image-input", type: "image", alt: "" });
    assert.deepEqual(attributes["video"], { id: "video" });
    assert.deepEqual(attributes["table"], { id: "table" });
    assert.deepEqual(attributes["svg-image-element"], {
      id: "svg-image-element",
      width: "1",
      height: "1",
    });
    const decoded = await page.evaluate(() =>
      (document.getElementById("png") as HTMLImageElement).decode().then(() => true),
    );
    assert.equal(decoded, true);
  });

  it("checks srcset, ping and other URLs", async () => {
    await inject(
      `<img id="safe-srcset" src="a.png" srcset="a.png 1x, https://127.0.0.1:9/a2.png 2x" alt="">` +
        `<img id="hidden-srcset" src="a.png" srcset="a.png 1x,javascript:void(0) 2x" alt="">` +
        `<picture><source id="data-source" srcset="${PNG_DATA_URL} 1x"></picture>` +
        `<a id="safe-ping" href="/docs" ping="/track https://127.0.0.1:9/track">p</a>` +
        `<a id="data-ping" href="/docs" ping="/track data:text/plain,x">p</a>` +
        `<blockquote id="safe-quote" cite="https://127.0.0.1:9/source">q</blockquote>` +
        `<blockquote id="script-quote" cite="javascript:void(0)">q</blockquote>` +
        `<div id="codebase" codebase="vbscript:x"></div>` +
        `<div id="data-attribute" data="data:text/html,x"></div>` +
        `<video id="video" poster="javascript:void(0)" src="file:///tmp/clip.webm"></video>` +
        `<table id="table" background="javascript:void(0)"><tbody><tr><td>t</td></tr></tbody></table>`,
    );

    const attributes = await attributesById();
    assert.deepEqual(attributes["safe-srcset"], {
      id: "safe-srcset",
      src: "a.png",
      srcset: "a.png 1x, https://127.0.0.1:9/a2.png 2x",
      alt: "",
    });
    assert.deepEqual(attributes["hidden-srcset"], { id: "hidden-srcset", src: "a.png", alt: "" });
    assert.deepEqual(attributes["data-source"], { id: "data-source" });
    assert.deepEqual(attributes["safe-ping"], {
      id: "safe-ping",
      href: "/docs",
      ping: "/track https://127.0.0.1:9/track",
    });
    assert.deepEqual(attributes["data-ping"], { id: "data-ping", href: "/docs" });
    assert.deepEqual(attributes["safe-quote"], {
      id: "safe-quote",
      cite: "https://127.0.0.1:9/source",
    });
    assert.deepEqual(attributes["script-quote"], { id: "script-quote" });
    assert.deepEqual(attributes["codebase"], { id: "codebase" });
    assert.deepEqual(attributes["data-attribute"], { id: "data-attribute" });
    assert.deepEqual(attributes["video"], { id: "video" });
    assert.deepEqual(attributes["table"], { id: "table" });
  });

  it("removes script URLs from styles", async () => {
    await inject(
      `<p id="plain-style" style="color: rgb(1, 2, 3); background-image: url(/bg.png)">plain</p>` +
        `<p id="script-style" style="background-image: url(javascript:void(window.styleRan = true))">s</p>` +
        `<p id="escaped-style" style="background: url(java\\73 cript:void(0))">e</p>` +
        `<p id="quoted-style" style="background: url(' VBScript:x')">q</p>` +
        `<style id="plain-sheet">#plain-style { font-weight: bold }</style>` +
        `<style id="script-sheet">#script-style { background: url("javascript:void(0)") }</style>` +
        `<svg><style id="svg-sheet">rect { fill: url(java\\9 script:x) }</style></svg>`,
    );

    const attributes = await attributesById();
    assert.deepEqual(attributes["plain-style"], {
      id: "plain-style",
      style: "color: rgb(1, 2, 3); background-image: url(/bg.png)",
    });
    assert.deepEqual(attributes["script-style"], { id: "script-style" });
    assert.deepEqual(attributes["escaped-style"], { id: "escaped-style" });
    assert.deepEqual(attributes["quoted-style"], { id: "quoted-style" });
    assert.equal(await count("#plain-sheet"), 1);
    assert.equal(await count("#script-sheet"), 0);
    assert.equal(await count("#svg-sheet"), 0);
  });

  it("cleans template content at depth", async () => {
    await inject(
      `<template id="outer"><div>` +
        `<iframe id="inner-frame" src="/page-with-script"></iframe>` +
        `<a id="inner-link" href="data:text/html,x" onclick="window.templateClickRan = true">x</a>` +
        `<template id="inner"><svg><a id="inner-svg-link">` +
        `<animate attributeName="href" values="javascript:void(window.innerAnimateRan = true)"/>` +
        `<text x="0" y="15">i</text></a><a id="inner-safe-link" href="/ok"><text>ok</text></a>` +
        `</svg></template>` +
        `</div></template>`,
    );

    // A template's outerHTML includes its content, so this covers the inner template too.
    const outerContent = await page.evaluate(() => {
      const outer = document.getElementById("outer") as HTMLTemplateElement;
      return outer.content.firstElementChild?.outerHTML;
    });
    assert.equal(
      outerContent,
      `<div><a id="inner-link">x</a><template id="inner"><svg><a id="inner-svg-link">` +
        `<text x="0" y="15">i</text></a><a id="inner-safe-link" href="/ok"><text>ok</text></a>` +
        `</svg></template></div>`,
    );

    // Page scripts commonly instantiate templates, so the content must stay inert in the page too.
    await page.evaluate(() => {
      const main = document.getElementById("main")!;
      const outer = document.getElementById("outer") as HTMLTemplateElement;
      const inner = outer.content.getElementById("inner") as HTMLTemplateElement;
      main.append(outer.content.cloneNode(true), inner.content.cloneNode(true));
    });
    await settle();
    assert.equal(await dispatchClicks("#main #inner-link, #main #inner-svg-link text"), 2);
    await flushJavaScriptUrls();
    const flags = ["frameRan", "templateClickRan", "innerAnimateRan"];
    assert.deepEqual(await flagsSet(flags), []);
  });

  it("cleans nested svg and mathml", async () => {
    await inject(
      `<svg><g><g><foreignObject width="50" height="20"><div>` +
        `<iframe id="foreign-frame" src="/page-with-script"></iframe>` +
        `<a id="foreign-link" href="data:text/html,x">f</a></div></foreignObject>` +
        `<a id="deep-svg-link" xlink:href="data:text/html,x"><text>d</text></a>` +
        `<rect id="deep-rect" width="5" height="5" onclick="window.rectRan = true"/></g></g></svg>` +
        `<math><mrow><mtext><a id="math-html-link" href="data:text/html,x">m</a>` +
        `<object id="math-object" data="/page-with-script" type="text/html"></object></mtext>` +
        `<mi id="math-href" href="data:text/html,x" onclick="window.mathRan = true">x</mi>` +
        `</mrow></math>`,
    );

    assert.equal(await count("#foreign-frame"), 0);
    assert.equal(await count("#math-object"), 0);
    const attributes = await attributesById();
    for (const id of ["foreign-link", "deep-svg-link", "math-html-link", "math-href"]) {
      assert.deepEqual(attributes[id], { id }, `#${id} has no URL or handler`);
    }
    assert.deepEqual(attributes["deep-rect"], { id: "deep-rect", width: "5", height: "5" });

    await settle();
    assert.equal(await dispatchClicks("#deep-rect, #math-href"), 2);
    assert.deepEqual(await flagsSet(["frameRan", "rectRan", "mathRan"]), []);
  });

  it("resists clobbered form properties", async () => {
    await inject(
      `<form id="clobbered-form" action="javascript:void(window.clobberedFormRan = true)">` +
        `<input name="attributes"><input name="childNodes"><input name="localName">` +
        `<input name="nodeType"><input name="remove"><input name="removeAttributeNode">` +
        `<iframe id="form-frame" src="/page-with-script"></iframe>` +
        `<button id="clobbered-button">go</button></form>`,
    );

    assert.equal(await count("#form-frame"), 0);
    assert.equal(await count("#clobbered-form input"), 6);
    assert.deepEqual((await attributesById())["clobbered-form"], { id: "clobbered-form" });

    await settle();
    await page.evaluate(() => {
      (document.getElementById("clobbered-button") as HTMLButtonElement).click();
    });
    await flushJavaScriptUrls();
    assert.deepEqual(await flagsSet(["frameRan", "clobberedFormRan"]), []);
  });

  it("drops names that shadow document", async () => {
    await inject(
      `<img id="query-image" name="querySelectorAll" src="a.png" alt="">` +
        `<form id="import-form" name="importNode"></form>` +
        `<img id="getElementById" name="logo" src="a.png" alt="">` +
        `<img id="banner" name="banner" src="a.png" alt="">` +
        `<form id="title" name="search"></form>`,
    );

    const types = await page.evaluate(() => [
      typeof document.querySelectorAll,
      typeof document.importNode,
      typeof document.getElementById,
    ]);
    assert.deepEqual(types, ["function", "function", "function"]);
    const attributes = await attributesById();
    assert.deepEqual(attributes["query-image"], { id: "query-image", src: "a.png", alt: "" });
    assert.deepEqual(attributes["import-form"], { id: "import-form" });
    assert.equal(await count(`img[name="logo"]:not([id])`), 1);
    assert.deepEqual(attributes["banner"], { id: "banner", name: "banner", src: "a.png", alt: "" });
    assert.deepEqual(attributes["title"], { id: "title", name: "search" });

    const html = await inject(`<p id="second">second</p>`);
    assert.equal(html, `<p id="second">second</p>`);
  });
});
