import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { Browser, BrowserContext } from "playwright-core";
import type { Demo } from "../examples/portal/app.ts";
import type { DoneMessage } from "../protocol/message.ts";
import { launchChromium } from "./browser.ts";
import { documentIdOf, logIn, makePng, startTestDemo } from "./demo.ts";

/** Credentials of one session as the worker view receives them: the `__ac` cookie and the form's `_authenticator`. */
interface Credentials {
  cookie: string;
  authenticator: string;
}

async function credentialsOf(context: BrowserContext, demo: Demo): Promise<Credentials> {
  const session = (await context.cookies(demo.portalUrl)).find((cookie) => cookie.name === "__ac");
  assert.ok(session, "no session cookie after login");
  const page = context.pages()[0];
  assert.ok(page);
  const authenticator = await page.locator('form.upload input[name="_authenticator"]').inputValue();
  return { cookie: `__ac=${session.value}`, authenticator };
}

/** POSTs to the worker view as the dispatcher would, with the given form fields. */
function postWorker(
  demo: Demo,
  id: number,
  cookie: string,
  form: Record<string, string>,
): Promise<Response> {
  return fetch(`${demo.portalUrl}/workspace/docs/${id}/@@make-preview`, {
    method: "POST",
    headers: { Cookie: cookie, "X-Task-Name": "make-preview" },
    body: new URLSearchParams(form),
    redirect: "manual",
  });
}

describe("worker view authenticator", () => {
  let demo: Demo;
  let browser: Browser;
  let alice: Credentials;
  let bob: Credentials;
  let documentId: number;
  const published: DoneMessage[] = [];

  before(async () => {
    demo = await startTestDemo({ previewDelayMs: 0 });
    browser = await launchChromium();
    // With the runner closed, only this spec's own POSTs reach the worker view,
    // so the uploaded document stays pending until the last test makes its preview.
    await demo.runner.close();
    demo.bus.subscribe((event) => {
      if (event.type === "message") published.push(event.message);
    });

    const aliceContext = await browser.newContext();
    const alicePage = await aliceContext.newPage();
    await logIn(alicePage, demo.portalUrl, "alice");
    await alicePage.setInputFiles('form.upload input[type="file"]', {
      name: "guarded.png",
      mimeType: "image/png",
      buffer: await makePng(300, 200),
    });
    await Promise.all([
      alicePage.waitForURL(`${demo.portalUrl}/workspace`),
      alicePage.click("form.upload button"),
    ]);
    documentId = await documentIdOf(alicePage, "guarded.png");
    alice = await credentialsOf(aliceContext, demo);

    const bobContext = await browser.newContext();
    await logIn(await bobContext.newPage(), demo.portalUrl, "bob");
    bob = await credentialsOf(bobContext, demo);
  });

  after(async () => {
    await browser?.close();
    await demo?.close();
  });

  async function assertNothingWritten(): Promise<void> {
    const preview = await fetch(`${demo.portalUrl}/workspace/docs/${documentId}/preview`, {
      headers: { Cookie: alice.cookie },
    });
    assert.equal(preview.status, 200);
    assert.match(
      await preview.text(),
      new RegExp(`<div id="doc-${documentId}-preview" class="preview pending"`),
    );

    const thumbnail = await fetch(`${demo.portalUrl}/workspace/docs/${documentId}/thumbnail`, {
      headers: { Cookie: alice.cookie },
    });
    assert.equal(thumbnail.status, 404);
    assert.deepEqual(published, []);
  }

  it("rejects a missing authenticator", async () => {
    const response = await postWorker(demo, documentId, alice.cookie, {});

    assert.equal(response.status, 403);
    assert.equal(
      await response.text(),
      "missing or invalid _authenticator; reload the page and try again",
    );
    await assertNothingWritten();
  });

  it("rejects a wrong authenticator", async () => {
    const wrong = alice.authenticator.replace(/^./, (char) => (char === "0" ? "1" : "0"));
    const response = await postWorker(demo, documentId, alice.cookie, { _authenticator: wrong });

    assert.equal(response.status, 403);
    await assertNothingWritten();
  });

  it("rejects another session's authenticator", async () => {
    const response = await postWorker(demo, documentId, alice.cookie, {
      _authenticator: bob.authenticator,
    });

    assert.equal(response.status, 403);
    await assertNothingWritten();
  });

  it("hides the document from another owner", async () => {
    const response = await postWorker(demo, documentId, bob.cookie, {
      _authenticator: bob.authenticator,
    });

    assert.equal(response.status, 404);
    await assertNothingWritten();
  });

  it("redirects a request without session", async () => {
    const response = await postWorker(demo, documentId, "", {
      _authenticator: alice.authenticator,
    });

    assert.equal(response.status, 302);
    assert.equal(response.headers.get("location"), "/login?came_from=%2Fworkspace");
    await assertNothingWritten();
  });

  it("makes the preview when valid", async () => {
    const response = await postWorker(demo, documentId, alice.cookie, {
      _authenticator: alice.authenticator,
    });

    assert.equal(response.status, 200);
    assert.deepEqual(await response.json(), { status: "done", preview: "image" });

    const thumbnail = await fetch(`${demo.portalUrl}/workspace/docs/${documentId}/thumbnail`, {
      headers: { Cookie: alice.cookie },
    });
    assert.equal(thumbnail.status, 200);
    assert.equal(thumbnail.headers.get("content-type"), "image/png");

    const id = `doc-${documentId}-preview`;
    assert.deepEqual(published, [
      {
        user: "alice",
        html: `<a href="${demo.portalUrl}/workspace/docs/${documentId}/preview#${id}" data-pat-inject="source: #${id}::element; target: #${id}::element"></a>`,
      },
    ]);
  });
});
