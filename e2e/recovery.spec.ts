import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { Browser, BrowserContext, Page } from "playwright-core";
import type { RecordedEvent } from "../client/test-support.ts";
import type { Demo } from "../examples/portal/app.ts";
import type { MessageFrame, WelcomeFrame } from "../protocol/frames.ts";
import { launchChromium } from "./browser.ts";
import {
  documentIdOf,
  logIn,
  recordedEvents,
  recordPageEvents,
  startTestDemo,
  watchPublished,
  type PublishedLog,
  type TestDemoOptions,
} from "./demo.ts";
import { openBrowserSocket, requestUpgrade } from "./sockets.ts";
import { startTcpProxy, type TcpProxy } from "./tcp-proxy.ts";

// Long enough for the page to load, open its socket and get its welcome
// frame, so the test can cut the socket before the worker publishes.
const PREVIEW_DELAY_MS = 2500;

/** Reconnects use the client's backoff (ceiling 500 ms doubling per attempt), so allow several. */
const RECOVERY_TIMEOUT_MS = 40_000;

/** Text of the uploaded file, which its preview shows in full. */
const PREVIEW_TEXT = "first line\nsecond line";

const PUSH_EVENTS = ["patpush:welcome", "patpush:message", "patpush:gap"];

/** A demo whose pages reach the push server through a proxy that the test can cut. */
interface ProxiedDemo {
  demo: Demo;
  proxy: TcpProxy;
  published: PublishedLog;
  close(): Promise<void>;
}

async function startProxiedDemo(
  options: Omit<TestDemoOptions, "pagePushPorts">,
): Promise<ProxiedDemo> {
  const proxy = await startTcpProxy();
  const demo = await startTestDemo({ ...options, pagePushPorts: [proxy.port] });
  proxy.targetPort = Number(new URL(demo.pushUrl).port);
  const published = watchPublished(demo.bus);
  return {
    demo,
    proxy,
    published,
    async close() {
      published.stop();
      await proxy.close();
      await demo.close();
    },
  };
}

/** A page whose socket was cut after its first welcome, while a preview was being made. */
interface CutPage {
  context: BrowserContext;
  page: Page;
  documentId: number;
  /** Path and query of every WebSocket the page created, in order. */
  socketUrls: string[];
  /** Requests for the document's preview page, as the page made them. */
  previewRequests: string[];
  /** The welcome frame the page received before the cut. */
  firstWelcome: WelcomeFrame;
  /** Message id of the preview's done message, published while the socket was cut. */
  doneMessageId: string;
  /** Main frame navigations after the workspace page loaded. */
  navigations(): number;
}

function eventsOfType(events: RecordedEvent[], type: string): RecordedEvent[] {
  return events.filter((event) => event.type === type);
}

/** Returns the welcome frames of the recorded `patpush:welcome` events, in order. */
function welcomesOf(events: RecordedEvent[]): WelcomeFrame[] {
  return eventsOfType(events, "patpush:welcome").map((event) => event.detail as WelcomeFrame);
}

function isPreviewMessage(event: RecordedEvent, documentId: number): boolean {
  const frame = event.detail as MessageFrame;
  return typeof frame.html === "string" && frame.html.includes(`#doc-${documentId}-preview`);
}

/**
 * Logs alice in, uploads a text file, waits for the workspace's first
 * welcome frame, then cuts the socket and keeps the proxy blocking until the
 * preview's done message has been published.
 */
