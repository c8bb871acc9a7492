import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";
import type { Browser } from "playwright-core";
import type { Demo } from "../examples/portal/app.ts";
import { launchChromium } from "./browser.ts";
import { logIn, pushHttpUrl, startTestDemo } from "./demo.ts";
import { openBrowserSocket, requestUpgrade } from "./sockets.ts";

describe("socket rejection", () => {
  let demo: Demo;
  let browser: Browser;
  let foreignServer: Server;
  let foreignUrl: string;

  before(async () => {
    demo = await startTestDemo({ previewDelayMs: 0 });
    browser = await launchChromium();

    // Another port on the same host is another origin but the same site, so
    // the browser still sends the portal's SameSite=Lax cookie to the push server.
    foreignServer = createServer((_req, res) => {
      res
        .writeHead(200, { "Content-Type": "text/html; charset=utf-8" })
        .end("<!doctype html><title>foreign</title>");
    });
    await new Promise<void>((resolve) => foreignServer.listen(0, "127.0.0.1", resolve));
    foreignUrl = `http://127.0.0.1:${(foreignServer.address() as AddressInfo).port}/`;
  });

  after(async () => {
    await browser?.close();
    await demo?.close();
    if (foreignServer !== undefined) {
      foreignServer.closeAllConnections();
      await new Promise<void>((resolve) => foreignServer.close(() => resolve()));
    }
  });

  it("rejects a socket without session", async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(`${demo.portalUrl}/login`);

    const result = await openBrowserSocket(page, demo.pushUrl);
    assert.equal(result.opened, false);
    assert.equal(result.firstFrame, undefined);

    const probe = await page.evaluate(
      async (authUrl) => {
        const response = await fetch(authUrl, { credentials: "include" });
        return { status: response.status, body: await response.text() };
      },
      `${pushHttpUrl(demo)}/auth`,
    );
    assert.equal(probe.status, 401);

    const upgrade = await requestUpgrade(demo.pushUrl, { origin: demo.portalUrl });
    assert.deepEqual(upgrade, { status: 401 });
    await context.close();
  });

  it("rejects a foreign origin with cookie", async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    await logIn(page, demo.portalUrl, "alice");

    const cookies = await context.cookies(pushHttpUrl(demo));
    const session = cookies.find((cookie) => cookie.name === "__ac");
    assert.ok(session, "the session cookie is not sent to the push server's host");

    const fromPortal = await openBrowserSocket(page, demo.pushUrl);
    assert.equal(fromPortal.opened, true);
    assert.match(fromPortal.firstFrame ?? "", /"type":"welcome".*"user":"alice"/);

    await page.goto(foreignUrl);
    const fromForeign = await openBrowserSocket(page, demo.pushUrl);
    assert.equal(fromForeign.opened, false);
    assert.equal(fromForeign.firstFrame, undefined);
    await context.close();

    const cookie = `__ac=${session.value}`;
    const evil = await requestUpgrade(demo.pushUrl, { origin: "http://evil.example", cookie });
    assert.deepEqual(evil, { status: 403 });
    const missingOrigin = await requestUpgrade(demo.pushUrl, { cookie });
    assert.deepEqual(missingOrigin, { status: 403 });
    const allowed = await requestUpgrade(demo.pushUrl, { origin: demo.portalUrl, cookie });
    assert.match(allowed.firstFrame ?? "", /"type":"welcome".*"user":"alice"/);

    const authProbe = await fetch(`${pushHttpUrl(demo)}/auth`, {
      headers: { Origin: "http://evil.example", Cookie: cookie },
    });
    assert.equal(authProbe.status, 403);
    assert.equal(authProbe.headers.get("access-control-allow-origin"), null);
  });
});
