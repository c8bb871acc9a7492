/**
 * Fixtures for the pattern's security tests: a Chromium page that records
 * every request, WebSocket, dialog, console line, uncaught error and
 * navigation, and checks for what a hostile payload would leave behind.
 * This module runs in Node only and is not part of the bundle.
 */
import type { Browser, Page } from "playwright-core";
import { openTestPage, type ConsoleEntry } from "../../client/test-support.ts";

/**
 * Script that every hostile payload runs if it ever gets the chance: it sets
 * a global flag, writes to the console and opens a dialog.
 */
export const PAYLOAD = "window.pwned=1;console.log('pwned');alert('pwned')";

/** Text that {@link PAYLOAD} writes to the console and shows in its dialog. */
const PAYLOAD_MARKER = "pwned";

declare global {
  interface Window {
    /** Set by {@link PAYLOAD}. */
    pwned?: unknown;
  }
}

export interface RecordedRequest {
  url: string;
  /** Playwright's resource type: "fetch" for the pattern's requests, "image" for an `<img>`. */
  type: string;
}

/**
 * Resource types that markup loads by itself. Fragments may load images,
 * media, fonts and style sheets from any origin (documentation.md lists
 * what the clean-up lets through), so a test may exempt these.
 */
export const PASSIVE_RESOURCE_TYPES: ReadonlySet<string> = new Set([
  "image",
  "media",
  "font",
  "stylesheet",
]);

export interface WatchedPage {
  page: Page;
  console: ConsoleEntry[];
  /** Message of every dialog the page opened. Each dialog is dismissed at once. */
  dialogs: string[];
  /**
   * Every HTTP request the page made, in order. A redirect target that
   * Chromium announced and then aborted unsent, as it does for a fetch with
   * `redirect: "manual"`, is moved to `abortedRedirects`.
   */
  requests: RecordedRequest[];
  abortedRedirects: string[];
  /** URL of every WebSocket the page opened. */
  sockets: string[];
  /** Uncaught errors and unhandled rejections of the page. */
  errors: string[];
  /** URLs the main frame navigated to after the first page load. */
  navigations: string[];
  /** Loads `url` and starts counting navigations after it. */
  open(url: string): Promise<void>;
}

/** Opens a page that records requests, sockets, dialogs, console lines, errors and navigations. */
export async function openWatchedPage(browser: Browser): Promise<WatchedPage> {
  const { page, console } = await openTestPage(browser);
  let loaded = false;
  const watched: WatchedPage = {
    page,
    console,
    dialogs: [],
    requests: [],
    abortedRedirects: [],
    sockets: [],
    errors: [],
    navigations: [],
    async open(url) {
      await page.goto(url);
      loaded = true;
    },
  };

  page.on("request", (request) => {
    watched.requests.push({ url: request.url(), type: request.resourceType() });
  });
  page.on("requestfailed", (request) => {
    const unsent =
      request.redirectedFrom() !== null && request.failure()?.errorText === "net::ERR_ABORTED";
    const index = watched.requests.map((entry) => entry.url).lastIndexOf(request.url());
    if (!unsent || index === -1) return;
    watched.requests.splice(index, 1);
    watched.abortedRedirects.push(request.url());
  });
  page.on("websocket", (socket) => watched.sockets.push(socket.url()));
  page.on("pageerror", (error) => watched.errors.push(String(error)));
  page.on("dialog", (dialog) => {
    watched.dialogs.push(dialog.message());
    void dialog.dismiss().catch(() => undefined);
  });
  page.on("framenavigated", (frame) => {
    if (loaded && frame === page.mainFrame()) watched.navigations.push(frame.url());
  });
  return watched;
}

/**
 * Returns the recorded requests and sockets whose origin is not in `origins`,
 * as `type url`, leaving out requests of the `exempt` resource types.
 */
export function foreignRequests(
  watched: WatchedPage,
  origins: readonly string[],
  exempt: ReadonlySet<string> = new Set(),
): string[] {
  const allowed = new Set(origins.map((origin) => httpOrigin(origin)));
  const sockets = watched.sockets.map((url) => ({ url, type: "websocket" }));
  return [...watched.requests, ...sockets]
    .filter(({ url, type }) => !url.startsWith("data:") && !exempt.has(type))
    .filter(({ url }) => !allowed.has(httpOrigin(url)))
    .map(({ url, type }) => `${type} ${url}`);
}

/** Returns every trace of a payload that ran: the global flag, dialogs and console lines. */
export async function payloadTraces(watched: WatchedPage): Promise<string[]> {
  const traces: string[] = [];
  const flag = await watched.page.evaluate(() => "pwned" in window);
  if (flag) traces.push("window.pwned is set");
  for (const message of watched.dialogs) traces.push(`dialog: ${message}`);
  for (const entry of watched.console) {
    if (entry.type === "log" && entry.text.includes(PAYLOAD_MARKER)) {
      traces.push(`console: ${entry.text}`);
    }
  }
  return traces;
}

/**
 * Returns the active content left under `selector`, template content
 * included: script-capable elements, `on*` and `srcdoc` attributes, and URL
 * or style attributes that mention a `javascript:` URL. Elements matching `ignored`
 * (the page's own markup) are skipped.
 */
export async function activeContentUnder(
  page: Page,
  selector: string,
  ignored = ":not(*)",
): Promise<string[]> {
  return page.evaluate(({ selector, ignored }) => {
    const blocked = new Set([
      "script",
      "iframe",
      "frame",
      "object",
      "embed",
      "base",
      "meta",
      "link",
      "animate",
      "set",
      "animatemotion",
      "animatetransform",
    ]);
    const urlAttributes = new Set([
      "href",
      "xlink:href",
      "src",
      "srcset",
      "action",
      "formaction",
      "data",
      "poster",
      "background",
      "cite",
      "codebase",
      "ping",
      "style",
    ]);
    const found: string[] = [];
    const pending: ParentNode[] = Array.from(document.querySelectorAll(selector));
    while (pending.length > 0) {
      const root = pending.pop()!;
      const elements = root instanceof Element ? [root] : [];
      elements.push(...Array.from(root.querySelectorAll("*")));
      for (const element of elements) {
        if (element.matches(ignored)) continue;
        const name = element.localName.toLowerCase();
        if (blocked.has(name)) found.push(`<${name}>`);
        if (element instanceof HTMLTemplateElement) pending.push(element.content);
        for (const attribute of Array.from(element.attributes)) {
          const attributeName = attribute.name.toLowerCase();
          const value = attribute.value.replace(/[\s\p{Cc}\p{Cf}]/gu, "").toLowerCase();
          if (attributeName.startsWith("on") || attributeName === "srcdoc") {
            found.push(`<${name} ${attributeName}>`);
          } else if (urlAttributes.has(attributeName) && value.includes("javascript:")) {
            found.push(`<${name} ${attributeName}="${attribute.value}">`);
          }
        }
      }
    }
    return found;
  }, { selector, ignored });
}

/** Clicks every link under `selector`, so that a `javascript:` link left behind would run. */
export async function clickLinks(page: Page, selector: string): Promise<void> {
  await page.evaluate((selector) => {
    for (const link of Array.from(document.querySelectorAll(`${selector} a`))) {
      link.dispatchEvent(new MouseEvent("click", { bubbles: true, cancelable: true }));
    }
  }, selector);
}

function httpOrigin(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.protocol === "ws:") parsed.protocol = "http:";
    if (parsed.protocol === "wss:") parsed.protocol = "https:";
    return parsed.origin;
  } catch {
    return url;
  }
}