async function uploadAndCut(browser: Browser, setup: ProxiedDemo): Promise<CutPage> {
  const { demo, proxy, published } = setup;
  const context = await browser.newContext();
  const page = await context.newPage();
  await recordPageEvents(page, PUSH_EVENTS);
  const socketUrls: string[] = [];
  page.on("websocket", (socket) => {
    const url = new URL(socket.url());
    socketUrls.push(`${url.pathname}${url.search}`);
  });
  const previewRequests: string[] = [];
  page.on("request", (request) => {
    if (/\/workspace\/docs\/\d+\/preview$/.test(new URL(request.url()).pathname)) {
      previewRequests.push(request.url());
    }
  });

  await logIn(page, demo.portalUrl, "alice");
  await page.setInputFiles('form.upload input[type="file"]', {
    name: "notes.txt",
    mimeType: "text/plain",
    buffer: Buffer.from(`${PREVIEW_TEXT}\n`),
  });
  await Promise.all([
    page.waitForURL(`${demo.portalUrl}/workspace`),
    page.click("form.upload button"),
  ]);
  socketUrls.length = 0;
  let navigations = 0;
  page.on("framenavigated", (frame) => {
    if (frame === page.mainFrame()) navigations += 1;
  });
  const documentId = await documentIdOf(page, "notes.txt");
  const isDone = (message: { html?: string }): boolean =>
    message.html?.includes(`#doc-${documentId}-preview`) === true;

  await page.waitForFunction(() =>
    window.recordedEvents.some((event) => event.type === "patpush:welcome"),
  );
  assert.equal(
    published.messages.some((entry) => isDone(entry.message)),
    false,
    "the preview was published before the socket could be cut; raise PREVIEW_DELAY_MS",
  );
  proxy.sever();
  await page.waitForSelector(".pat-push.pat-push-state-reconnecting", { state: "attached" });

  const doneMessageId = await published.waitFor(isDone, PREVIEW_DELAY_MS + 15_000);
  const [welcome] = eventsOfType(await recordedEvents(page), "patpush:welcome");
  assert.equal(
    await page.locator(`#doc-${documentId}-preview.pending`).count(),
    1,
    "the preview reached the page while its socket was cut",
  );
  return {
    context,
    page,
    documentId,
    socketUrls,
    previewRequests,
    firstWelcome: welcome?.detail as WelcomeFrame,
    doneMessageId,
    navigations: () => navigations,
  };
}

describe("recovery after a cut socket", () => {
  let setup: ProxiedDemo;
  let browser: Browser;

  before(async () => {
    setup = await startProxiedDemo({ previewDelayMs: PREVIEW_DELAY_MS });
    browser = await launchChromium();
  });

  after(async () => {
    await browser?.close();
    await setup?.close();
  });

  it("replays the missed preview", async () => {
    const cut = await uploadAndCut(browser, setup);
    const { page, documentId } = cut;
    const resetsWhileCut = setup.proxy.resetCount;
    setup.proxy.allow();
    await page.waitForSelector(`#doc-${documentId}-preview.ready pre`, {
      timeout: RECOVERY_TIMEOUT_MS,
    });

    const events = await recordedEvents(page);
    const welcomes = welcomesOf(events);
    assert.equal(welcomes.length, 2, `welcomes: ${JSON.stringify(welcomes)}`);
    assert.equal(welcomes[0]?.recovery, "none");
    assert.equal(welcomes[1]?.recovery, "complete");
    assert.equal(welcomes[1]?.id, cut.firstWelcome.id);
    assert.deepEqual(eventsOfType(events, "patpush:gap"), []);

    const welcomeIndexes = events.flatMap((event, index) =>
      event.type === "patpush:welcome" ? [index] : [],
    );
    const previewIndexes = events.flatMap((event, index) =>
      event.type === "patpush:message" && isPreviewMessage(event, documentId) ? [index] : [],
    );
    assert.equal(previewIndexes.length, 1, `events: ${JSON.stringify(events)}`);
    const previewIndex = previewIndexes[0]!;
    assert.ok(previewIndex > welcomeIndexes[1]!, "the preview message came before the reconnect");
    assert.equal((events[previewIndex]?.detail as MessageFrame).id, cut.doneMessageId);

    assert.ok(resetsWhileCut >= 1, "the page never tried to reconnect while the socket was cut");
    assert.equal(cut.socketUrls[0], "/push");
    assert.equal(cut.socketUrls.at(-1), `/push?last=${cut.firstWelcome.id}`);
    // One request from the first welcome's placeholder refresh, one from the replayed message.
    assert.equal(cut.previewRequests.length, 2, `requests: ${cut.previewRequests.join(", ")}`);
    assert.equal(await page.textContent(`#doc-${documentId}-preview pre`), PREVIEW_TEXT);
    assert.equal(cut.navigations(), 0);
    await cut.context.close();
  });
});

