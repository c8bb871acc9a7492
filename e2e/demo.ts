/**
 * Helpers the end-to-end specs share: a demo on free ports, a login through
 * the real form, a record of the frames a page's sockets receive, and test
 * files made on the fly.
 */
import type { Page } from "playwright-core";
import sharp from "sharp";
import { parseServerFrame, type ServerFrame } from "../protocol/frames.ts";
import { createLogger } from "../common/logger.ts";
import { startDemo, type Demo } from "../examples/portal/app.ts";

/** Starts the demo on free ports; logs stay silent unless PATPUSH_LOG_LEVEL is set. */
export async function startTestDemo(options: { previewDelayMs: number }): Promise<Demo> {
  return startDemo({
    portalPort: 0,
    pushPort: 0,
    previewDelayMs: options.previewDelayMs,
    logger: createLogger({ level: process.env.PATPUSH_LOG_LEVEL ?? "silent" }),
  });
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
