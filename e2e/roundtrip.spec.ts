import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { Browser } from "playwright-core";
import type { Demo } from "../examples/portal/app.ts";
import { launchChromium } from "./browser.ts";
import {
  documentIdOf,
  logIn,
  makePng,
  messageFrames,
  startTestDemo,
  watchSocketFrames,
} from "./demo.ts";

// Long enough that the page's socket is open before the worker publishes, so
// the push message, not the refresh of pending placeholders, brings the preview.
const PREVIEW_DELAY_MS = 1500;

const TEXT_LINES = Array.from({ length: 14 }, (_, i) => `line ${i + 1} <b>not bold</b> & more`);

describe("preview roundtrip", () => {
  let demo: Demo;
  let browser: Browser;

  before(async () => {
    demo = await startTestDemo({ previewDelayMs: PREVIEW_DELAY_MS });
    browser = await launchChromium();
  });

  after(async () => {
    await browser?.close();
    await demo?.close();
  });

  it("pushes previews into the open page", async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    const socketLog = watchSocketFrames(page);
    let mainFrameNavigations = 0;
    page.on("framenavigated", (frame) => {
      if (frame === page.mainFrame()) mainFrameNavigations += 1;
    });

    await logIn(page, demo.portalUrl, "alice");
    await page.setInputFiles('form.upload input[type="file"]', [
      { name: "photo.png", mimeType: "image/png", buffer: await makePng(640, 480) },
      { name: "notes.txt", mimeType: "text/plain", buffer: Buffer.from(TEXT_LINES.join("\n")) },
    ]);
    const workspaceResponse = page.waitForResponse(
      (response) =>
        response.url() === `${demo.portalUrl}/workspace` && response.request().method() === "GET",
    );
    await Promise.all([
      page.waitForURL(`${demo.portalUrl}/workspace`),
      page.click("form.upload button"),
    ]);
    const renderedHtml = await (await workspaceResponse).text();
    const navigationsAfterUpload = mainFrameNavigations;

    const imageId = await documentIdOf(page, "photo.png");
    const textId = await documentIdOf(page, "notes.txt");
    for (const id of [imageId, textId]) {
      const pendingUrl = `${demo.portalUrl}/workspace/docs/${id}/preview#doc-${id}-preview`;
      assert.ok(
        renderedHtml.includes(
          `<div id="doc-${id}-preview" class="preview pending" data-pat-push-pending="${pendingUrl}">`,
        ),
        `placeholder of document ${id} missing from the rendered page`,
      );
    }

    await socketLog.waitFor((frame) => frame.type === "welcome");
    const pendingWhenMarked = await page.evaluate((id) => {
      (window as unknown as { previewMarker: string }).previewMarker = "set before the preview";
      return document.querySelector(`#doc-${id}-preview`)?.classList.contains("pending") ?? false;
    }, imageId);
    assert.equal(pendingWhenMarked, true, "the image preview arrived before the socket was open");

    const image = page.locator(`#doc-${imageId}-preview img`);
    await image.waitFor({ timeout: 20_000 });
    await page.waitForFunction(
      (selector) => {
        const element = document.querySelector<HTMLImageElement>(selector);
        return element !== null && element.complete && element.naturalWidth > 0;
      },
      `#doc-${imageId}-preview img`,
      { timeout: 10_000 },
    );
    assert.equal(await image.evaluate((element: HTMLImageElement) => element.naturalWidth), 240);
    assert.equal(await image.evaluate((element: HTMLImageElement) => element.naturalHeight), 180);

    const text = page.locator(`#doc-${textId}-preview pre`);
    await text.waitFor({ timeout: 20_000 });
    assert.equal(await text.textContent(), TEXT_LINES.slice(0, 10).join("\n"));
    assert.equal(await page.locator(`#doc-${textId}-preview pre b`).count(), 0);

    const marker = await page.evaluate(
      () => (window as unknown as { previewMarker?: string }).previewMarker,
    );
    assert.equal(marker, "set before the preview");
    assert.equal(mainFrameNavigations, navigationsAfterUpload);
    assert.equal(await page.locator(".preview.pending").count(), 0);

    const messages = messageFrames(socketLog);
    for (const id of [imageId, textId]) {
      const frame = messages.find(
        (message) => message.type === "message" && message.html?.includes(`#doc-${id}-preview`),
      );
      assert.ok(
        frame,
        `no message frame for document ${id}; frames: ${JSON.stringify(socketLog.frames)}`,
      );
    }
    await context.close();
  });
});