describe("resume request", () => {
  let demo: Demo;
  let browser: Browser;

  before(async () => {
    demo = await startTestDemo({ previewDelayMs: 0 });
    browser = await launchChromium();
  });

  after(async () => {
    await browser?.close();
    await demo?.close();
  });

  it("rejects an invalid last id", async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    await logIn(page, demo.portalUrl, "alice");
    const session = (await context.cookies(demo.portalUrl)).find((item) => item.name === "__ac");
    assert.ok(session, "no session cookie after the login");
    const cookie = `__ac=${session.value}`;
    const invalidUrl = `${demo.pushUrl}?last=bogus`;

    const invalid = await requestUpgrade(invalidUrl, {
      origin: demo.portalUrl,
      cookie,
      readBody: true,
    });
    assert.equal(invalid.status, 400);
    assert.deepEqual(JSON.parse(invalid.body ?? "null"), {
      error: "invalid last id",
      code: "PATPUSH_LAST_ID_INVALID",
    });
    // The Origin check comes first, so a foreign page learns nothing about the parameter.
    const foreign = await requestUpgrade(invalidUrl, { origin: "http://evil.example", cookie });
    assert.deepEqual(foreign, { status: 403 });
    // A leading zero makes an id invalid.
    const fromPage = await openBrowserSocket(page, `${demo.pushUrl}?last=01-0`);
    assert.equal(fromPage.opened, false);
    await context.close();
  });
});

describe("recovery past its window", () => {
  let setup: ProxiedDemo;
  let browser: Browser;

  before(async () => {
    setup = await startProxiedDemo({
      previewDelayMs: PREVIEW_DELAY_MS,
      push: { recoveryMaxMessages: 1 },
    });
    browser = await launchChromium();
  });

  after(async () => {
    await browser?.close();
    await setup?.close();
  });

  it("reloads placeholders after a gap", async () => {
    const cut = await uploadAndCut(browser, setup);
    const { page, documentId } = cut;
    // With one message kept per user, these push the preview's message out of the history.
    for (const step of [1, 2]) {
      await setup.demo.bus.publish({ user: "alice", event: "recovery-filler", data: { step } });
    }
    setup.proxy.allow();
    await page.waitForSelector(`#doc-${documentId}-preview.ready pre`, {
      timeout: RECOVERY_TIMEOUT_MS,
    });

    const events = await recordedEvents(page);
    const welcomes = welcomesOf(events);
    assert.equal(welcomes.length, 2, `welcomes: ${JSON.stringify(welcomes)}`);
    assert.equal(welcomes[0]?.recovery, "none");
    assert.equal(welcomes[1]?.recovery, "gap");
    const gaps = eventsOfType(events, "patpush:gap");
    assert.deepEqual(gaps, [{ type: "patpush:gap", target: "document", detail: welcomes[1] }]);
    assert.deepEqual(
      eventsOfType(events, "patpush:message"),
      [],
      "a message frame arrived although the recovery reported a gap",
    );

    assert.equal(cut.socketUrls.at(-1), `/push?last=${cut.firstWelcome.id}`);
    // One request from the first welcome's placeholder refresh, one from the refresh after the gap.
    assert.equal(cut.previewRequests.length, 2, `requests: ${cut.previewRequests.join(", ")}`);
    assert.equal(await page.textContent(`#doc-${documentId}-preview pre`), PREVIEW_TEXT);
    assert.equal(await page.locator(".preview.pending").count(), 0);
    assert.equal(cut.navigations(), 0);
    await cut.context.close();
  });
});
