import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { register } from "prom-client";
import { request } from "undici";
import { closeCodeLabel } from "./metrics.ts";
import {
  metricValue,
  openSocket,
  startPortalStub,
  startTestServer,
  withLast,
  type PortalStub,
  type TestServer,
  type TestSocket,
} from "./test-support.ts";

const ORIGIN = "http://portal.test";

let portal: PortalStub;
let test: TestServer;
let other: TestServer;

before(async () => {
  portal = await startPortalStub();
  test = await startTestServer({
    authUrl: portal.authUrl,
    allowedOrigins: [ORIGIN],
    recoveryMaxMessages: 2,
  });
  other = await startTestServer({ authUrl: portal.authUrl, allowedOrigins: [ORIGIN] });
});

after(async () => {
  await test.close();
  await other.close();
  await portal.close();
});

async function connect(server: TestServer, session: string, last?: string): Promise<TestSocket> {
  const url = last === undefined ? server.server.url : withLast(server.server.url, last);
  const socket = await openSocket(url, { origin: ORIGIN, cookie: `__ac=${session}` });
  await socket.waitFor((f) => f.type === "welcome");
  return socket;
}

async function scrape(server: TestServer): Promise<{ contentType: string; text: string }> {
  const response = await request(`${server.server.httpUrl}/metrics`);
  assert.equal(response.statusCode, 200);
  const text = await response.body.text();
  return { contentType: String(response.headers["content-type"]), text };
}

describe("metrics endpoint", { timeout: 30_000 }, () => {
  it("counts sockets, deliveries and recoveries", async () => {
    const first = await connect(test, "alice-session");
    const start = first.frames[0]?.id ?? "";
    const a1 = await test.bus.publish({ user: "alice", pushId: "a1" });
    await test.bus.publish({ user: "alice", pushId: "a2" });
    await test.bus.publish({ user: "alice", pushId: "a3" });
    await first.waitFor((f) => f.type === "message" && f.pushId === "a3");

    const complete = await connect(test, "alice-session", a1);
    const gap = await connect(test, "alice-session", start);
    first.ws.close(1000);
    await first.closed;
    // The server counts the close when its close handler runs, after the client saw it.
    await new Promise((resolve) => setTimeout(resolve, 100));

    const { contentType, text } = await scrape(test);
    assert.match(contentType, /^text\/plain; version=0\.0\.4/);
    assert.equal(metricValue(text, "patpush_open_sockets"), 2);
    assert.equal(metricValue(text, "patpush_messages_delivered_total"), 3);
    assert.equal(metricValue(text, 'patpush_recoveries_total{outcome="none"}'), 1);
    assert.equal(metricValue(text, 'patpush_recoveries_total{outcome="complete"}'), 1);
    assert.equal(metricValue(text, 'patpush_recoveries_total{outcome="gap"}'), 1);
    assert.equal(metricValue(text, "patpush_frames_replayed_total"), 2);
    assert.equal(metricValue(text, 'patpush_socket_closes_total{code="1000"}'), 1);
    assert.equal(metricValue(text, "patpush_slow_consumer_closes_total"), 0);
    complete.ws.terminate();
    gap.ws.terminate();
  });

  it("keeps one registry per server", async () => {
    const { text } = await scrape(other);

    assert.equal(metricValue(text, "patpush_messages_delivered_total"), 0);
    assert.equal(metricValue(text, 'patpush_recoveries_total{outcome="none"}'), 0);
    const global = await register.metrics();
    assert.ok(!global.includes("patpush_"), "nothing is registered in the default registry");
  });
});

describe("close code label", () => {
  it("keeps known codes and groups others", () => {
    assert.equal(closeCodeLabel(4003), "4003");
    assert.equal(closeCodeLabel(1006), "1006");
    assert.equal(closeCodeLabel(3999), "other");
  });
});
