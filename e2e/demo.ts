/**
 * Helpers the end-to-end specs share: a demo on free ports, a login through
 * the real form, a record of the frames a page's sockets receive and of the
 * DOM events a page fires, the done messages a bus hands over, and test
 * files made on the fly.
 */
import type { Page } from "playwright-core";
import sharp from "sharp";
import { RECORDER_SCRIPT, type RecordedEvent } from "../client/test-support.ts";
import { parseServerFrame, type ServerFrame } from "../protocol/frames.ts";
import type { DoneMessage } from "../protocol/message.ts";
import { createLogger } from "../common/logger.ts";
import { startDemo, type Demo, type DemoOptions } from "../examples/portal/app.ts";
import type { Bus } from "../server/index.ts";

/** Options of {@link startTestDemo}: the preview delay, push server options and proxy ports. */
export type TestDemoOptions = { previewDelayMs: number } & Pick<
  DemoOptions,
  "push" | "pagePushPorts"
>;

/** Starts the demo on free ports; logs stay silent unless PATPUSH_LOG_LEVEL is set. */
export async function startTestDemo(options: TestDemoOptions): Promise<Demo> {
  return startDemo({
    ...options,
    portalPort: 0,
    pushPort: 0,
    logger: createLogger({ level: process.env.PATPUSH_LOG_LEVEL ?? "silent" }),
  });
}

/**
 * Records the DOM events of `types` that reach `document` in every page the
 * tab loads from now on, in `window.recordedEvents` (see RECORDER_SCRIPT).
 */
export async function recordPageEvents(page: Page, types: readonly string[]): Promise<void> {
  await page.addInitScript(`${RECORDER_SCRIPT}\nrecordEvents(${JSON.stringify(types)});`);
}

/** Returns the events recorded in the page's current document, in dispatch order. */
export function recordedEvents(page: Page): Promise<RecordedEvent[]> {
  return page.evaluate(() => window.recordedEvents);
}

/** Done messages that a bus handed over, in order, with their message ids. */
export interface PublishedLog {
  messages: Array<{ id: string; message: DoneMessage }>;
  /** Waits until a message matches, or throws after `timeoutMs`. */
  waitFor(match: (message: DoneMessage) => boolean, timeoutMs?: number): Promise<string>;
  stop(): void;
}

/** Subscribes to `bus` and records every done message it hands over from now on. */
export function watchPublished(bus: Bus): PublishedLog {
  const messages: PublishedLog["messages"] = [];
  const stop = bus.subscribe((event) => {
    if (event.type === "message") messages.push({ id: event.id, message: event.message });
  });
  return {
    messages,
    stop,
    async waitFor(match, timeoutMs = 15_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const found = messages.find((entry) => match(entry.message));
        if (found !== undefined) return found.id;
        if (Date.now() > deadline) {
          throw new Error(`no matching done message published within ${timeoutMs} ms`);
        }
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    },
  };
}

/** Returns the push server's HTTP base URL, e.g. `http://127.0.0.1:4242/push`, from its WebSocket URL. */
export function pushHttpUrl(demo: Demo): string {
  return demo.pushUrl.replace(/^ws:/, "http:");
}

/** Logs `user` in through the login form (password = user name) and waits for the workspace. */
export async function logIn(page: Page, portalUrl: string, user: string): Promise<void> {
  await page.goto(`${portalUrl}/workspace`);
  await page.fill('input[name="login"]', user);
  await page.fill('input[name="password"]', user);
  await Promise.all([
    page.waitForURL(`${portalUrl}/workspace`),
    page.click('form[action="/login"] button'),
  ]);
}

/** Frames a page's sockets received, parsed, in arrival order. */
export interface FrameLog {
  frames: ServerFrame[];
  /** Number of sockets the page opened. */
  sockets: number;
  /** Waits until a frame matches, or throws after `timeoutMs`. */
  waitFor(match: (frame: ServerFrame) => boolean, timeoutMs?: number): Promise<ServerFrame>;
}

/** Records every frame the page's WebSockets receive; call before the page navigates. */
export function watchSocketFrames(page: Page): FrameLog {
  const waiters = new Set<() => void>();
  const log: FrameLog = {
    frames: [],
    sockets: 0,
    async waitFor(match, timeoutMs = 15_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const found = log.frames.find(match);
        if (found !== undefined) return found;
        if (Date.now() > deadline)
          throw new Error(`no matching socket frame within ${timeoutMs} ms`);
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, 100);
          waiters.add(() => {
            clearTimeout(timer);
            resolve();
          });
        });
      }
    },
  };

  page.on("websocket", (socket) => {
    log.sockets += 1;
    socket.on("framereceived", ({ payload }) => {
      const frame = parseServerFrame(
        typeof payload === "string" ? payload : payload.toString("utf8"),
      );
      if (frame === undefined) return;
      log.frames.push(frame);
      for (const wake of waiters) wake();
      waiters.clear();
    });
  });
  return log;
}

/** Returns the message frames of a log, leaving out welcome frames. */
export function messageFrames(log: FrameLog): ServerFrame[] {
  return log.frames.filter((frame) => frame.type === "message");
}

/** Makes a PNG of `width` x `height` pixels with a diagonal gradient. */
export async function makePng(width: number, height: number): Promise<Buffer> {
  const pixels = Buffer.alloc(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const offset = (y * width + x) * 3;
      pixels[offset] = Math.round((255 * x) / width);
      pixels[offset + 1] = Math.round((255 * y) / height);
      pixels[offset + 2] = 160;
    }
  }
  return sharp(pixels, { raw: { width, height, channels: 3 } })
    .png()
    .toBuffer();
}

/** Returns the id of the document listed with `filename` on the workspace page. */
export async function documentIdOf(page: Page, filename: string): Promise<number> {
  const id = await page
    .locator("li.document", { has: page.locator(".filename", { hasText: filename }) })
    .getAttribute("id");
  const match = /^doc-(\d+)$/.exec(id ?? "");
  if (match === null)
    throw new Error(`no document named ${filename} on the page (id ${String(id)})`);
  return Number(match[1]);
}
