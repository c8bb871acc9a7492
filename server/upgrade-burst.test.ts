/**
 * A burst of resuming upgrades that one shared portal request admits at
 * once. uWebSockets.js 20.30 may close some of these sockets right after the
 * upgrade (see UwsPushServer's open handler). Such a socket must close before
 * its welcome and without any frame, so that the client can open it again
 * with the same `last`. A socket that got its welcome must get its whole
 * replay and stay open. The close shows up mostly on a busy machine.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import WebSocket from "ws";
import { parseServerFrame } from "../protocol/frames.ts";
import type { MessageId } from "../protocol/message-id.ts";
import { startPortalStub, startTestServer, type PortalStub, type TestServer } from "./test-support.ts";

const SOCKETS_PER_BURST = 50;
const BURSTS = 3;
const STORED_MESSAGES = 100;

/** What one socket of the burst saw. */
interface Outcome {
  frameTypes: string[];
  closeCode: number;
}

describe("upgrade burst", () => {
  let portal: PortalStub;
  let test: TestServer;
  let first: MessageId;

  before(async () => {
    // The portal responds on the next turn, so concurrent upgrades share one request.
    portal = await startPortalStub((_req, res) => {
      setImmediate(() => {
        res.writeHead(200, { "content-type": "application/json" });
        res.end(JSON.stringify({ user: "burst", channels: [] }));
      });
    });
    test = await startTestServer({
      authUrl: portal.authUrl,
      maxSocketsPerUser: 0,
      maxSocketsPerIp: 0,
      upgradesPerIpPerSecond: 0,
    });
    first = await test.bus.publish({ user: "burst", html: "<p>first</p>" });
    for (let i = 1; i < STORED_MESSAGES; i++) {
      await test.bus.publish({ user: "burst", html: `<p>${i}</p>` });
    }
  });

  after(async () => {
    await test?.close();
    await portal?.close();
  });

  /** Opens one resuming socket and closes it once its whole replay arrived. */
  function openSocket(): Promise<Outcome> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(`${test.server.url}?last=${encodeURIComponent(first)}`, {
        origin: portal.origin,
        headers: { cookie: "__ac=burst-session" },
      });
      const frameTypes: string[] = [];
      ws.once("unexpected-response", (_req, res) =>
        reject(new Error(`upgrade rejected with ${res.statusCode}`)),
      );
      ws.on("message", (data) => {
        frameTypes.push(parseServerFrame(String(data))?.type ?? "unparsable");
        // The welcome and the replay of every stored message after the first.
        if (frameTypes.length === STORED_MESSAGES) ws.close(1000);
      });
      ws.on("close", (closeCode) => resolve({ frameTypes, closeCode }));
    });
  }

  it("closes sockets only before their welcome", { timeout: 60_000 }, async () => {
    let closedBeforeWelcome = 0;
    for (let burst = 0; burst < BURSTS; burst++) {
      const outcomes = await Promise.all(
        Array.from({ length: SOCKETS_PER_BURST }, () => openSocket()),
      );
      for (const [index, outcome] of outcomes.entries()) {
        const label = `burst ${burst}, socket ${index}`;
        if (outcome.frameTypes.length === 0) {
          assert.equal(outcome.closeCode, 1006, `${label}: closed without frames`);
          closedBeforeWelcome += 1;
          continue;
        }
        assert.equal(outcome.frameTypes[0], "welcome", `${label}: first frame`);
        assert.equal(outcome.frameTypes.length, STORED_MESSAGES, `${label}: frames`);
        assert.equal(outcome.closeCode, 1000, `${label}: close code`);
      }
    }
    // The checks above prove little when most sockets of the bursts closed early.
    assert.ok(
      closedBeforeWelcome <= (BURSTS * SOCKETS_PER_BURST) / 10,
      `${closedBeforeWelcome} sockets closed before their welcome`,
    );
  });
});
