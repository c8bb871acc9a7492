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

const PREVIEW_DELAY_MS = 1000;

describe("user isolation", () => {
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

  it("delivers alice's preview to alice only", async () => {
    const aliceContext = await browser.newContext();
    const bobContext = await browser.newContext();
    const alice = await aliceContext.newPage();
    const bob = await bobContext.newPage();
    const aliceLog = watchSocketFrames(alice);
    const bobLog = watchSocketFrames(bob);

    await logIn(alice, demo.portalUrl, "alice");
    await logIn(bob, demo.portalUrl, "bob");
    await bobLog.waitFor((frame) => frame.type === "welcome" && frame.user === "bob");
    const bobDocumentsBefore = await bob.locator("#documents").innerHTML();

    await alice.setInputFiles('form.upload input[type="file"]', {
      name: "private.png",
      mimeType: "image/png",
      buffer: await makePng(320, 320),
    });
    await Promise.all([
      alice.waitForURL(`${demo.portalUrl}/workspace`),
      alice.click("form.upload button"),
    ]);
    const id = await documentIdOf(alice, "private.png");
    await alice.locator(`#doc-${id}-preview img`).waitFor({ timeout: 20_000 });

    // Frames on one socket arrive in order, so once bob has the channel
    // message published after alice's preview, a misrouted preview message
    // would already be in his log.
    await demo.bus.publish({ channel: "site", event: "isolation-barrier", data: { step: 1 } });
    await bobLog.waitFor(
      (frame) => frame.type === "message" && frame.event === "isolation-barrier",
    );

    const bobMessages = messageFrames(bobLog);
    assert.equal(bobMessages.length, 1, `bob received ${JSON.stringify(bobMessages)}`);
    assert.equal(bobMessages[0]?.type === "message" && bobMessages[0].channel, "site");
    assert.equal(await bob.locator("#documents").innerHTML(), bobDocumentsBefore);
    assert.equal(await bob.locator("#documents img").count(), 0);

    const aliceMessages = messageFrames(aliceLog);
    assert.ok(
      aliceMessages.some(
        (frame) => frame.type === "message" && frame.html?.includes(`#doc-${id}-preview`),
      ),
      `alice received no preview message: ${JSON.stringify(aliceMessages)}`,
    );

    const bobPreview = await bob.request.get(`${demo.portalUrl}/workspace/docs/${id}/preview`);
    assert.equal(bobPreview.status(), 404);
    const bobThumbnail = await bob.request.get(`${demo.portalUrl}/workspace/docs/${id}/thumbnail`);
    assert.equal(bobThumbnail.status(), 404);

    await aliceContext.close();
    await bobContext.close();
  });
});
